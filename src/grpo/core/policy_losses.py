"""Per-token policy losses, chosen by name: the clipped surrogate and its successors.

Every entry of ``POLICY_LOSSES`` shares
``fn(logp [B, T], old_logp [B, T], adv [B, T], mask [B, T], p: PolicyLossParams, with_metrics)
-> (loss [B, T], metrics)``; the matrix is aggregated afterwards (:mod:`grpo.core.losses`), so the
normaliser stays an option. A sequence-level loss (GMPO) puts each sequence's loss on every one of
its tokens. ``PolicyLossParams`` holds every entry's constants, defaulting to its paper's values.
Padding (mask 0) is zeroed before any arithmetic, so NaN there never reaches a gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable

import torch
from torch import Tensor

from grpo.core.kl import MAX_LOG_RATIO
from grpo.core.masked import masked_mean
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


def zero_padding(mask: Tensor, *xs: Tensor) -> tuple[Tensor, ...]:
    """Each of ``xs`` [B, T] with padded entries set to 0 before any arithmetic.

    Masking only the final per-token loss keeps NaN/inf padding out of the value but not out of
    the gradient: backward multiplies the zero upstream gradient by a NaN local derivative.
    ``where`` passes an exact 0 to the padded entries instead.
    """
    zero = torch.zeros((), dtype=xs[0].dtype, device=xs[0].device)
    return tuple(torch.where(mask.bool(), x, zero) for x in xs)


def _broadcast(adv: Tensor, logp: Tensor) -> Tensor:
    """Advantages [B] or [B, T] -> [B, T] in ``logp``'s dtype."""
    if adv.dim() == logp.dim() - 1:
        adv = adv.unsqueeze(-1)  # [B, 1]
    return adv.to(logp.dtype).expand_as(logp)


def _drift_metrics(log_ratio: Tensor, mask: Tensor, masked: Tensor | None = None) -> dict[str, Tensor]:
    """Ratio mean, k3 drift from pi_old and (if given) the share of tokens a loss cut off."""
    with torch.no_grad():
        lr = log_ratio.detach().clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
        out = {"policy/ratio_mean": masked_mean(lr.exp(), mask),
               "policy/approx_kl_old": masked_mean(torch.expm1(lr) - lr, mask)}
        if masked is not None:
            out["clip/frac"] = masked_mean(masked.float(), mask)
    return out


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
    advantages = _broadcast(advantages, logp)  # [B, T]
    logp, old_logp, advantages = zero_padding(mask, logp, old_logp, advantages)
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
        metrics = {"clip/low_frac": masked_mean(low.float(), mask), "clip/high_frac": masked_mean(high.float(), mask),
                   **_drift_metrics(log_ratio, mask)}
    return loss, metrics


# ---------------------------------------------------------------------------------------------
# The menu. Constants default to each paper's values.
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PolicyLossParams:
    eps_low: float = 0.2  # clip below (clip, clip-higher, dual-clip, clip-cov); DPPO's drop in probability
    eps_high: float | None = None  # clip above (None: eps_low); DPPO's rise in probability
    ratio_level: str = "token"  # token or sequence ratio for clip, clip-higher, dual-clip
    clip_higher_eps_high: float = 0.28  # DAPO's eps_high, used by clip-higher when eps_high is None
    dual_clip_c: float = 3.0  # Ye et al. 2020: lower bound c > 1 on the loss of A < 0 tokens
    gspo_eps_low: float = 3e-4  # GSPO sec. 5.1
    gspo_eps_high: float = 4e-4
    cispo_eps_high: float = 5.0  # CISPO: cap on the (detached) ratio; no lower bound (MiniMax-M1 sec. 3.1)
    gmpo_eps: float = 0.4  # GMPO: token log-ratios clipped to [-0.4, 0.4] (ratio in (e^-0.4, e^0.4))
    sapo_tau_pos: float = 1.0  # SAPO gate temperatures for A > 0 and A <= 0
    sapo_tau_neg: float = 1.05
    clip_cov_ratio: float = 2e-4  # Clip-Cov: share of tokens whose gradient is detached
    clip_cov_lb: float = 1.0  # ... drawn among tokens with covariance in (lb, ub)
    clip_cov_ub: float = 5.0
    kl_cov_ratio: float = 2e-3  # KL-Cov: share of tokens (largest covariance) given the KL penalty
    kl_cov_coef: float = 1.0
    dppo_ratio_cap: float = 20.0  # DPPO: cap on the detached ratio that weighs the kept tokens
    seed: int = 0  # Clip-Cov's random choice among candidates


def parse_loss_args(specs: list[str] | None, base: PolicyLossParams | None = None) -> PolicyLossParams:
    """``["sapo_tau_neg=1.1", ...]`` -> PolicyLossParams; a bad name or value is one ValueError line.

    >>> parse_loss_args(["dual_clip_c=4"]).dual_clip_c
    4.0
    """
    allowed = sorted({f.name for f in fields(PolicyLossParams)} - {"eps_low", "eps_high", "ratio_level"})
    values = {}
    for spec in specs or []:
        key, sep, raw = spec.partition("=")
        if not sep or key not in allowed:
            raise ValueError(f"policy loss argument {spec!r}: expected NAME=VALUE with NAME one of {allowed}")
        try:
            values[key] = int(raw) if key == "seed" else float(raw)
        except ValueError:
            raise ValueError(f"policy loss argument {spec!r}: {raw!r} is not a number") from None
    return replace(base or PolicyLossParams(), **values)


PolicyLoss = Callable[..., tuple[Tensor, dict[str, Tensor]]]
POLICY_LOSSES: Registry[PolicyLoss] = Registry("policy loss")


@POLICY_LOSSES.register("clip")
def clip_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: PolicyLossParams,
              with_metrics: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate (Schulman et al., arXiv 1707.06347, eq. 7; DeepSeekMath eq. 3)."""
    return clipped_surrogate(logp, old_logp, adv, mask, p.eps_low, p.eps_high, p.ratio_level, with_metrics)


@POLICY_LOSSES.register("clip-higher")
def clip_higher_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: PolicyLossParams,
                     with_metrics: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
    """DAPO's decoupled clip (Yu et al., arXiv 2503.14476, eq. 10): eps_high (0.28) > eps_low (0.2)."""
    eps_high = p.clip_higher_eps_high if p.eps_high is None else p.eps_high
    return clipped_surrogate(logp, old_logp, adv, mask, p.eps_low, eps_high, p.ratio_level, with_metrics)


@POLICY_LOSSES.register("dual-clip")
def dual_clip_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: PolicyLossParams,
                   with_metrics: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
    """Dual-clip PPO (Ye et al., arXiv 1912.09729, eq. 5): for A < 0 the clipped loss is also
    bounded by ``-c A`` (c = 3), so a huge ratio on a bad token cannot blow up the update."""
    loss, metrics = clipped_surrogate(logp, old_logp, adv, mask, p.eps_low, p.eps_high, p.ratio_level, with_metrics)
    a = zero_padding(mask, _broadcast(adv, logp))[0]
    bounded = torch.where(a < 0, torch.minimum(loss, -p.dual_clip_c * a), loss)  # [B, T]
    if with_metrics:
        metrics["clip/dual_frac"] = masked_mean(((a < 0) & (loss > -p.dual_clip_c * a)).float().detach(), mask)
    return bounded, metrics


@POLICY_LOSSES.register("gspo")
def gspo_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: PolicyLossParams,
              with_metrics: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO (Zheng et al., arXiv 2507.18071, eq. 5-7): the clipped surrogate on the length-normalised
    sequence ratio, with the paper's clip range (3e-4, 4e-4)."""
    return clipped_surrogate(logp, old_logp, adv, mask, p.gspo_eps_low, p.gspo_eps_high, "sequence", with_metrics)


@POLICY_LOSSES.register("cispo")
def cispo_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: PolicyLossParams,
               with_metrics: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
    """CISPO (MiniMax-M1, arXiv 2506.13585, eq. 4-5): REINFORCE weighted by the clipped, detached
    ratio, ``-sg(min(r, eps_high_IS)) A log pi``: no token's gradient is dropped, only bounded."""
    a = _broadcast(adv, logp)
    logp, old_logp, a = zero_padding(mask, logp, old_logp, a)
    log_ratio = (logp - old_logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    weight = log_ratio.exp().clamp(max=p.cispo_eps_high).detach()  # [B, T]
    loss = -weight * a * logp
    return loss, (_drift_metrics(log_ratio, mask, log_ratio.exp() > p.cispo_eps_high) if with_metrics else {})


@POLICY_LOSSES.register("gmpo")
def gmpo_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: PolicyLossParams,
              with_metrics: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
    """GMPO (Zhao et al., arXiv 2507.20673, eq. 4): the geometric mean of the token ratios, each
    clipped in log space to [-eps, eps] on the side the advantage's sign pessimises,
    ``-A_i exp(mean_t sgn(A) min(sgn(A) log r_t, sgn(A) clip(log r_t)))``; one loss per sequence,
    put on each of its tokens. A is the sequence's mean advantage."""
    a = _broadcast(adv, logp)
    logp, old_logp, a = zero_padding(mask, logp, old_logp, a)
    log_ratio = (logp - old_logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)  # [B, T]
    seq_adv = masked_mean(a, mask, dim=-1)  # [B]
    sign = torch.sign(seq_adv)[:, None]  # [B, 1]
    clipped = log_ratio.clamp(-p.gmpo_eps, p.gmpo_eps)
    pessimistic = sign * torch.minimum(sign * log_ratio, sign * clipped)  # [B, T]
    seq_ratio = masked_mean(pessimistic, mask, dim=-1).exp()  # [B]
    loss = (-seq_adv * seq_ratio)[:, None].expand_as(logp)  # [B, T]
    return loss, (_drift_metrics(log_ratio, mask, clipped != log_ratio) if with_metrics else {})


@POLICY_LOSSES.register("sapo")
def sapo_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: PolicyLossParams,
              with_metrics: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
    """SAPO (Gao et al., arXiv 2511.20347, eq. 5-6): a soft gate instead of the hard clip,
    ``-f(r) A`` with ``f(r) = sigmoid(tau (r - 1)) 4 / tau``: gradient r A at r = 1, fading smoothly
    as r leaves 1 (tau 1.0 for A > 0, 1.05 for A <= 0)."""
    a = _broadcast(adv, logp)
    logp, old_logp, a = zero_padding(mask, logp, old_logp, a)
    log_ratio = (logp - old_logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    tau = torch.where(a > 0, torch.full_like(a, p.sapo_tau_pos), torch.full_like(a, p.sapo_tau_neg))
    gate = torch.sigmoid(tau * (log_ratio.exp() - 1.0)) * (4.0 / tau)  # [B, T]
    return -gate * a, (_drift_metrics(log_ratio, mask) if with_metrics else {})


def _covariance(logp: Tensor, a: Tensor, mask: Tensor) -> Tensor:
    """Per-token centred product (log pi - mean) (A - mean) over the batch's real tokens [B, T]."""
    lp = logp.detach()
    return (lp - masked_mean(lp, mask)) * (a - masked_mean(a, mask))


@POLICY_LOSSES.register("clip-cov")
def clip_cov_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: PolicyLossParams,
                  with_metrics: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
    """Clip-Cov (Cui et al., arXiv 2505.22617, eq. 11): among the tokens the clip leaves alone whose
    covariance of log-prob and advantage lies in (lb, ub), a random share ``clip_cov_ratio`` of the
    batch's tokens has its gradient removed (entropy collapse is driven by those tokens)."""
    loss, metrics = clipped_surrogate(logp, old_logp, adv, mask, p.eps_low, p.eps_high, "token", with_metrics)
    a = zero_padding(mask, _broadcast(adv, logp))[0]
    lp = zero_padding(mask, logp)[0]
    cov = _covariance(lp, a, mask)  # [B, T]
    ratio = (lp - zero_padding(mask, old_logp)[0]).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO).exp().detach()
    clipped_already = torch.clamp(ratio, 1 - p.eps_low, 1 + (p.eps_high or p.eps_low)) * a < ratio * a  # min() took the clip
    candidates = ((cov > p.clip_cov_lb) & (cov < p.clip_cov_ub) & mask.bool() & ~clipped_already).flatten().nonzero()
    n = max(int(p.clip_cov_ratio * float(mask.sum())), 1)
    gen = torch.Generator().manual_seed(p.seed)
    pick = candidates[torch.randperm(len(candidates), generator=gen)[:n]].flatten().to(loss.device)
    keep = torch.ones(loss.numel(), dtype=loss.dtype, device=loss.device)
    keep[pick] = 0.0
    loss = loss * keep.view_as(loss)  # value and gradient of the picked tokens removed
    if with_metrics:
        metrics["clip/cov_frac"] = masked_mean((keep.view_as(loss) == 0).float(), mask)
    return loss, metrics


@POLICY_LOSSES.register("kl-cov")
def kl_cov_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: PolicyLossParams,
                with_metrics: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
    """KL-Cov (Cui et al., arXiv 2505.22617, eq. 12): the unclipped surrogate ``-r A``, plus
    ``kl_cov_coef |log r|`` on the ``kl_cov_ratio`` share of tokens with the largest covariance."""
    a = _broadcast(adv, logp)
    logp, old_logp, a = zero_padding(mask, logp, old_logp, a)
    log_ratio = (logp - old_logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    cov = torch.where(mask.bool(), _covariance(logp, a, mask), torch.full_like(a, -float("inf"))).flatten()
    n = max(int(p.kl_cov_ratio * float(mask.sum())), 1) if bool(mask.any()) else 0
    penalised = torch.zeros_like(cov)
    penalised[cov.topk(n).indices] = 1.0
    penalised = penalised.view_as(a)  # [B, T]
    loss = -log_ratio.exp() * a + p.kl_cov_coef * penalised * log_ratio.abs()
    return loss, (_drift_metrics(log_ratio, mask, penalised.bool()) if with_metrics else {})


def _dppo(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: PolicyLossParams, with_metrics: bool,
          valid_fn: Callable[[Tensor, Tensor, Tensor], Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    a = _broadcast(adv, logp)
    logp, old_logp, a = zero_padding(mask, logp, old_logp, a)
    log_ratio = (logp - old_logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    valid = valid_fn(logp.detach().exp(), old_logp.detach().exp(), a).to(logp.dtype)  # [B, T]
    weight = log_ratio.exp().clamp(max=p.dppo_ratio_cap).detach()
    loss = -a * weight * logp * valid
    return loss, (_drift_metrics(log_ratio, mask, valid == 0) if with_metrics else {})


@POLICY_LOSSES.register("dppo-tv")
def dppo_tv_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: PolicyLossParams,
                 with_metrics: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
    """DPPO-Binary-TV (Qi et al., arXiv 2602.04879): the trust region on the probability itself, not
    the ratio: a token's gradient is masked once pi moved past pi_old + eps_high (A > 0) or below
    pi_old - eps_low (A <= 0); kept tokens are weighted by the detached ratio, capped at 20."""
    hi = p.eps_low if p.eps_high is None else p.eps_high
    return _dppo(logp, old_logp, adv, mask, p, with_metrics,
                 lambda pr, old, a: torch.where(a > 0, pr - old <= hi, pr - old >= -p.eps_low))


@POLICY_LOSSES.register("dppo-kl")
def dppo_kl_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: PolicyLossParams,
                 with_metrics: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
    """DPPO-Binary-KL (arXiv 2602.04879): as dppo-tv with the binary KL
    ``q log(q/p) + (1-q) log((1-q)/(1-p))`` (q = pi_old) as the divergence, masked past eps_high
    (A > 0, pi rising) or eps_low (A <= 0, pi falling)."""
    hi = p.eps_low if p.eps_high is None else p.eps_high

    def valid(pr: Tensor, old: Tensor, a: Tensor) -> Tensor:
        kl = old * (old.clamp(min=1e-12).log() - pr.clamp(min=1e-12).log()) \
            + (1 - old) * ((1 - old + 1e-8).log() - (1 - pr + 1e-8).log())
        return torch.where(a > 0, (kl <= hi) | (pr <= old), (kl <= p.eps_low) | (pr >= old))

    return _dppo(logp, old_logp, adv, mask, p, with_metrics, valid)
