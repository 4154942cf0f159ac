"""Hugging Face plumbing shared by sampling, log-probs and the value model: the model inside
wrappers, the KV-cache argument's name, positions that skip left padding, group-shared prompts."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from torch import Tensor


def position_ids_of(attention_mask: Tensor) -> Tensor:
    """Positions that skip left padding, as ``generate`` computes them. [N, L] -> [N, L]."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


@functools.lru_cache(maxsize=None)
def _forward_params(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls.forward).parameters)


def inner_model(model: Any) -> Any:
    """The Hugging Face model inside DDP/FSDP/DeepSpeed wrappers and peft models, whose forward
    signature says which arguments it takes (wrappers take ``**kwargs`` and pass them on)."""
    while True:
        if hasattr(model, "get_base_model"):  # peft (and the adapters-off reference)
            model = model.get_base_model()
        elif isinstance(getattr(model, "module", None), torch.nn.Module):  # DDP, FSDP1, DeepSpeed engine
            model = model.module
        else:
            return model


def accepts_logits_to_keep(model: Any) -> bool:
    return "logits_to_keep" in _forward_params(type(inner_model(model)))


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """The KV-cache argument under its name: ``cache`` (transformers >= 5.2x) or ``past_key_values``."""
    return {"cache" if "cache" in _forward_params(type(inner_model(model))) else "past_key_values": cache}


def cache_of(out: Any) -> Any:
    """The KV cache a forward pass returned, under either name."""
    cache = out.get("cache")
    return cache if cache is not None else out.get("past_key_values")


def shares_prompts(prompt_ids: Tensor, prompt_mask: Tensor, group_size: int) -> bool:
    """True when rows come in groups of ``group_size`` identical prompts (prompt-major)."""
    N = prompt_ids.shape[0]
    if group_size < 2 or N % group_size or prompt_ids.shape[1] == 0:
        return False
    return bool(torch.equal(prompt_ids, prompt_ids[::group_size].repeat_interleave(group_size, 0))
                and torch.equal(prompt_mask, prompt_mask[::group_size].repeat_interleave(group_size, 0)))
