"""A wall-clock budget for a whole run (``--time-limit``): stop training while the rest still fits.

The clock is the command's, from its process's start (imports, model loading and the first evaluation
count; with ``--num-processes`` the launcher's start, handed to its children), so "a run of at most 20
minutes" means what a stopwatch around the command would read.
Before each step the run asks whether that step, an evaluation due after it and the final
evaluation would still end inside the limit; a step is guessed to be as long as the slowest of the
last three (dynamic sampling makes steps vary 2-3x), an evaluation as long as the last one took.
"""

from __future__ import annotations

import os
import time

import psutil

# Set by ``--num-processes`` relaunch for its children: when the command the user typed started (epoch s).
RUN_START_ENV = "GRPO_LAB_RUN_START"


def run_started_at() -> float:
    """When this run's command started (epoch seconds): the launching process's start when this one was
    started by ``--num-processes`` (:data:`RUN_START_ENV`), else this process's own start."""
    given = os.environ.get(RUN_START_ENV)
    return float(given) if given else psutil.Process().create_time()


def process_elapsed_s() -> float:
    """Seconds since this run's command started (:func:`run_started_at`)."""
    return time.time() - run_started_at()


def step_guess_s(step_s: list[float]) -> float:
    """The next step's seconds as the time limit guesses them: the slowest of the last three (0 before the first)."""
    return max(step_s[-3:], default=0.0)


def out_of_time(elapsed_s: float, limit_s: float, step_s: list[float], eval_s: float, eval_due: bool) -> bool:
    """Whether the next step would end the run past ``limit_s``: ``elapsed_s`` plus the slowest of the
    last three ``step_s`` (0 before the first), an evaluation after it when ``eval_due``, and the final
    evaluation (each ``eval_s``).

    >>> out_of_time(100, 200, [30, 50, 40], eval_s=30, eval_due=False)   # 100 + 50 + 30 <= 200
    False
    >>> out_of_time(100, 200, [30, 50, 40], eval_s=30, eval_due=True)    # 100 + 50 + 30 + 30 > 200
    True
    >>> out_of_time(100, 200, [90, 30, 50, 40], eval_s=30, eval_due=False)  # the 90 is four steps back
    False
    """
    return elapsed_s + step_guess_s(step_s) + (eval_s if eval_due else 0.0) + eval_s > limit_s


def steps_in_time(elapsed_s: float, limit_s: float, done: int, steps: int, step_s: list[float], eval_s: float,
                  eval_every: int = 0) -> int:
    """The steps a run will have taken when ``limit_s`` stops it, as :func:`out_of_time` guesses them: ``done``
    plus as many more steps (the slowest of the last three, with their share of the evaluations every
    ``eval_every`` steps) as fit before the final evaluation; at least ``done + 1``, at most ``steps``.
    A learning-rate schedule decays over these instead of ``steps``, so that a run the limit cuts still
    ends at its schedule's end. Before the first step nothing is known: ``steps``.

    >>> steps_in_time(100, 200, done=5, steps=50, step_s=[10, 20, 10], eval_s=20)   # (200 - 100 - 20) // 20 more
    9
    >>> steps_in_time(100, 200, done=5, steps=50, step_s=[10, 20, 10], eval_s=20, eval_every=2)  # 80 // (20 + 10)
    7
    >>> steps_in_time(100, 200, 5, 8, [10], 20), steps_in_time(190, 200, 5, 50, [10], 20), steps_in_time(0, 9, 0, 50, [], 0)
    (8, 6, 50)
    """
    if not step_s:
        return steps
    per_step = step_guess_s(step_s) + (eval_s / eval_every if eval_every else 0.0)
    more = int((limit_s - elapsed_s - eval_s) // per_step) if per_step > 0 else steps
    return min(steps, max(done + 1, done + more))
