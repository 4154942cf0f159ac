"""Per-token log-probabilities of completions under a causal LM, from one forward pass."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from grpo.core import categorical_entropy


def selective_log_softmax(logits: Tensor, ids: Tensor) -> Tensor:
    """``log_softmax(logits)[..., ids]`` without materialising the full log-softmax. [N, T, V] -> [N, T]."""
    logits = logits.float()
    picked = logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1)  # [N, T]
    return picked - torch.logsumexp(logits, dim=-1)


def position_ids_of(attention_mask: Tensor) -> Tensor:
    """Positions that skip left padding, as ``generate`` computes them. [N, L] -> [N, L]."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _accepts_logits_to_keep(model: Any) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def completion_logprobs(
    model: Any,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
    entropy_grad: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Log-probs [N, C] of each completion token given the prompt and earlier completion tokens.

    Logits are divided by ``temperature`` so that these are the log-probs of the distribution the
    tokens were sampled from (as in TRL); the old, new and reference log-probs all use the same
    temperature, so ratios and KL compare like with like. Also returns the entropy [N, C] of that
    distribution when ``with_entropy``; it carries a gradient only with ``entropy_grad`` (the
    entropy bonus), otherwise it is only logged.
    """
    ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [N, P + C]
    mask = torch.cat([prompt_mask, completion_mask], dim=1)  # [N, P + C]
    C = completion_ids.shape[1]
    kwargs = {"logits_to_keep": C + 1} if _accepts_logits_to_keep(model) else {}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_of(mask),
                   use_cache=False, **kwargs).logits  # [N, L', V]
    logits = logits[:, -(C + 1):-1] / temperature  # [N, C, V]: position t predicts completion token t
    logp = selective_log_softmax(logits, completion_ids)  # [N, C]
    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            entropy = categorical_entropy(logits)  # [N, C]
    return logp, entropy
