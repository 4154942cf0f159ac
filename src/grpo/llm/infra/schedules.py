"""Learning-rate schedules over a run's steps, by name: the factor that multiplies the base rate.

A schedule is a pure function of (step, steps), so a resumed run gets the same rate at the same
step with no scheduler state to save. ``step`` counts policy-update rounds from 0; the rate of
step i holds for all mu updates of that step. ``linear`` and ``cosine`` are the formulas of
Hugging Face's ``get_linear_schedule_with_warmup`` / ``get_cosine_schedule_with_warmup``, and
``constant`` with a warmup is its ``get_constant_schedule_with_warmup`` (TRL's ``lr_scheduler_type``
and ``warmup_steps``), so a run here and a TRL run with the same name, warmup and ``max_steps`` use
the same rate at every optimizer step.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from grpo.core import Registry

# Name -> factor(step, steps) in [0, 1]; all share that signature.
LR_SCHEDULES: Registry = Registry("learning-rate schedule")
LR_SCHEDULES.register("constant")(lambda step, steps: 1.0)
# 1 at the first step, 1/steps at the last (0 would be a wasted step).
LR_SCHEDULES.register("linear")(lambda step, steps: max(0.0, (steps - step) / max(1, steps)))
LR_SCHEDULES.register("cosine")(lambda step, steps: 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / max(1, steps))))


def lr_factor(name: str, step: int, steps: int, warmup: int = 0) -> float:
    """Factor of the base learning rate at ``step`` of ``steps``: ``step / warmup`` over the first
    ``warmup`` steps (Hugging Face's warmup: 0 at step 0, where Adam's moments still take the gradient),
    then the schedule ``name`` over the remaining ``steps - warmup``.

    >>> [lr_factor("linear", s, 4) for s in range(4)]
    [1.0, 0.75, 0.5, 0.25]
    >>> lr_factor("constant", 3, 4), round(lr_factor("cosine", 2, 4), 6)
    (1.0, 0.5)
    >>> [lr_factor("linear", s, 6, warmup=2) for s in range(6)]
    [0.0, 0.5, 1.0, 0.75, 0.5, 0.25]
    """
    if step < warmup:
        return step / warmup
    fn: Callable[[int, int], float] = LR_SCHEDULES.get(name)
    return float(fn(step - warmup, steps - warmup))


def set_learning_rates(optimizer: Any, base_lrs: list[float], factor: float) -> float:
    """Set every parameter group's rate to its base rate x ``factor``; returns the first group's rate."""
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor
    return base_lrs[0] * factor if base_lrs else 0.0
