"""A wall-clock budget for a whole run (``--time-limit``): stop training while the rest still fits.

The clock is the process's own, from its start (imports, model loading and the first evaluation
count), so "a run of at most 20 minutes" means what a stopwatch around the command would read.
Before each step the run asks whether that step, an evaluation due after it and the final
evaluation would still end inside the limit; a step is guessed to be as long as the slowest of the
last three (dynamic sampling makes steps vary 2-3x), an evaluation as long as the last one took.
"""

from __future__ import annotations

import time

import psutil


def process_elapsed_s() -> float:
    """Seconds since this process started."""
    return time.time() - psutil.Process().create_time()


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
