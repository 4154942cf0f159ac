"""The reward registry and the weighted set of rewards a run is scored with."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from torch import Tensor

from grpo.core import Registry


class RewardFn(Protocol):
    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[Any]: ...


@dataclass
class StepRewards:
    """Per-step rewards of one completion and the character offset where each step ends."""

    rewards: list[float]
    ends: list[int]

    def __post_init__(self) -> None:
        if len(self.rewards) != len(self.ends):
            raise ValueError(f"StepRewards: {len(self.rewards)} rewards but {len(self.ends)} step ends")


REWARDS: Registry = Registry("reward")


def register(name: str, accuracy: bool = False, columns: tuple[str, ...] = ()) -> Callable:
    """Register a built-in reward; ``columns`` are the dataset columns it needs (checked early)."""

    def deco(fn: Callable) -> Callable:
        fn.accuracy = accuracy  # type: ignore[attr-defined]
        fn.columns = columns  # type: ignore[attr-defined]
        return REWARDS.register(name)(fn)

    return deco


def parse_reward_spec(spec: str) -> tuple[str, float]:
    """``"NAME"`` or ``"NAME:WEIGHT"`` -> (name, weight).

    >>> parse_reward_spec("format:0.5")
    ('format', 0.5)
    """
    name, _, weight = spec.partition(":")
    try:
        return name, float(weight) if weight else 1.0
    except ValueError:
        raise ValueError(f"reward {spec!r}: the weight after ':' must be a number") from None


@dataclass
class ScoredBatch:
    """Rewards of N samples: per function [N, K] (NaN where None), weighted total [N], steps."""

    per_fn: Tensor  # [N, K]
    total: Tensor  # [N] weighted sum of the outcome rewards
    names: list[str]
    steps: list[StepRewards | None] | None = None  # the process reward's output, if any
    accuracy: Tensor | None = None  # [N] 1.0 where the answer is right
    step_weight: float = 1.0  # weight of the process reward


@dataclass
class RewardSet:
    """Named reward functions with weights; at most one of them may be a process reward."""

    fns: dict[str, Callable]
    weights: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_specs(cls, specs: list[str], extra: dict[str, Callable] | None = None) -> "RewardSet":
        fns, weights = dict(extra or {}), {}
        for spec in specs:
            name, w = parse_reward_spec(spec)
            fns[name] = REWARDS.get(name)
            weights[name] = w
        if not fns:
            raise ValueError(f"no reward function given (use --reward NAME[:WEIGHT]; built-in: {REWARDS.names()})")
        return cls(fns, weights)

    def check_columns(self, columns: list[str]) -> None:
        """ValueError naming the reward and the column when the data lacks a needed column."""
        for name, fn in self.fns.items():
            missing = [c for c in getattr(fn, "columns", ()) if c not in columns]
            if missing:
                raise ValueError(f"reward {name!r} needs column(s) {missing}; the data has {sorted(columns)}")

    @property
    def accuracy_name(self) -> str | None:
        return next((n for n, f in self.fns.items() if getattr(f, "accuracy", False)), None)

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> ScoredBatch:
        """Score N samples. The process reward (if any) is left out of ``total``: its steps are
        turned into advantages separately, scaled by its weight."""
        N = len(completions)
        per_fn = torch.full((N, len(self.fns)), math.nan)  # [N, K]
        outcome = torch.ones(len(self.fns))  # [K] 0 for the process reward
        steps, step_weight = None, 1.0
        for k, (name, fn) in enumerate(self.fns.items()):
            out = list(fn(prompts, completions, **columns))
            if len(out) != N:
                raise ValueError(f"reward {name!r} returned {len(out)} values for {N} completions")
            if any(isinstance(v, StepRewards) for v in out):
                if steps is not None:
                    raise ValueError("at most one process (per-step) reward function is supported")
                steps, outcome[k], step_weight = out, 0.0, self.weights.get(name, 1.0)
                # Logged value of a process reward: the mean of its step rewards.
                out = [sum(v.rewards) / len(v.rewards) if v and v.rewards else None for v in out]
            per_fn[:, k] = torch.tensor([math.nan if v is None else float(v) for v in out])
        w = torch.tensor([self.weights.get(n, 1.0) for n in self.fns]) * outcome  # [K]
        total = (torch.nan_to_num(per_fn) * w).sum(-1)  # [N]
        acc = None
        if self.accuracy_name is not None:
            acc = (torch.nan_to_num(per_fn[:, list(self.fns).index(self.accuracy_name)]) >= 1.0).float()
        return ScoredBatch(per_fn, total, list(self.fns), steps, acc, step_weight)
