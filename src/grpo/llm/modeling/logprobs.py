"""Per-token log-probabilities of completions under a causal LM, from one forward pass."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from grpo.core import categorical_entropy
from grpo.llm.modeling.activation_checkpointing import recomputes
from grpo.llm.modeling.hf import accepts_logits_to_keep, cache_kwargs, cache_of, position_ids_of, shares_prompts


def selective_log_softmax(logits: Tensor, ids: Tensor) -> Tensor:
    """``log_softmax(logits)[..., ids]`` without materialising the full log-softmax. [N, T, V] -> [N, T]."""
    logits = logits.float()
    picked = logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1)  # [N, T]
    return picked - torch.logsumexp(logits, dim=-1)


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Top-k then nucleus (top-p) filtering: excluded tokens get -inf. [N, V] -> [N, V].

    >>> filter_logits(torch.tensor([[1.0, 3.0, 2.0]]), top_k=2).tolist()
    [[-inf, 3.0, 2.0]]
    """
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # [N, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix whose mass reaches top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def sampler_logits(logits: Tensor, ids: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Logits of the top-k/top-p filtered distribution the tokens ``ids`` were drawn from. [N, C, V] -> [N, C, V].

    Tokens the filter drops get -inf, so that a softmax renormalises over the kept ones. The kept set
    is each model's own (policy, old or reference), chosen without gradient; the token ``ids`` [N, C]
    is always kept, so its log-prob is finite even when float noise between the sampling pass and
    this one moves it just past the top-p boundary, or when the reference would not have kept it.

    >>> sampler_logits(torch.tensor([[[1.0, 3.0, 2.0]]]), torch.tensor([[0]]), top_k=1).tolist()
    [[[1.0, 3.0, -inf]]]
    """
    if not top_k and top_p >= 1.0:
        return logits
    V = logits.shape[-1]
    kept = torch.isfinite(filter_logits(logits.detach().reshape(-1, V), top_k, top_p)).view(logits.shape)
    kept = kept.scatter(-1, ids.unsqueeze(-1), True)  # [N, C, V]
    return logits.masked_fill(~kept, float("-inf"))


def logprob_filter(cfg: Any) -> dict[str, Any]:
    """The top-k/top-p filter the log-probs apply (keywords of :func:`sampler_logits`): the sampler's
    when ``cfg.filtered_logprobs``, else none (the full temperature-scaled distribution, as TRL and verl)."""
    return {"top_k": cfg.top_k, "top_p": cfg.top_p} if cfg.filtered_logprobs else {}


def _shared_prompt_logits(model: Any, prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor,
                          completion_mask: Tensor, group_size: int) -> Tensor:
    """Logits [N, C, V] predicting each completion token, running each prompt once per group.

    The G rows of a group share their prompt: it is encoded once ([B, P] instead of [N, P]), its
    KV cache is repeated G times, and only the completions run per row. Gradients flow through
    the repeated cache into the prompt's computation, so the result equals the plain forward pass.
    """
    G, P = group_size, prompt_ids.shape[1]
    uniq_ids, uniq_mask = prompt_ids[::G], prompt_mask[::G]  # [B, P]
    out = model(input_ids=uniq_ids, attention_mask=uniq_mask, position_ids=position_ids_of(uniq_mask),
                use_cache=True, logits_to_keep=1)
    cache = cache_of(out)
    cache.batch_repeat_interleave(G)
    first = out.logits[:, -1:].repeat_interleave(G, 0)  # [N, 1, V] predicts completion token 0
    if completion_ids.shape[1] == 1:
        return first
    mask = torch.cat([prompt_mask, completion_mask], dim=1)  # [N, P + C]
    rest = model(input_ids=completion_ids[:, :-1], attention_mask=mask[:, :-1],
                 position_ids=position_ids_of(mask)[:, P:-1], use_cache=True, **cache_kwargs(model, cache)).logits
    return torch.cat([first, rest], dim=1)  # [N, C, V]


def completion_logprobs(
    model: Any,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    completion_ids: Tensor,
    completion_mask: Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
    entropy_grad: bool = False,
    group_size: int = 1,
    top_k: int = 0,
    top_p: float = 1.0,
) -> tuple[Tensor, Tensor | None]:
    """Log-probs [N, C] of each completion token given the prompt and earlier completion tokens.

    Logits are divided by ``temperature`` so that these are the log-probs of the distribution the
    tokens were sampled from (as in TRL); the old, new and reference log-probs all use the same
    temperature, so ratios and KL compare like with like. With ``top_k``/``top_p`` they are those
    of the filtered, renormalised distribution (:func:`sampler_logits`); TRL and verl leave the
    filter out (``top_k=0, top_p=1`` here). Also returns the entropy [N, C] of that
    distribution when ``with_entropy``; it carries a gradient only with ``entropy_grad`` (the
    entropy bonus), otherwise it is only logged. With ``group_size`` G > 1 and rows in groups of
    G identical prompts, each prompt is encoded once and its KV cache shared by the group.
    """
    C = completion_ids.shape[1]
    # Gradient checkpointing drops the KV cache inside the layers: then one plain pass per sequence.
    if shares_prompts(prompt_ids, prompt_mask, group_size) and accepts_logits_to_keep(model) and not recomputes(model):
        logits = _shared_prompt_logits(model, prompt_ids, prompt_mask, completion_ids, completion_mask, group_size)
    else:
        ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [N, P + C]
        mask = torch.cat([prompt_mask, completion_mask], dim=1)  # [N, P + C]
        kwargs = {"logits_to_keep": C + 1} if accepts_logits_to_keep(model) else {}
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_of(mask),
                       use_cache=False, **kwargs).logits  # [N, L', V]
        logits = logits[:, -(C + 1):-1]  # [N, C, V]: position t predicts completion token t
    logits = sampler_logits(logits / temperature, completion_ids, top_k, top_p)
    logp = selective_log_softmax(logits, completion_ids)  # [N, C]
    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            entropy = categorical_entropy(logits)  # [N, C]
    return logp, entropy
