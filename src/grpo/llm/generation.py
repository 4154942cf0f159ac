"""Batched sampling of G completions per prompt with the KV cache, and their masks.

Shapes: N = B * G sequences (prompt-major: the G samples of prompt b are rows b*G .. b*G+G-1),
P prompt tokens (left-padded), C completion tokens (right-padded after EOS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class Rollout:
    """Prompts and their sampled completions, as token ids and masks."""

    prompt_ids: Tensor  # [N, P] left-padded
    prompt_mask: Tensor  # [N, P] 1 on real prompt tokens
    completion_ids: Tensor  # [N, C]
    completion_mask: Tensor  # [N, C] 1 up to and including the first EOS
    truncated: Tensor  # [N] bool: no EOS within max_new_tokens
    completions: list[str]  # [N] decoded, special tokens removed

    @property
    def lengths(self) -> Tensor:  # [N]
        return self.completion_mask.sum(-1)

    def select(self, rows: Tensor) -> "Rollout":
        idx = rows.tolist()
        return Rollout(self.prompt_ids[rows], self.prompt_mask[rows], self.completion_ids[rows],
                       self.completion_mask[rows], self.truncated[rows], [self.completions[i] for i in idx])

    @staticmethod
    def cat(parts: list["Rollout"], pad_id: int) -> "Rollout":
        """Concatenate rollouts of different widths: prompts re-padded left, completions right."""
        P = max(r.prompt_ids.shape[1] for r in parts)
        C = max(r.completion_ids.shape[1] for r in parts)

        def left(x: Tensor, width: int, value: int) -> Tensor:
            return torch.nn.functional.pad(x, (width - x.shape[1], 0), value=value)

        def right(x: Tensor, width: int, value: int) -> Tensor:
            return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)

        return Rollout(
            torch.cat([left(r.prompt_ids, P, pad_id) for r in parts]),
            torch.cat([left(r.prompt_mask, P, 0) for r in parts]),
            torch.cat([right(r.completion_ids, C, pad_id) for r in parts]),
            torch.cat([right(r.completion_mask, C, 0) for r in parts]),
            torch.cat([r.truncated for r in parts]),
            [c for r in parts for c in r.completions],
        )


def completion_mask(completion_ids: Tensor, eos_ids: list[int]) -> tuple[Tensor, Tensor]:
    """Mask [N, C] that keeps tokens up to and including the first EOS; truncated [N] (no EOS).

    >>> ids = torch.tensor([[5, 1, 0, 0], [5, 6, 7, 8]])  # EOS = 1, pad = 0
    >>> completion_mask(ids, [1])
    (tensor([[1, 1, 0, 0],
            [1, 1, 1, 1]]), tensor([False,  True]))
    """
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))  # [N, C]
    eos_before = is_eos.long().cumsum(-1) - is_eos.long()  # EOS strictly before t
    return (eos_before == 0).long(), ~is_eos.any(-1)


def eos_ids_of(tokenizer: Any, model: Any) -> list[int]:
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = ids if isinstance(ids, list) else [ids] if ids is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def encode_prompts(tokenizer: Any, texts: list[str], device: torch.device, max_context: int | None,
                   max_new_tokens: int) -> tuple[Tensor, Tensor]:
    """Left-padded prompt ids and mask [B, P]; ValueError when a prompt leaves no room to answer."""
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = enc.input_ids.to(device), enc.attention_mask.to(device)
    longest = int(mask.sum(-1).max())
    if max_context is not None and longest + max_new_tokens > max_context:
        raise ValueError(f"a prompt of {longest} tokens plus max_new_tokens={max_new_tokens} exceeds the "
                         f"model's context of {max_context} tokens; shorten prompts or lower max_new_tokens")
    return ids, mask


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    group_size: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    greedy: bool = False,
) -> Rollout:
    """Sample ``group_size`` completions for each of B prompts ([B, P]) in one batched ``generate``.

    Every sampling option is passed explicitly (the model's own generation_config, e.g. a default
    top_k=50, is not used), so what is sampled is what the config says.
    """
    from transformers import GenerationConfig

    eos = eos_ids_of(tokenizer, model)
    gen_cfg = GenerationConfig(
        do_sample=not greedy, temperature=temperature if not greedy else None,
        top_p=top_p if not greedy else None, top_k=(top_k or None) if not greedy else None,
        max_new_tokens=max_new_tokens, num_return_sequences=group_size,
        eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, use_cache=True,
    )
    was_training = model.training
    model.eval()
    out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=gen_cfg)
    model.train(was_training)
    P = prompt_ids.shape[1]
    completion_ids = out[:, P:]  # [N, C]
    mask, truncated = completion_mask(completion_ids, eos)
    texts = tokenizer.batch_decode(completion_ids.masked_fill(mask == 0, tokenizer.pad_token_id),
                                   skip_special_tokens=True)
    return Rollout(
        prompt_ids.repeat_interleave(group_size, 0), prompt_mask.repeat_interleave(group_size, 0),
        completion_ids, mask, truncated, texts,
    )
