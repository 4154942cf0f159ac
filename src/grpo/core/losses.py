"""Policy and value losses, kept apart from how they are aggregated over tokens.

Shapes: B samples (sequences or episodes), T tokens or time steps. A per-token loss matrix
[B, T] is computed first, then reduced by an aggregation chosen by name, so that length
normalisation is an option and not a fork of the loss (Dr. GRPO's point, arXiv 2503.20783).

Every loss returns ``(loss_matrix_or_scalar, metrics)`` with namespaced metric names.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from grpo.core.kl import kl_estimate
from grpo.core.masked import masked_mean, masked_sum
from grpo.core.policy_losses import POLICY_LOSSES, PolicyLossParams, zero_padding
from grpo.core.registry import Registry


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


# verl's loss_agg_mode names (verl/trainer/ppo/core_algos.py agg_loss), beside ours.
@AGGREGATIONS.register("token-sum")
def token_sum(loss: Tensor, mask: Tensor, constant: float | None = None) -> Tensor:
    """verl ``token-sum``: the plain sum of every real token's loss (no normaliser)."""
    return masked_sum(loss, mask)


MICRO_BATCH_SHARES.register("token-sum")(lambda m: 1.0)  # a sum: each micro-batch counts in full


@AGGREGATIONS.register("seq-mean-token-sum")
def seq_mean_token_sum(loss: Tensor, mask: Tensor, constant: float | None = None) -> Tensor:
    """verl ``seq-mean-token-sum``: each sequence's token losses summed, then the mean over rows."""
    return masked_sum(loss, mask, dim=-1).mean()  # [B] -> scalar


MICRO_BATCH_SHARES.register("seq-mean-token-sum")(lambda m: float(m.shape[0]))  # rows


@AGGREGATIONS.register("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(loss: Tensor, mask: Tensor, constant: float | None = None) -> Tensor:
    """verl ``seq-mean-token-sum-norm`` (its Dr. GRPO): the sum of all token losses over a constant
    (default: T, the padded length; verl divides by it, not by the number of rows)."""
    return masked_sum(loss, mask) / (constant if constant is not None else float(loss.shape[-1]))


MICRO_BATCH_SHARES.register("seq-mean-token-sum-norm")(lambda m: 1.0)  # a sum over a fixed constant


def aggregate(loss: Tensor, mask: Tensor, mode: str = "sequence-mean", constant: float | None = None) -> Tensor:
    """Reduce a per-token loss [B, T] to a scalar with the aggregation named ``mode``."""
    return AGGREGATIONS.get(mode)(loss, mask, constant)


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
    policy_loss: str = "clip",
    loss_params: PolicyLossParams | None = None,
    pg_weights: Tensor | None = None,
    kl: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The GRPO objective (DeepSeekMath eq. 3), negated for minimisation.

    Per token: ``-min(r A, clip(r) A) + beta * KL_t(pi_theta || pi_ref)``, then aggregated by
    ``aggregation`` (the paper: mean over each output's tokens, then over outputs). The KL enters
    the loss, not the reward, as in the paper. ``ref_logp`` may be None when ``beta == 0``.
    ``policy_loss`` names the surrogate in :data:`grpo.core.policy_losses.POLICY_LOSSES` (``clip``:
    the paper's), with its constants in ``loss_params`` (``eps_low``, ``eps_high`` and ``ratio_level``
    here override theirs). ``pg_weights`` [B, T] (detached) scales the policy term per token: the
    top-entropy selection and the rollout importance-sampling correction; the KL term is not scaled.
    ``kl`` [B, T] is a per-token KL computed elsewhere (the exact one, ``kl_estimator="full"``:
    :func:`grpo.core.kl.categorical_kl`); given, it replaces the estimate from ``ref_logp``. Shapes as
    in :func:`grpo.core.policy_losses.clipped_surrogate`. Returns (scalar loss, metrics).
    """
    params = replace(loss_params or PolicyLossParams(), eps_low=eps_low, eps_high=eps_high, ratio_level=ratio_level)
    per_token, metrics = POLICY_LOSSES.get(policy_loss)(logp, old_logp, advantages, mask, params, with_metrics)
    if pg_weights is not None:
        per_token = per_token * zero_padding(mask, pg_weights.detach().to(per_token.dtype))[0]
    if with_metrics:
        metrics["loss/policy"] = aggregate(per_token.detach(), mask, aggregation, constant)
    if kl is not None:
        kl = zero_padding(mask, kl)[0]  # [B, T]
    elif ref_logp is not None and (beta > 0 or with_metrics):  # with beta 0, only for the metric
        kl = kl_estimate(*zero_padding(mask, logp if beta > 0 else logp.detach(), ref_logp), kl_estimator)  # [B, T]
    if beta > 0:
        if kl is None:
            raise ValueError("beta > 0 needs the reference policy's log-probs (ref_logp) or a per-token kl")
        per_token = per_token + beta * kl
    if kl is not None and with_metrics:
        metrics["kl/ref"] = masked_mean(kl.detach(), mask)
    loss = aggregate(per_token, mask, aggregation, constant)
    if with_metrics:
        metrics["loss/total"] = loss.detach()
    return loss, metrics
