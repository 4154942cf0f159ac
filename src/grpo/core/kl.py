"""KL estimators and policy entropies.

KL estimators follow Schulman's note "Approximating KL Divergence" (2020): with samples drawn
from the policy and ``log_r = log pi_ref(a) - log pi_theta(a)``,

- k1 = -log_r                      unbiased, can be negative
- k2 = log_r ** 2 / 2              biased, low variance, always >= 0
- k3 = exp(log_r) - log_r - 1      unbiased and always >= 0: the one GRPO uses (DeepSeekMath eq. 4)

All take per-sample (or per-token) log-probs [...] and return per-sample estimates [...].
Note: in GRPO the samples come from pi_old, not pi_theta, once the policy has taken a step
(mu > 1 iterations, or several epochs in classic control); k3 is then no longer exactly
unbiased. We keep the paper's estimator and say so, as TRL and verl do.

``full`` (:data:`EXACT_KL`, :func:`categorical_kl`) is not an estimator: the KL between the two whole
next-token distributions at each position, sum_v pi(v) log(pi(v) / pi_ref(v)). It needs both models'
logits, not two log-probs, so it is not in the registry; the trainers compute it where the logits are.
It has no sampling noise and stays exact whatever policy drew the tokens (mu > 1 included).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grpo.core.registry import Registry

KL_ESTIMATORS: Registry = Registry("KL estimator")

# exp() of a log-ratio above this overflows float32 gradients; clamping keeps a broken batch finite.
MAX_LOG_RATIO = 20.0  # exp(20) ~ 5e8: past this a ratio is garbage anyway; keep it finite.


@KL_ESTIMATORS.register("k1")
def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    return logp - ref_logp


@KL_ESTIMATORS.register("k2")
def kl_k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    return 0.5 * (ref_logp - logp) ** 2


@KL_ESTIMATORS.register("k3")
def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    log_r = (ref_logp - logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    # expm1: exp(x) - x - 1 cancels catastrophically near x = 0 and rounds below 0 there.
    return torch.expm1(log_r) - log_r


EXACT_KL = "full"  # the name that picks categorical_kl instead of a per-sample estimator
KL_NAMES: tuple[str, ...] = (*KL_ESTIMATORS.names(), EXACT_KL)  # every name a kl_estimator option takes


def categorical_kl(logits: Tensor, ref_logits: Tensor) -> Tensor:
    """Exact KL(Categorical(logits) || Categorical(ref_logits)) over the last dim. [..., V] -> [...].

    Classes the policy gives probability 0 (-inf logits) add 0; a class the reference excludes and the
    policy does not gives +inf, as the KL is.

    >>> round(float(categorical_kl(torch.tensor([0.0, 0.0]), torch.log(torch.tensor([0.9, 0.1])))), 4)
    0.5108
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    ref = torch.log_softmax(ref_logits.float(), dim=-1)
    terms = logp.exp() * (logp - ref)  # [..., V]
    return terms.masked_fill(torch.isneginf(logp), 0.0).sum(-1)


def gaussian_kl(mean: Tensor, log_std: Tensor, ref_mean: Tensor, ref_log_std: Tensor) -> Tensor:
    """Exact KL(N(mean, std) || N(ref_mean, ref_std)) of diagonal Gaussians, summed over D. [..., D] -> [...]."""
    var_ratio = torch.exp(2 * (log_std - ref_log_std))
    t = ((mean - ref_mean) * torch.exp(-ref_log_std)) ** 2
    return (0.5 * (var_ratio + t - 1) - (log_std - ref_log_std)).sum(-1)


def kl_estimate(logp: Tensor, ref_logp: Tensor, estimator: str = "k3") -> Tensor:
    """Per-sample KL(pi_theta || pi_ref) estimate by name (``k1``, ``k2``, ``k3``)."""
    return KL_ESTIMATORS.get(estimator)(logp, ref_logp)


def categorical_entropy(logits: Tensor) -> Tensor:
    """Entropy of Categorical(logits); -inf logits (filtered out) count 0, not NaN. [..., A] -> [...]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp.masked_fill(torch.isneginf(logp), 0.0)).sum(-1)


def gaussian_entropy(log_std: Tensor) -> Tensor:
    """Entropy of a diagonal Gaussian with ``log_std`` [..., D], summed over D. -> [...]."""
    return (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)


def gaussian_log_prob(actions: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Log-density of a diagonal Gaussian, summed over the action dims. [..., D] -> [...]."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
