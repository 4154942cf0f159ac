"""Per-token log-probabilities (and entropy) of completions under a causal LM: one forward pass of the
model body, then the LM head a chunk of tokens at a time."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from grpo.core import categorical_entropy, categorical_kl
from grpo.llm.modeling.activation_checkpointing import recomputes
from grpo.llm.modeling.hf import accepts_logits_to_keep, position_ids_of, shares_prompts
from grpo.llm.modeling.hidden import LMForward, completion_hidden, lm_head_of


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


# Tokens per chunk of the LM head: their float32 logits [chunk, V] stay near 2**24 elements (64 MiB).
CHUNK_ELEMENTS = 2 ** 24


class TokenStats(NamedTuple):
    """Per-token statistics of completions under a model, each [N, C]."""

    logp: Tensor  # log-prob of each sampled token (under the sampler's filter, if any)
    entropy: Tensor | None  # entropy of the distribution it was drawn from, when asked
    kl: Tensor | None  # exact KL(pi || pi_ref) of the whole next-token distributions, when a reference is given


def _token_stats(head: Any, hidden: Tensor, ids: Tensor, temperature: float, with_entropy: bool,
                 entropy_grad: bool, top_k: int, top_p: float, ref_head: Any = None,
                 ref_hidden: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Log-prob, entropy and exact KL to ``ref_head(ref_hidden)`` [n] of tokens ``ids`` [n] from hidden
    states [n, H] (entropy and KL 0 when not asked). The KL compares the temperature-scaled distributions
    before any top-k/top-p filter (each model's filter keeps its own set, which would make it infinite)."""
    raw = head(hidden).float() / temperature  # [n, V]
    logits = sampler_logits(raw, ids, top_k, top_p)  # [n, V]
    logp = selective_log_softmax(logits, ids)  # [n]
    ent = kl = torch.zeros_like(logp)
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            ent = categorical_entropy(logits)  # [n]
    if ref_head is not None:
        with torch.no_grad():
            ref_logits = ref_head(ref_hidden).float() / temperature  # [n, V]
        kl = categorical_kl(raw, ref_logits)  # [n]
    return logp, ent, kl


def head_logprobs(head: Any, hidden: Tensor, ids: Tensor, temperature: float = 1.0, with_entropy: bool = False,
                  entropy_grad: bool = False, top_k: int = 0, top_p: float = 1.0, chunk: int | None = None,
                  ref: tuple[Any, Tensor] | None = None) -> TokenStats:
    """Log-probs (and entropy) [N, C] of tokens ``ids`` [N, C] under ``head(hidden)`` for hidden states
    [N, C, H], computed ``chunk`` tokens at a time (default: about :data:`CHUNK_ELEMENTS` logits). With
    ``ref`` = (reference head, its hidden states [N, C, H']), also the exact KL [N, C] to the reference.

    The float32 logits, log-softmax and entropy of the whole batch [N, C, V] never exist at once.
    With gradients, each chunk is an activation checkpoint: the forward keeps only its hidden
    states, and the backward recomputes that chunk's logits (the reference's too), so it holds one
    chunk's at a time too.
    """
    N, C, H = hidden.shape
    V = head.weight.shape[0] if hasattr(head, "weight") else head(hidden[:1, :1]).shape[-1]
    chunk = chunk or max(1, CHUNK_ELEMENTS // V)
    flat, flat_ids = hidden.reshape(N * C, H), ids.reshape(N * C)  # [N C, H], [N C]
    ref_head, ref_flat = (None, None) if ref is None else (ref[0], ref[1].reshape(N * C, -1))  # [N C, H']
    args = (temperature, with_entropy, entropy_grad, top_k, top_p)
    params = head.parameters() if isinstance(head, torch.nn.Module) else ()
    recompute = torch.is_grad_enabled() and (hidden.requires_grad or any(p.requires_grad for p in params))
    parts = []
    for i in range(0, N * C, chunk):
        h, t = flat[i:i + chunk], flat_ids[i:i + chunk]
        r = None if ref_flat is None else ref_flat[i:i + chunk]
        if recompute and N * C > chunk:
            parts.append(checkpoint(_token_stats, head, h, t, *args, ref_head, r, use_reentrant=False))
        else:
            parts.append(_token_stats(head, h, t, *args, ref_head, r))
    logp, ent, kl = (torch.cat([p[k] for p in parts]).view(N, C) for k in range(3))
    return TokenStats(logp, ent if with_entropy else None, kl if ref is not None else None)


def _logit_source(model: Any, prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor,
                  completion_mask: Tensor, group_size: int) -> tuple[Any, Tensor]:
    """(head, hidden) whose ``head(hidden)`` are the logits [N, C, V] before each completion token: the LM
    head and the body's hidden states [N, C, H], or, for a model whose logits are not ``lm_head(hidden)``
    (:func:`lm_head_of`), the identity and the logits of its own forward pass."""
    C = completion_ids.shape[1]
    head = lm_head_of(model)
    if head is not None:
        # Gradient checkpointing drops the KV cache inside the layers: then one plain pass per sequence.
        share = shares_prompts(prompt_ids, prompt_mask, group_size) and not recomputes(model)
        return head, completion_hidden(LMForward(model), prompt_ids, prompt_mask, completion_ids, completion_mask,
                                       group_size, share)  # [N, C, H]
    ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [N, P + C]
    mask = torch.cat([prompt_mask, completion_mask], dim=1)  # [N, P + C]
    kwargs = {"logits_to_keep": C + 1} if accepts_logits_to_keep(model) else {}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_of(mask),
                   use_cache=False, **kwargs).logits  # [N, L', V]
    return _identity, logits[:, -(C + 1):-1]  # [N, C, V]: position t predicts completion token t


def _identity(x: Tensor) -> Tensor:
    return x


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
    chunk: int | None = None,
    kl_to: Any | None = None,
) -> TokenStats:
    """Log-probs [N, C] of each completion token given the prompt and earlier completion tokens.

    Logits are divided by ``temperature`` so that these are the log-probs of the distribution the
    tokens were sampled from (as in TRL); the old, new and reference log-probs all use the same
    temperature, so ratios and KL compare like with like. With ``top_k``/``top_p`` they are those
    of the filtered, renormalised distribution (:func:`sampler_logits`); TRL and verl leave the
    filter out (``top_k=0, top_p=1`` here). Also returns the entropy [N, C] of that
    distribution when ``with_entropy``; it carries a gradient only with ``entropy_grad`` (the
    entropy bonus), otherwise it is only logged. With ``group_size`` G > 1 and rows in groups of
    G identical prompts, each prompt is encoded once and its KV cache shared by the group. With a
    reference model ``kl_to``, also the exact per-token KL(pi || pi_ref) [N, C] (``kl_estimator="full"``),
    the reference run without gradients.

    The model body gives hidden states [N, C, H]; the LM head is applied ``chunk`` tokens at a time
    (:func:`head_logprobs`). A model whose logits are not ``lm_head(hidden)`` (:func:`lm_head_of`)
    gets the logits of the whole batch from its own forward pass instead.
    """
    inputs = (prompt_ids, prompt_mask, completion_ids, completion_mask, group_size)
    head, hidden = _logit_source(model, *inputs)
    ref = None
    if kl_to is not None:
        with torch.no_grad():
            ref = _logit_source(kl_to, *inputs)
    return head_logprobs(head, hidden, completion_ids, temperature, with_entropy, entropy_grad, top_k, top_p, chunk,
                         ref)
