"""Before an LLM run loads anything big: does one step's batch fit in the device's memory?

All ``prompts_per_step x group_size`` sequences are generated together, so the KV cache and one
decode step's logits grow with the whole batch; the log-prob passes hold one chunk of tokens'
logits [chunk, V] (:func:`grpo.llm.modeling.logprobs.head_logprobs`). The estimate below is a lower bound (prompt tokens, activations and optimizer
state are left out), so a refusal is certain to be right; a run it lets through may still not fit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grpo.llm.modeling.logprobs import CHUNK_ELEMENTS
from grpo.utils.bounds import check_fits

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def estimate_bytes(cfg: Any, model_config: dict[str, Any], weights_bytes: int = 0) -> int:
    """Lower bound of one step's peak memory for ``cfg`` on a model with ``model_config`` (config.json)."""
    n = cfg.prompts_per_step * cfg.group_size  # sequences per step
    T = cfg.max_new_tokens + 1  # at least one prompt token
    layers = int(model_config.get("num_hidden_layers", 1))
    hidden = int(model_config.get("hidden_size", 1))
    heads = int(model_config.get("num_attention_heads", 1))
    head_dim = int(model_config.get("head_dim") or hidden // max(heads, 1))
    kv_heads = int(model_config.get("num_key_value_heads") or heads)
    vocab = int(model_config.get("vocab_size", 1))
    kv_cache = n * T * layers * 2 * kv_heads * head_dim * DTYPE_BYTES.get(cfg.dtype, 4)  # K and V [n, T, ...]
    decode_logits = n * vocab * 4  # [n, V] float32, one decode step
    train_logits = min((cfg.micro_batch or n) * T, max(1, CHUNK_ELEMENTS // vocab)) * vocab * 4  # [chunk, V] float32
    copies = 2 if cfg.beta > 0 and not cfg.adapter else 1  # the policy, and the reference
    return max(kv_cache + decode_logits, train_logits) + copies * weights_bytes


def check_memory(cfg: Any, path: str, device: Any) -> None:
    """Refuse a batch whose estimated memory exceeds what ``device`` has free (local model folders only;
    a hub id is checked by nothing before it loads)."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        return
    model_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    weights = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    n = cfg.prompts_per_step * cfg.group_size
    check_fits(f"a step of {cfg.prompts_per_step:,} prompts x {cfg.group_size:,} samples = {n:,} sequences of up to "
               f"{cfg.max_new_tokens + 1:,} tokens", estimate_bytes(cfg, model_config, weights),
               "lower --group-size or --prompts-per-step (and set --micro-batch)", str(device))
