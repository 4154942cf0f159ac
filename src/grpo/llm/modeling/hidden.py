"""Last hidden states [N, C, H] before each completion token, so that the LM head can be applied to
a few tokens at a time (:mod:`grpo.llm.modeling.logprobs`) instead of to the whole batch at once.

Two sources share one routine (:func:`completion_hidden`): a bare base transformer (the value
model's backbone) and a causal LM run through its wrappers (DDP, peft, the adapters-off reference),
whose backbone's output is caught by a forward hook while the LM itself computes no logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from grpo.llm.modeling.hf import accepts_logits_to_keep, cache_kwargs, cache_of, inner_model, position_ids_of

def backbone_of(policy: Any) -> nn.Module:
    """The policy's base transformer (``LlamaModel`` inside ``LlamaForCausalLM``)."""
    base = policy.base_model
    if base is policy:
        raise ValueError(f"{type(policy).__name__} exposes no base model; PPO needs one for its value model")
    return base


class BackboneForward:
    """A base transformer: (input_ids, attention_mask, position_ids, use_cache, cache) -> (hidden [n, L, H], cache)."""

    def __init__(self, backbone: Any):
        self.model = backbone

    def __call__(self, **kw: Any) -> tuple[Tensor, Any]:
        out = self.model(**kw)
        return out.last_hidden_state, cache_of(out)


_NO_POSITIONS = torch.zeros(0, dtype=torch.long)  # logits_to_keep: no position gets logits


class LMForward(BackboneForward):
    """A causal LM called through its wrappers with no logits (``logits_to_keep`` = no positions);
    its backbone's last hidden states are caught by a forward hook."""

    def __init__(self, model: Any):
        super().__init__(model)
        self.body = backbone_of(inner_model(model))

    def __call__(self, **kw: Any) -> tuple[Tensor, Any]:
        caught: list[Tensor] = []
        hook = self.body.register_forward_hook(lambda _m, _a, out: caught.append(out.last_hidden_state))
        try:
            out = self.model(**kw, logits_to_keep=_NO_POSITIONS.to(kw["input_ids"].device))
        finally:
            hook.remove()
        return caught[-1], cache_of(out)


def lm_head_of(model: Any) -> nn.Module | None:
    """The LM head to apply to :class:`LMForward`'s hidden states, or None when logits are not
    ``head(hidden)`` there: no ``logits_to_keep``, logit soft-capping or scaling, a peft-wrapped
    head (the adapters-off reference would use it with adapters on), or sharded weights (FSDP2's
    DTensor, DeepSpeed ZeRO-3), which are gathered only inside the model's own forward."""
    inner = inner_model(model)
    try:
        head, body = inner.get_output_embeddings(), backbone_of(inner)
    except (AttributeError, NotImplementedError, ValueError):
        return None
    text = inner.config.get_text_config() if hasattr(inner.config, "get_text_config") else inner.config
    weight = getattr(head, "weight", None)
    if (head is None or body is None or not accepts_logits_to_keep(model) or not isinstance(head, nn.Linear)
            or getattr(text, "final_logit_softcapping", None) or getattr(text, "logit_scale", None)
            or not isinstance(weight, nn.Parameter) or type(weight.data) is not torch.Tensor
            or hasattr(weight, "ds_id")):
        return None
    return head


def completion_hidden(forward: BackboneForward, prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor,
                      completion_mask: Tensor, group_size: int = 1, share: bool = False) -> Tensor:
    """Last hidden states [N, C, H] at positions P - 1 .. P + C - 2 (the states before each completion
    token), on left-padded prompts [N, P] and right-padded completions [N, C].

    With ``share`` (rows in groups of ``group_size`` identical prompts), each prompt is encoded once
    ([B, P] instead of [N, P]) and its KV cache repeated for the group; gradients flow through the
    repeated cache into the prompt's computation, so the result equals the plain forward pass.
    """
    P, C = prompt_ids.shape[1], completion_ids.shape[1]
    mask = torch.cat([prompt_mask, completion_mask], 1)  # [N, P + C]
    if not share:
        hidden, _ = forward(input_ids=torch.cat([prompt_ids, completion_ids], 1), attention_mask=mask,
                            position_ids=position_ids_of(mask), use_cache=False)
        return hidden[:, P - 1:P + C - 1]  # [N, C, H]
    G = group_size
    uniq_mask = prompt_mask[::G]  # [B, P]
    hidden, cache = forward(input_ids=prompt_ids[::G], attention_mask=uniq_mask,
                            position_ids=position_ids_of(uniq_mask), use_cache=True)
    first = hidden[:, -1:].repeat_interleave(G, 0)  # [N, 1, H]: state before token 0
    if C == 1:
        return first
    cache.batch_repeat_interleave(G)
    rest, _ = forward(input_ids=completion_ids[:, :-1], attention_mask=mask[:, :-1],
                      position_ids=position_ids_of(mask)[:, P:-1], use_cache=True,
                      **cache_kwargs(forward.model, cache))  # [N, C - 1, H]
    return torch.cat([first, rest], 1)


# Activations kept for the backward per micro-batch, in tokens x layers x hidden units: at the ~20
# float32 values a Llama-style layer keeps per hidden unit, about 1.3 GiB.
ACTIVATION_UNITS = 2 ** 24


def auto_micro_batch(model: Any, n: int, tokens: int, group_size: int = 1) -> int:
    """Rows per forward/backward when ``micro_batch`` is unset: rows of ``tokens`` (prompt + completion)
    tokens holding about :data:`ACTIVATION_UNITS`, in whole groups of ``group_size`` (which share their
    prompt's encoding), at least one group and at most all ``n`` rows.

    >>> from types import SimpleNamespace as NS
    >>> smol = NS(config=NS(num_hidden_layers=30, hidden_size=576))
    >>> auto_micro_batch(smol, n=32, tokens=108, group_size=4), auto_micro_batch(smol, n=32, tokens=2000, group_size=4)
    (8, 4)
    >>> auto_micro_batch(NS(config=NS(num_hidden_layers=2, hidden_size=64)), n=256, tokens=9, group_size=8)
    256
    """
    config = inner_model(model).config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    per_row = max(1, tokens * int(getattr(text, "num_hidden_layers", 1)) * int(getattr(text, "hidden_size", 1)))
    rows = ACTIVATION_UNITS // per_row
    if rows >= n:
        return n
    G = max(1, group_size)
    return max(G, rows // G * G)


def row_widths(mask: Tensor) -> Tensor:
    """Columns [N] up to and including each row's last real token of ``mask`` [N, C] (0 for an empty row).

    >>> row_widths(torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])).tolist()
    [2, 3, 0]
    """
    return (mask.bool() * torch.arange(1, mask.shape[1] + 1, device=mask.device)).amax(1)


def length_order(mask: Tensor, group_size: int = 1) -> Tensor:
    """Row order [N] that keeps groups of ``group_size`` rows whole and puts them by their widest row of
    ``mask`` [N, C] (:func:`row_widths`), shortest first (ties in their order), so that consecutive
    micro-batches hold similar lengths.

    >>> length_order(torch.tensor([[1, 1, 1], [1, 0, 0], [1, 0, 0], [1, 1, 0]]), group_size=2).tolist()
    [2, 3, 0, 1]
    """
    N, G = mask.shape[0], max(1, group_size)
    groups = torch.argsort(row_widths(mask).view(-1, G).amax(1), stable=True)  # [N / G]
    return (groups[:, None] * G + torch.arange(G, device=mask.device)).reshape(N)
