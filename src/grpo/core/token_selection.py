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
    (1 - rho)-quantile of token entropy; rho = 0.2). Exactly round(rho * n) of the n real tokens
    are kept: ties at the threshold (common for an untrained policy) are cut by topk's order."""
    if not 0 < rho <= 1:
        raise ValueError(f"rho must be in (0, 1], got {rho}")
    real = mask.bool().flatten()  # [B * T]
    n = int(real.sum())
    out = torch.zeros(mask.numel(), dtype=torch.float32, device=mask.device)
    if n == 0:
        return out.view(mask.shape)
    k = max(1, int(round(rho * n)))
    scores = torch.where(real, entropy.detach().float().flatten(), torch.full_like(out, -float("inf")))
    out[scores.topk(k).indices] = 1.0
    return out.view(mask.shape)


def select_tokens(name: str, entropy: Tensor, mask: Tensor, rho: float) -> Tensor:
    """Weights [B, T] of the selection named ``name``."""
    return TOKEN_SELECTIONS.get(name)(entropy, mask, rho)
