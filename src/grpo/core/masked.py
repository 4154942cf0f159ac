"""Reductions that ignore padding: every loss and statistic goes through these."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of ``x`` where ``mask`` is true (padding contributes exactly 0, even if it is NaN)."""
    x = torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x.sum() if dim is None else x.sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over the entries where ``mask`` is true; 0 where there are none."""
    count = mask.to(x.dtype).sum() if dim is None else mask.to(x.dtype).sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1)


def masked_whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """(x - mean) / std over the masked entries (PPO's advantage normalisation); 0 outside."""
    # Padding zeroed first: a NaN there would otherwise reach the gradient through (x - mean)**2.
    x = torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum().clamp(min=2).to(x.dtype)
    var = var * n / (n - 1)  # unbiased, as torch.std
    out = (x - mean) / (var.sqrt() + eps)
    return torch.where(mask.bool(), out, torch.zeros((), dtype=x.dtype, device=x.device))
