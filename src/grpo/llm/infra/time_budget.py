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
    next_step = max(step_s[-3:], default=0.0)
    return elapsed_s + next_step + (eval_s if eval_due else 0.0) + eval_s > limit_s
