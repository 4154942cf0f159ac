"""Which tokens the policy gradient trains on, chosen by name.

Every entry shares ``fn(entropy [B, T], mask [B, T], rho) -> weights [B, T]`` (1 where the token
is trained, 0 elsewhere); the weights multiply the per-token policy loss (``grpo_loss``'s
``pg_weights``), so the normaliser is unchanged: the paper's objective divides by all tokens of the
batch, not by the selected ones.
"""

from __future__ import annotations

import torch
from torch import Tensor

from grpo.core.registry import Registry

TOKEN_SELECTIONS: Registry = Registry("token selection")


@TOKEN_SELECTIONS.register("all")
def all_tokens(entropy: Tensor, mask: Tensor, rho: float = 1.0) -> Tensor:
    """Every real token (GRPO). Reads no entropy: trainers may pass a dummy."""
    return mask.to(torch.float32)


all_tokens.needs_entropy = False  # type: ignore[attr-defined]


def needs_entropy(fn) -> bool:
    """False for selections that ignore the entropy (trainers then skip computing it)."""
    return bool(getattr(fn, "needs_entropy", True))


@TOKEN_SELECTIONS.register("top-entropy")
def top_entropy_tokens(entropy: Tensor, mask: Tensor, rho: float = 0.2) -> Tensor:
    """The ``rho`` share of the batch's real tokens with the highest entropy (Wang et al., "Beyond
    the 80/20 rule", arXiv 2506.01939, eq. 7: ``I[H_t >= tau_rho]``, tau_rho the batch's
    (1 - rho)-quantile of token entropy; rho = 0.2). Ties at the threshold are all kept."""
    if not 0 < rho <= 1:
        raise ValueError(f"rho must be in (0, 1], got {rho}")
    real = entropy.detach()[mask.bool()]  # [n]
    if real.numel() == 0:
        return torch.zeros_like(mask, dtype=torch.float32)
    k = max(1, int(round(rho * real.numel())))
    tau = real.float().topk(k).values[-1]  # the k-th largest entropy
    return ((entropy.detach().float() >= tau) & mask.bool()).to(torch.float32)


def select_tokens(name: str, entropy: Tensor, mask: Tensor, rho: float) -> Tensor:
    """Weights [B, T] of the selection named ``name``."""
    return TOKEN_SELECTIONS.get(name)(entropy, mask, rho)
