"""Outcome advantage estimators, chosen by name: one reward per sample -> one advantage per sample.

Every entry shares ``fn(rewards [B, G], inp: AdvantageInputs) -> advantages [B, G]`` (B groups, G
samples per group); the trainer broadcasts the result to every token or time step of the sample.
``AdvantageInputs`` carries what some estimators need beyond the rewards (lengths, the per-reward
columns, a greedy baseline); an entry that needs the greedy baseline says so with
``needs_baseline`` (:func:`needs_baseline`), so trainers generate it only then, never by name.

The names follow verl's ``adv_estimator`` (``reinforce_plus_plus`` -> ``reinforce++``, ...);
docs/algorithms.md maps them to TRL's and verl's options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from grpo.core.advantages import ZERO_STD, group_advantages
from grpo.core.registry import Registry

OUTCOME_ESTIMATORS: Registry = Registry("outcome advantage estimator")


@dataclass(frozen=True)
class AdvantageInputs:
    """What an estimator may read beside the rewards; trainers fill what they have."""

    scale: str = "group"  # group / batch / none, as in group_advantages (grpo, gdpo, grpo-passk)
    lengths: Tensor | None = None  # [B, G] tokens (or time steps) per sample (opo, reinforce++ whitening)
    columns: Tensor | None = None  # [B, G, K] each reward function's score before weighting (gdpo)
    weights: Tensor | None = None  # [K] the reward functions' weights (gdpo); none: all 1
    baseline: Tensor | None = None  # [B] reward of the greedy sample of each group (remax)
    eps: float = 1e-4


def needs_baseline(fn: Callable) -> bool:
    """True for estimators that read ``AdvantageInputs.baseline`` (a greedy rollout per group)."""
    return bool(getattr(fn, "needs_baseline", False))


def _centred_zero(adv: Tensor, rewards: Tensor) -> Tensor:
    """Exactly 0 for groups whose rewards are all equal (no signal), float32."""
    constant = rewards.double().std(dim=1, keepdim=True) < ZERO_STD  # [B, 1]
    return torch.where(constant, torch.zeros_like(adv), adv).float()


def _whiten(x: Tensor, weights: Tensor | None, eps: float) -> Tensor:
    """(x - mean) / std over the whole batch [B, G], each entry weighted (by its length, if given)."""
    w = torch.ones_like(x) if weights is None else weights.to(x.dtype)
    n = w.sum().clamp(min=1)
    mean = (w * x).sum() / n
    var = (w * (x - mean) ** 2).sum() / (n - 1).clamp(min=1)
    return (x - mean) / (var.sqrt() + eps)


@OUTCOME_ESTIMATORS.register("grpo")
def grpo_estimator(rewards: Tensor, inp: AdvantageInputs) -> Tensor:
    """GRPO (DeepSeekMath, arXiv 2402.03300, sec. 4.1.2): ``(r - mean_g r) / std_g r``."""
    return group_advantages(rewards, inp.scale, inp.eps)


@OUTCOME_ESTIMATORS.register("rloo")
def rloo_estimator(rewards: Tensor, inp: AdvantageInputs) -> Tensor:
    """RLOO (Ahmadian et al., arXiv 2402.14740, eq. 5; Kool et al. 2019): each sample's baseline is the
    mean of the other G - 1 rewards, ``A_i = r_i - mean_{j != i} r_j = G / (G - 1) (r_i - mean r)``."""
    r = rewards.double()
    G = r.shape[1]
    others = (r.sum(1, keepdim=True) - r) / (G - 1)  # [B, G]
    return _centred_zero(r - others, rewards)


@OUTCOME_ESTIMATORS.register("reinforce++")
def reinforce_pp_estimator(rewards: Tensor, inp: AdvantageInputs) -> Tensor:
    """REINFORCE++ (Hu, arXiv 2501.03262, eq. 7-8): no per-prompt baseline; the return (here the
    outcome reward, gamma = 1) is normalised over the whole batch, every token weighing the same
    (each sample weighted by its length when given, as verl whitens over tokens). The KL to the
    reference stays in the loss (beta), not in the reward as in the paper."""
    return _whiten(rewards.double(), inp.lengths, inp.eps).float()


@OUTCOME_ESTIMATORS.register("reinforce++-baseline")
def reinforce_pp_baseline_estimator(rewards: Tensor, inp: AdvantageInputs) -> Tensor:
    """REINFORCE++-baseline (Hu, arXiv 2501.03262, sec. 3.2): subtract the group mean, then normalise
    over the whole batch (token-weighted as :func:`reinforce_pp_estimator`)."""
    r = rewards.double()
    centred = r - r.mean(1, keepdim=True)  # [B, G]
    return _centred_zero(_whiten(centred, inp.lengths, inp.eps), rewards)


@OUTCOME_ESTIMATORS.register("remax")
def remax_estimator(rewards: Tensor, inp: AdvantageInputs) -> Tensor:
    """ReMax (Li et al., arXiv 2310.10505, Algorithm 1): the baseline is the reward of the greedy
    completion of the same prompt (classic control: the greedy episode from the same reset seed),
    ``A_i = r_i - r(greedy)``. Needs ``inp.baseline`` [B]."""
    if inp.baseline is None:
        raise ValueError("remax needs the greedy baseline's rewards (AdvantageInputs.baseline [B])")
    return (rewards.double() - inp.baseline.double().reshape(-1, 1)).float()


remax_estimator.needs_baseline = True  # type: ignore[attr-defined]


@OUTCOME_ESTIMATORS.register("opo")
def opo_estimator(rewards: Tensor, inp: AdvantageInputs) -> Tensor:
    """OPO (Hao et al., arXiv 2505.23585, eq. 5): the optimal baseline under a length model,
    ``b = sum_i |o_i| r_i / sum_i |o_i|`` over the group; ``A_i = r_i - b``. Without lengths: the
    plain group mean."""
    r = rewards.double()
    lengths = torch.ones_like(r) if inp.lengths is None else inp.lengths.double().clamp(min=0)
    b = (lengths * r).sum(1, keepdim=True) / lengths.sum(1, keepdim=True).clamp(min=1e-12)  # [B, 1]
    return _centred_zero(r - b, rewards)


@OUTCOME_ESTIMATORS.register("grpo-passk")
def grpo_passk_estimator(rewards: Tensor, inp: AdvantageInputs) -> Tensor:
    """GRPO pass@k (verl's ``grpo_passk``, after Walder and Karkhanis, arXiv 2505.15201, and
    arXiv 2503.19595): only the best sample of each group is reinforced, by the margin
    ``r_max - r_second``, divided by the group std (``scale="group"``); every other sample gets 0.
    Ties for the best give 0 (no margin)."""
    r = rewards.double()
    top = r.topk(2, dim=1)  # values, indices [B, 2]
    margin = top.values[:, 0] - top.values[:, 1]  # [B]
    if inp.scale == "group":
        margin = margin / (r.std(1) + inp.eps)
    adv = torch.zeros_like(r)
    adv.scatter_(1, top.indices[:, :1], margin[:, None])
    return adv.float()


@OUTCOME_ESTIMATORS.register("gdpo")
def gdpo_estimator(rewards: Tensor, inp: AdvantageInputs) -> Tensor:
    """GDPO (Liu et al., arXiv 2601.05242, eq. 4-5; TRL ``normalize_then_sum``): each reward
    function's column is normalised inside its group (so one reward with a wide range cannot drown
    the others), the normalised columns are summed with the reward weights, and the sum is
    normalised over the batch. A score of None (NaN) counts 0. With one column this is GRPO
    followed by a batch normalisation."""
    cols = rewards.double()[..., None] if inp.columns is None else inp.columns.double()  # [B, G, K]
    cols = torch.nan_to_num(cols, nan=0.0)
    w = torch.ones(cols.shape[-1], dtype=torch.float64) if inp.weights is None else inp.weights.double()
    per = torch.stack([group_advantages(cols[..., k], "group", inp.eps).double() for k in range(cols.shape[-1])], -1)
    total = (per * w.to(per.device)).sum(-1)  # [B, G]
    if total.numel() < 2 or float(total.std()) < ZERO_STD:
        return torch.zeros_like(total).float()
    return ((total - total.mean()) / (total.std() + inp.eps)).float()


def outcome_advantages(name: str, rewards: Tensor, inp: AdvantageInputs | None = None) -> Tensor:
    """The estimator named ``name`` applied to ``rewards`` [B, G] -> [B, G]."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [groups, G] with G >= 2, got {tuple(rewards.shape)}")
    return OUTCOME_ESTIMATORS.get(name)(rewards, inp or AdvantageInputs())
