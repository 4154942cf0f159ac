"""Importance-sampling correction between the sampling engine and the trainer, chosen by name.

A fast engine (vLLM) samples from pi_engine, which differs from the trainer's pi_old by numerics
(kernels, precision, batching). The tokens are then off-policy for the update; these functions
turn the two sets of log-probs into per-token weights [B, T] for the policy loss (``grpo_loss``'s
``pg_weights``; detached). Every entry of ``ROLLOUT_CORRECTIONS`` shares
``fn(old_logp [B, T], engine_logp [B, T], mask [B, T], cap) -> (weights [B, T], metrics)``
with the ratio ``w = pi_old / pi_engine``:

- ``token-truncate``: TIS (Yao et al., "Your efficient RL framework secretly brings you off-policy
  RL training", 2025): ``min(w_t, cap)`` per token.
- ``token-mask``: MIS / IcePop (Ling team, arXiv 2510.18855, eq. 4): ``w_t`` where
  ``1/cap <= w_t <= cap``, else 0.
- ``sequence-truncate`` / ``sequence-mask``: the same on the sequence ratio ``prod_t w_t``, put on
  every token of the sequence (TRL's ``vllm_importance_sampling_mode``; its default is
  sequence-mask with cap 3).

:func:`off_policy_sequence_mask` is DeepSeek-V3.2's off-policy sequence masking (arXiv 2512.02556,
sec. 3.1): sequences with a negative advantage whose mean log-ratio of the sampling policy to the
current one exceeds delta leave the loss.
"""

from __future__ import annotations

import torch
from torch import Tensor

from grpo.core.kl import MAX_LOG_RATIO
from grpo.core.masked import masked_mean, masked_sum
from grpo.core.registry import Registry

ROLLOUT_CORRECTIONS: Registry = Registry("rollout correction")


def _log_ratio(old_logp: Tensor, engine_logp: Tensor, mask: Tensor) -> Tensor:
    """log pi_old - log pi_engine, 0 on padding. [B, T]"""
    zero = torch.zeros((), dtype=old_logp.dtype, device=old_logp.device)
    return torch.where(mask.bool(), (old_logp - engine_logp).detach(), zero).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)


def _metrics(weights: Tensor, ratio: Tensor, mask: Tensor) -> dict[str, Tensor]:
    return {"rollout_is/weight_mean": masked_mean(weights, mask),
            "rollout_is/ratio_mean": masked_mean(ratio, mask),
            "rollout_is/zero_frac": masked_mean((weights == 0).float(), mask)}


@ROLLOUT_CORRECTIONS.register("none")
def no_correction(old_logp: Tensor, engine_logp: Tensor, mask: Tensor, cap: float) -> tuple[Tensor, dict]:
    """No correction: every weight 1."""
    return torch.ones_like(old_logp), {}


@ROLLOUT_CORRECTIONS.register("token-truncate")
def token_truncate(old_logp: Tensor, engine_logp: Tensor, mask: Tensor, cap: float) -> tuple[Tensor, dict]:
    ratio = _log_ratio(old_logp, engine_logp, mask).exp()  # [B, T]
    w = ratio.clamp(max=cap)
    return w, _metrics(w, ratio, mask)


@ROLLOUT_CORRECTIONS.register("token-mask")
def token_mask(old_logp: Tensor, engine_logp: Tensor, mask: Tensor, cap: float) -> tuple[Tensor, dict]:
    ratio = _log_ratio(old_logp, engine_logp, mask).exp()  # [B, T]
    w = torch.where((ratio <= cap) & (ratio >= 1.0 / cap), ratio, torch.zeros_like(ratio))
    return w, _metrics(w, ratio, mask)


def _sequence_ratio(old_logp: Tensor, engine_logp: Tensor, mask: Tensor) -> Tensor:
    """prod_t w_t per sequence, on each token [B, T]."""
    seq = masked_sum(_log_ratio(old_logp, engine_logp, mask), mask, dim=-1)  # [B]
    return seq.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO).exp()[:, None].expand_as(old_logp)


@ROLLOUT_CORRECTIONS.register("sequence-truncate")
def sequence_truncate(old_logp: Tensor, engine_logp: Tensor, mask: Tensor, cap: float) -> tuple[Tensor, dict]:
    ratio = _sequence_ratio(old_logp, engine_logp, mask)
    w = ratio.clamp(max=cap)
    return w, _metrics(w, ratio, mask)


@ROLLOUT_CORRECTIONS.register("sequence-mask")
def sequence_mask(old_logp: Tensor, engine_logp: Tensor, mask: Tensor, cap: float) -> tuple[Tensor, dict]:
    ratio = _sequence_ratio(old_logp, engine_logp, mask)
    w = torch.where((ratio <= cap) & (ratio >= 1.0 / cap), ratio, torch.zeros_like(ratio))
    return w, _metrics(w, ratio, mask)


def rollout_weights(mode: str, old_logp: Tensor, engine_logp: Tensor, mask: Tensor,
                    cap: float = 3.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Weights [B, T] of the correction named ``mode`` and its metrics."""
    if cap <= 1:
        raise ValueError(f"rollout correction cap must be > 1, got {cap}")
    return ROLLOUT_CORRECTIONS.get(mode)(old_logp, engine_logp, mask, cap)


def off_policy_sequence_mask(logp: Tensor, sampling_logp: Tensor, advantages: Tensor, mask: Tensor,
                             delta: float) -> Tensor:
    """DeepSeek-V3.2's mask [B, T] (1 keep, 0 drop): a sequence is dropped when its advantage is
    negative and ``mean_t (log pi_sampling - log pi_theta) > delta`` (it has drifted off-policy;
    learning from its mistakes would be noise). ``advantages`` [B] or [B, T] (sequence mean used)."""
    drift = masked_mean(_log_ratio(sampling_logp, logp, mask), mask, dim=-1)  # [B]
    adv = advantages if advantages.dim() == 1 else masked_mean(advantages.detach(), mask, dim=-1)
    drop = (adv < 0) & (drift > delta)  # [B]
    return (~drop).to(logp.dtype)[:, None].expand_as(logp) * mask.to(logp.dtype)
