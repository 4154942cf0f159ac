"""Policy and value losses, kept apart from how they are aggregated over tokens.

Shapes: B samples (sequences or episodes), T tokens or time steps. A per-token loss matrix
[B, T] is computed first, then reduced by an aggregation chosen by name, so that length
normalisation is an option and not a fork of the loss (Dr. GRPO's point, arXiv 2503.20783).

Every loss returns ``(loss_matrix_or_scalar, metrics)`` with namespaced metric names.
"""

from __future__ import annotations

import torch
from torch import Tensor

from grpo.core.kl import MAX_LOG_RATIO, kl_estimate
from grpo.core.masked import masked_mean, masked_sum
from grpo.core.registry import Registry


# ---------------------------------------------------------------------------------------------
# Importance ratios: per token (PPO, GRPO) or per sequence (GSPO, arXiv 2507.18071).
# All share (logp [B, T], old_logp [B, T], mask [B, T]) -> log_ratio [B, T].
# ---------------------------------------------------------------------------------------------
RATIO_LEVELS: Registry = Registry("importance ratio level")


@RATIO_LEVELS.register("token")
def token_log_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    """log pi_theta(o_t) / pi_old(o_t) for every token."""
    return logp - old_logp


@RATIO_LEVELS.register("sequence")
def sequence_log_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    """GSPO: the length-normalised sequence ratio (pi_theta(o)/pi_old(o))^(1/|o|), on each token.

    Written as GSPO-token: ``sg[s] + logp - sg[logp]`` so that the value is the sequence
    ratio and each token's gradient is that of its own log-prob scaled by it.
    """
    seq = masked_mean(logp - old_logp, mask, dim=-1).unsqueeze(-1)  # [B, 1]
    return seq.detach() + logp - logp.detach()


# ---------------------------------------------------------------------------------------------
# Aggregations of a per-token loss matrix into a scalar.
# All share (loss [B, T], mask [B, T], constant: float | None) -> scalar.
# ---------------------------------------------------------------------------------------------
AGGREGATIONS: Registry = Registry("loss aggregation")
# Each aggregation's share of one micro-batch in the full batch's normaliser, registered beside it,
# so that gradient accumulation gives exactly the full-batch gradient: share(mask [n, T]) -> float,
# and the full batch's loss is the sum over micro-batches of aggregate(mb) * share(mb) / share(all).
MICRO_BATCH_SHARES: Registry = Registry("micro-batch share")


@AGGREGATIONS.register("sequence-mean")
def sequence_mean(loss: Tensor, mask: Tensor, constant: float | None = None) -> Tensor:
    """DeepSeekMath eq. 3: mean over each sample's tokens (1/|o_i|), then over samples."""
    per_seq = masked_mean(loss, mask, dim=-1)  # [B]
    has_tokens = mask.sum(-1) > 0
    return masked_mean(per_seq, has_tokens)


MICRO_BATCH_SHARES.register("sequence-mean")(lambda m: float((m.sum(-1) > 0).sum()))  # samples with tokens


@AGGREGATIONS.register("token-mean")
def token_mean(loss: Tensor, mask: Tensor, constant: float | None = None) -> Tensor:
    """DAPO (arXiv 2503.14476): every token of the batch weighs the same."""
    return masked_mean(loss, mask)


MICRO_BATCH_SHARES.register("token-mean")(lambda m: float(m.sum()))  # tokens


@AGGREGATIONS.register("constant")
def constant_normaliser(loss: Tensor, mask: Tensor, constant: float | None = None) -> Tensor:
    """Dr. GRPO: sum of token losses over a fixed normaliser (default: B * T, e.g. max length).

    The normaliser does not depend on the lengths in the batch, so neither long nor short
    answers are favoured, and the value does not change with gradient accumulation.
    """
    norm = constant if constant is not None else float(loss.shape[-1])
    return masked_sum(loss, mask) / (norm * loss.shape[0])


MICRO_BATCH_SHARES.register("constant")(lambda m: float(m.shape[0]))  # samples


def aggregate(loss: Tensor, mask: Tensor, mode: str = "sequence-mean", constant: float | None = None) -> Tensor:
    """Reduce a per-token loss [B, T] to a scalar with the aggregation named ``mode``."""
    return AGGREGATIONS.get(mode)(loss, mask, constant)


def _zero_padding(mask: Tensor, *xs: Tensor) -> tuple[Tensor, ...]:
    """Each of ``xs`` [B, T] with padded entries set to 0 before any arithmetic.

    Masking only the final per-token loss keeps NaN/inf padding out of the value but not out of
    the gradient: backward multiplies the zero upstream gradient by a NaN local derivative.
    ``where`` passes an exact 0 to the padded entries instead.
    """
    zero = torch.zeros((), dtype=xs[0].dtype, device=xs[0].device)
    return tuple(torch.where(mask.bool(), x, zero) for x in xs)


# ---------------------------------------------------------------------------------------------
# The clipped surrogate (PPO eq. 7; DeepSeekMath eq. 3) with decoupled clip ranges (DAPO).
# ---------------------------------------------------------------------------------------------
def clipped_surrogate(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    ratio_level: str = "token",
    with_metrics: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-token loss ``-min(r A, clip(r, 1 - eps_low, 1 + eps_high) A)``.

    ``logp``, ``old_logp``, ``mask`` [B, T]; ``advantages`` [B, T] or [B] (broadcast to every
    token, outcome supervision). ``eps_high`` defaults to ``eps_low`` (symmetric PPO clip);
    DAPO's clip-higher sets it larger. Returns (loss [B, T], metrics) with metrics:
    ``clip/low_frac`` (share of tokens whose gradient the lower clip removed: A < 0, r < 1-eps),
    ``clip/high_frac`` (A > 0, r > 1+eps), ``policy/ratio_mean``, ``policy/approx_kl_old``
    (k3 of pi_old against pi_theta, how far the policy moved during the update). With
    ``with_metrics=False`` the metrics are skipped (they cost as much as the loss on small nets).
    """
    eps_high = eps_low if eps_high is None else eps_high
    if advantages.dim() == logp.dim() - 1:
        advantages = advantages.unsqueeze(-1)  # [B, 1]
    advantages = advantages.to(logp.dtype).expand_as(logp)  # [B, T]
    logp, old_logp, advantages = _zero_padding(mask, logp, old_logp, advantages)
    log_ratio = RATIO_LEVELS.get(ratio_level)(logp, old_logp, mask)
    ratio = torch.exp(log_ratio.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO))  # [B, T]
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * advantages
    loss = -torch.min(unclipped, clipped)  # [B, T]
    if not with_metrics:
        return loss, {}
    with torch.no_grad():
        low = (ratio < 1.0 - eps_low) & (advantages < 0)
        high = (ratio > 1.0 + eps_high) & (advantages > 0)
        lr = log_ratio.detach()
        metrics = {
            "clip/low_frac": masked_mean(low.float(), mask),
            "clip/high_frac": masked_mean(high.float(), mask),
            "policy/ratio_mean": masked_mean(ratio.detach(), mask),
            "policy/approx_kl_old": masked_mean(torch.exp(lr) - 1 - lr, mask),
        }
    return loss, metrics


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_range: float | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO value loss ``0.5 (V - R)^2``, optionally pessimistically clipped around the old values.

    All [B, T] (or [N]); returns (per-element loss, metrics ``value/clip_frac``).
    """
    unclipped = (values - returns) ** 2
    if clip_range is None:
        return 0.5 * unclipped, {}
    v_clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    clipped = (v_clipped - returns) ** 2
    clip_frac = masked_mean((clipped > unclipped).float().detach(), mask)
    return 0.5 * torch.max(unclipped, clipped), {"value/clip_frac": clip_frac}


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """1 - Var(R - V) / Var(R) over the masked entries: 1 is a perfect critic, 0 a constant one."""
    var_r = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    resid = returns - values
    var_resid = masked_mean((resid - masked_mean(resid, mask)) ** 2, mask)
    return 1 - var_resid / var_r if var_r > 0 else torch.zeros((), device=values.device)


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    ref_logp: Tensor | None = None,
    beta: float = 0.04,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    ratio_level: str = "token",
    aggregation: str = "sequence-mean",
    kl_estimator: str = "k3",
    constant: float | None = None,
    with_metrics: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The GRPO objective (DeepSeekMath eq. 3), negated for minimisation.

    Per token: ``-min(r A, clip(r) A) + beta * KL_t(pi_theta || pi_ref)``, then aggregated by
    ``aggregation`` (the paper: mean over each output's tokens, then over outputs). The KL enters
    the loss, not the reward, as in the paper. ``ref_logp`` may be None when ``beta == 0``.
    Shapes as in :func:`clipped_surrogate`. Returns (scalar loss, metrics).
    """
    per_token, metrics = clipped_surrogate(logp, old_logp, advantages, mask, eps_low, eps_high, ratio_level,
                                           with_metrics)
    if with_metrics:
        metrics["loss/policy"] = aggregate(per_token.detach(), mask, aggregation, constant)
    if beta > 0:
        if ref_logp is None:
            raise ValueError("beta > 0 needs the reference policy's log-probs (ref_logp)")
        kl = kl_estimate(*_zero_padding(mask, logp, ref_logp), kl_estimator)  # [B, T]
        per_token = per_token + beta * kl
        if with_metrics:
            metrics["kl/ref"] = masked_mean(kl.detach(), mask)
    elif ref_logp is not None and with_metrics:
        kl = kl_estimate(*_zero_padding(mask, logp.detach(), ref_logp), kl_estimator)
        metrics["kl/ref"] = masked_mean(kl, mask)
    loss = aggregate(per_token, mask, aggregation, constant)
    if with_metrics:
        metrics["loss/total"] = loss.detach()
    return loss, metrics
