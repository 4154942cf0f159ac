"""Batched sampling of G completions per prompt with the KV cache, and their masks.

Shapes: N = B * G sequences (prompt-major: the G samples of prompt b are rows b*G .. b*G+G-1),
P prompt tokens (left-padded), C completion tokens (right-padded after EOS).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor

from grpo.core import Registry
from grpo.llm.modeling.hf import cache_kwargs, cache_of, inner_model, position_ids_of
from grpo.llm.modeling.logprobs import filter_logits
from grpo.llm.modeling.models import encode_texts
from grpo.llm.rollout.seeding import sample_from, sample_keys, uniforms

# Generation engines, chosen by name; all share the signature of :func:`generate_cached`.
GENERATORS: Registry = Registry("generation engine")


@dataclass
class Rollout:
    """Prompts and their sampled completions, as token ids and masks."""

    prompt_ids: Tensor  # [N, P] left-padded
    prompt_mask: Tensor  # [N, P] 1 on real prompt tokens
    completion_ids: Tensor  # [N, C]
    completion_mask: Tensor  # [N, C] 1 up to and including the first EOS
    truncated: Tensor  # [N] bool: no EOS within max_new_tokens
    completions: list[str]  # [N] decoded, special tokens removed
    # [N, C] the engine's log-prob of each sampled token (its sampling distribution); NaN where unknown;
    # None: the engine returns none. The rollout importance-sampling correction compares it with the trainer's.
    sampling_logp: Tensor | None = None

    @property
    def lengths(self) -> Tensor:  # [N]
        return self.completion_mask.sum(-1)

    def select(self, rows: Tensor) -> "Rollout":
        idx = rows.tolist()
        return Rollout(self.prompt_ids[rows], self.prompt_mask[rows], self.completion_ids[rows],
                       self.completion_mask[rows], self.truncated[rows], [self.completions[i] for i in idx],
                       None if self.sampling_logp is None else self.sampling_logp[rows])

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
            None if any(r.sampling_logp is None for r in parts)
            else torch.cat([torch.nn.functional.pad(r.sampling_logp, (0, C - r.sampling_logp.shape[1]), value=0.0)
                            for r in parts]),
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
    """Every token id that ends a completion: the generation config's (one or a list, e.g. Qwen's
    ``<|im_end|>`` and ``<|endoftext|>``), then the tokenizer's EOS if not among them."""
    ids = getattr(getattr(inner_model(model), "generation_config", None), "eos_token_id", None)
    ids = list(ids) if isinstance(ids, (list, tuple)) else [ids] if ids is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def encode_prompts(tokenizer: Any, texts: list[str], device: torch.device, max_context: int | None,
                   max_new_tokens: int) -> tuple[Tensor, Tensor]:
    """Left-padded prompt ids and mask [B, P] (BOS once: :func:`encode_texts`); ValueError when a prompt
    leaves no room to answer."""
    rows = encode_texts(tokenizer, texts)
    P = max(map(len, rows))
    ids = torch.full((len(rows), P), tokenizer.pad_token_id, dtype=torch.long)  # [B, P]
    mask = torch.zeros((len(rows), P), dtype=torch.long)  # [B, P]
    for i, r in enumerate(rows):
        if r:
            ids[i, P - len(r):], mask[i, P - len(r):] = torch.tensor(r), 1
    ids, mask = ids.to(device), mask.to(device)
    longest = int(mask.sum(-1).max())
    if max_context is not None and longest + max_new_tokens > max_context:
        raise ValueError(f"a prompt of {longest} tokens plus max_new_tokens={max_new_tokens} exceeds the "
                         f"model's context of {max_context} tokens; shorten prompts or lower max_new_tokens")
    return ids, mask


def finish_rollout(tokenizer: Any, prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor, eos: list[int],
                   group_size: int, sampling_logp: Tensor | None = None) -> Rollout:
    """The Rollout of sampled ``completion_ids`` [N, C] for prompts [B, P] (each repeated G times);
    ``sampling_logp`` [N, C]: the engine's log-probs of those tokens, if it gives them.

    The mask keeps the EOS that ended a completion (its probability is trained too) and nothing after
    it; the text stops before that EOS, whether or not the tokenizer calls it special."""
    mask, truncated = completion_mask(completion_ids, eos)
    text_lengths = (mask.sum(-1) - (~truncated).long()).tolist()  # [N] tokens before the EOS
    texts = tokenizer.batch_decode([row[:n] for row, n in zip(completion_ids.tolist(), text_lengths)],
                                   skip_special_tokens=True)
    return Rollout(prompt_ids.repeat_interleave(group_size, 0), prompt_mask.repeat_interleave(group_size, 0),
                   completion_ids, mask, truncated, texts, sampling_logp)


@GENERATORS.register("cached")
@torch.no_grad()
def generate_cached(
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
    prompt_keys: Tensor | None = None,
) -> Rollout:
    """Sample ``group_size`` completions for each of B prompts ([B, P]) with a shared-prompt KV cache.

    Each prompt is encoded once and its cache repeated for its G samples (``generate`` would encode
    it G times); then one token per step for the rows still going, until every row has emitted EOS
    or ``max_new_tokens`` is reached. Finished rows leave the batch and its cache; they are padded.
    With ``prompt_keys`` (one sampling key per prompt [B], :mod:`grpo.llm.rollout.seeding`) each
    sample's tokens depend only on its prompt's key, not on the other rows in the batch; without,
    torch's global RNG is used.

    Under FSDP every forward pass is collective, so every process must run as many: finished rows
    then stay in the batch (their tokens are not kept) and the loop ends when every process is done.
    """
    synced = synced_processes(model)
    eos = eos_ids_of(tokenizer, model)
    eos_t = torch.tensor(eos, device=prompt_ids.device)
    was_training = model.training
    model.eval()
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=position_ids_of(prompt_mask),
                use_cache=True, logits_to_keep=1)
    cache = cache_of(out)
    cache.batch_repeat_interleave(group_size)
    logits = out.logits[:, -1].repeat_interleave(group_size, 0).float()  # [n, V] for the n rows still going
    mask = prompt_mask.repeat_interleave(group_size, 0)  # [n, P + t]
    pos = position_ids_of(mask)[:, -1:] + 1  # [n, 1]
    N = mask.shape[0]
    tokens = torch.full((N, max_new_tokens), tokenizer.pad_token_id, dtype=torch.long, device=mask.device)  # [N, C]
    sampled_logp = torch.zeros(N, max_new_tokens, device=mask.device)  # [N, C] log-prob of each sampled token
    active = torch.arange(N, device=mask.device)  # [n] rows that have not emitted EOS
    keys = None if prompt_keys is None else sample_keys(prompt_keys.cpu(), group_size)  # [N]
    done = torch.zeros(N, dtype=torch.bool, device=mask.device)  # [N] rows that emitted EOS (synced only)
    steps = max_new_tokens
    for t in range(max_new_tokens):
        if greedy:
            nxt = logits.argmax(-1)  # [n]
        else:
            probs = torch.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
            if keys is None:
                nxt = torch.multinomial(probs, 1).squeeze(-1)  # [n]
            else:
                nxt = sample_from(probs, uniforms(keys[active.cpu()], t).to(probs.device))  # [n]
            sampled_logp[active, t] = probs.gather(1, nxt[:, None]).squeeze(1).log()
        if synced:
            live = ~done[active]  # [n] rows still sampling; the others ride along for the collective passes
            tokens[active[live], t] = nxt[live]
            done[active[live]] = torch.isin(nxt[live], eos_t)
            going = ~done[active]  # [n]
        else:
            tokens[active, t] = nxt
            going = ~torch.isin(nxt, eos_t)  # [n]
        if not _any_going(going, synced) or t == max_new_tokens - 1:
            steps = t + 1
            break
        if not synced and not bool(going.all()):  # finished rows leave the batch (and cache): no compute on padding
            keep = going.nonzero().flatten()
            active, mask, pos, nxt = active[keep], mask[keep], pos[keep], nxt[keep]
            cache.batch_select_indices(keep)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos, use_cache=True,
                    **cache_kwargs(model, cache))
        cache = cache_of(out)
        logits, pos = out.logits[:, -1].float(), pos + 1
    model.train(was_training)
    return finish_rollout(tokenizer, prompt_ids, prompt_mask, tokens[:, :steps], eos, group_size,
                          None if greedy else sampled_logp[:, :steps])


def synced_processes(model: Any) -> bool:
    """Whether ``model``'s forward passes are collective over several processes (FSDP-managed)."""
    import torch.distributed as dist
    from transformers.integrations.fsdp import is_fsdp_managed_module

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 and is_fsdp_managed_module(model)


def synced_max(value: int, synced: bool) -> int:
    """The largest ``value`` over every process when ``synced`` (their forward passes are collective)."""
    if not synced:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t)


def _any_going(going: Tensor, synced: bool) -> bool:
    """Whether any row (of any process, when ``synced``) still samples."""
    flag = going.any().to(torch.int32)
    if synced:
        import torch.distributed as dist

        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag)


def hf_generation_config(tokenizer: Any, model: Any, group_size: int, max_new_tokens: int, temperature: float,
                         top_p: float, top_k: int, greedy: bool) -> Any:
    """A fresh ``GenerationConfig`` that says every sampling option: ours, or its neutral value.

    ``generate`` fills every option left ``None`` from the model's ``generation_config.json`` and
    then from transformers' global defaults (top_k 50; a Qwen-style config adds top_k 20, top_p 0.8,
    repetition_penalty 1.05), which would sample from a distribution the log-probs do not assume.
    """
    from transformers import GenerationConfig

    inner = inner_model(model).generation_config
    return GenerationConfig(
        do_sample=not greedy, num_beams=1, num_return_sequences=1 if greedy else group_size,
        max_new_tokens=max_new_tokens, min_length=0, use_cache=True,  # min_new_tokens None: off
        temperature=1.0 if greedy else temperature, top_k=0 if greedy else top_k, top_p=1.0 if greedy else top_p,
        typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0, repetition_penalty=1.0, encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0, encoder_no_repeat_ngram_size=0, length_penalty=1.0, renormalize_logits=False,
        remove_invalid_values=False,  # min_p, top_h, bad words, suppressed or forced tokens: None = off
        eos_token_id=eos_ids_of(tokenizer, model), pad_token_id=tokenizer.pad_token_id,
        bos_token_id=inner.bos_token_id, decoder_start_token_id=inner.decoder_start_token_id,
    )


@contextmanager
def _generation_config_of(model: Any, gen_cfg: Any) -> Iterator[None]:
    """The model's own generation config replaced by ``gen_cfg`` for one call, so that none of its
    values (min_p, suppressed tokens, ...) fill the options ``gen_cfg`` leaves at None (= off)."""
    inner = inner_model(model)
    saved = inner.generation_config
    inner.generation_config = gen_cfg
    try:
        yield
    finally:
        inner.generation_config = saved


@GENERATORS.register("hf")
@torch.no_grad()
def generate_hf(
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
    prompt_keys: Tensor | None = None,
) -> Rollout:
    """The same with Hugging Face ``generate`` (``num_return_sequences`` = G), for models whose
    forward takes no KV cache argument. ``prompt_keys`` are not used: it samples from torch's global RNG.

    Every sampling option is passed explicitly and the model's own ``generation_config`` is set
    aside for the call (:func:`hf_generation_config`), so what is sampled is what the config says.
    """
    eos = eos_ids_of(tokenizer, model)
    gen_cfg = hf_generation_config(tokenizer, model, group_size, max_new_tokens, temperature, top_p, top_k, greedy)
    P = prompt_ids.shape[1]
    if greedy and group_size > 1:  # HF greedy search refuses num_return_sequences > 1
        prompt_ids, prompt_mask = prompt_ids.repeat_interleave(group_size, 0), prompt_mask.repeat_interleave(group_size, 0)
    was_training = model.training
    model.eval()
    try:
        with _generation_config_of(model, gen_cfg):
            out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=gen_cfg)
    finally:
        model.train(was_training)
    if greedy and group_size > 1:
        prompt_ids, prompt_mask = prompt_ids[::group_size], prompt_mask[::group_size]
    return finish_rollout(tokenizer, prompt_ids, prompt_mask, out[:, P:], eos, group_size)


def generate(model: Any, tokenizer: Any, prompt_ids: Tensor, prompt_mask: Tensor, group_size: int,
             max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
             greedy: bool = False, engine: str = "cached", prompt_keys: Tensor | None = None) -> Rollout:
    """Sample G completions per prompt with the engine named ``engine`` (``cached`` or ``hf``)."""
    return GENERATORS.get(engine)(model, tokenizer, prompt_ids, prompt_mask, group_size, max_new_tokens,
                                  temperature, top_p, top_k, greedy, prompt_keys)
