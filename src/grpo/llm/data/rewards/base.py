"""The reward registry and the weighted set of rewards a run is scored with."""

from __future__ import annotations

import math
import numbers
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
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
    """``"NAME"`` or ``"NAME:WEIGHT"`` -> (name, weight). The weight is any finite number: negative
    makes the reward a penalty, 0 logs it without counting it; NaN and inf are refused (they would
    make every total non-finite and every update skipped).

    >>> parse_reward_spec("format:0.5"), parse_reward_spec("length:-1e-2")
    (('format', 0.5), ('length', -0.01))
    """
    name, _, weight = spec.partition(":")
    return name, reward_weight(spec, weight)


def reward_weight(spec: str, weight: str) -> float:
    """The WEIGHT text of a reward spec as a finite float (1.0 when empty); one-line error otherwise."""
    try:
        value = float(weight) if weight else 1.0
    except ValueError:
        raise ValueError(f"reward {spec!r}: the weight after ':' must be a number (NAME[:WEIGHT] or "
                         "MODULE:FUNCTION[:WEIGHT])") from None
    if not math.isfinite(value):
        raise ValueError(f"reward {spec!r}: the weight must be a finite number (negative for a penalty), not {weight}")
    return value


@dataclass
class ScoredBatch:
    """Rewards of N samples: per function [N, K] (NaN where None), weighted total [N], steps."""

    per_fn: Tensor  # [N, K]
    total: Tensor  # [N] weighted sum of the outcome rewards
    names: list[str]
    steps: list[StepRewards | None] | None = None  # the process reward's output, if any
    accuracy: Tensor | None = None  # [N] 1.0 where the answer is right
    step_weight: float = 1.0  # weight of the process reward
    failed: Tensor | None = None  # [N] true where a reward failed (raised, hung, NaN) under policy "drop"


# What to do when a reward function raises, hangs or returns NaN/inf for a sample.
REWARD_FAILURE_POLICIES = ("raise", "zero", "drop")


class RewardError(ValueError):
    """A reward function failed; the message names the function and the sample."""


def _describe(i: int, prompts: list[str], completions: list[str]) -> str:
    return f"sample {i} (prompt {prompts[i][:80]!r}, completion {completions[i][:80]!r})"


@dataclass
class RewardSet:
    """Named reward functions with weights; at most one of them may be a process reward.

    ``on_failure`` says what happens when a function raises, runs past ``timeout_s`` or returns
    NaN/inf or the wrong number of values: ``raise`` a :class:`RewardError` naming the function
    and the sample, score the sample ``zero``, or ``drop`` its whole group from the update.
    A hung function cannot be killed from a thread: it is abandoned (it may keep a core busy);
    run untrusted code through :mod:`grpo.llm.infra.sandbox`, which has real limits.
    """

    fns: dict[str, Callable]
    weights: dict[str, float] = field(default_factory=dict)
    on_failure: str = "raise"
    timeout_s: float | None = 60.0

    def __post_init__(self) -> None:
        if self.on_failure not in REWARD_FAILURE_POLICIES:
            raise ValueError(f"reward failure policy must be one of {REWARD_FAILURE_POLICIES}, got {self.on_failure!r}")

    @classmethod
    def from_specs(cls, specs: list[str], extra: dict[str, Callable] | None = None, **options: Any) -> "RewardSet":
        fns, weights = dict(extra or {}), {}
        for spec in specs:
            name, w = parse_reward_spec(spec)
            fns[name] = REWARDS.get(name)
            weights[name] = w
        if not fns:
            raise ValueError(f"no reward function given (use --reward NAME[:WEIGHT]; built-in: {REWARDS.names()})")
        return cls(fns, weights, **options)

    def check_columns(self, columns: list[str]) -> None:
        """ValueError naming the reward and the column when the data lacks a needed column."""
        for name, fn in self.fns.items():
            missing = [c for c in getattr(fn, "columns", ()) if c not in columns]
            if missing:
                raise ValueError(f"reward {name!r} needs column(s) {missing}; the data has {sorted(columns)}")

    @property
    def accuracy_name(self) -> str | None:
        return next((n for n, f in self.fns.items() if getattr(f, "accuracy", False)), None)

    # ------------------------------------------------------------------ calling one function safely
    def _run(self, fn: Callable, prompts: list[str], completions: list[str], columns: dict[str, list]) -> list:
        if self.timeout_s is None:
            return list(fn(prompts, completions, **columns))
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            return list(pool.submit(fn, prompts, completions, **columns).result(timeout=self.timeout_s))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _fail(self, name: str, what: str) -> None:
        if self.on_failure == "raise":
            raise RewardError(f"reward {name!r} {what} (set the reward failure policy to 'zero' or 'drop' to go on)")

    def _score(self, name: str, fn: Callable, prompts: list[str], completions: list[str],
               columns: dict[str, list]) -> tuple[list[Any], list[bool]]:
        """The function's N values and which samples failed (their values are None)."""
        N = len(completions)
        try:
            out = self._run(fn, prompts, completions, columns)
        except FutureTimeout:
            self._fail(name, f"did not return within {self.timeout_s} s for a batch of {N} completions")
            return [None] * N, [True] * N
        except Exception:
            # Find the samples it fails on, one at a time, so that the error can name one.
            out, failed = [], []
            for i in range(N):
                one = {k: v[i:i + 1] for k, v in columns.items()}
                try:
                    out.extend(self._run(fn, prompts[i:i + 1], completions[i:i + 1], one)[:1] or [None])
                    failed.append(False)
                except Exception as err:  # noqa: BLE001 - reported with the sample
                    self._fail(name, f"raised {type(err).__name__}: {err} on {_describe(i, prompts, completions)}")
                    out.append(None)
                    failed.append(True)
            return out, failed
        if len(out) != N:
            self._fail(name, f"returned {len(out)} values for {N} completions")
            return [None] * N, [True] * N
        failed = []
        for i, v in enumerate(out):
            bad = not (v is None or isinstance(v, StepRewards) or (isinstance(v, numbers.Real) and math.isfinite(v)))
            if bad:
                self._fail(name, f"returned {v} for {_describe(i, prompts, completions)}")
                out[i] = None
            failed.append(bad)
        return out, failed

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> ScoredBatch:
        """Score N samples. The process reward (if any) is left out of ``total``: its steps are
        turned into advantages separately, scaled by its weight."""
        N = len(completions)
        per_fn = torch.full((N, len(self.fns)), math.nan)  # [N, K]
        outcome = torch.ones(len(self.fns))  # [K] 0 for the process reward
        failed = torch.zeros(N, dtype=torch.bool)  # [N]
        steps, step_weight = None, 1.0
        for k, (name, fn) in enumerate(self.fns.items()):
            out, bad = self._score(name, fn, prompts, completions, columns)
            failed |= torch.tensor(bad, dtype=torch.bool)
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
        return ScoredBatch(per_fn, total, list(self.fns), steps, acc, step_weight,
                           failed if self.on_failure == "drop" else None)
