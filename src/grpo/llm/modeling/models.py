"""Loading a Hugging Face causal LM and its tokenizer, and turning prompts into text and token ids.

Any ``AutoModelForCausalLM`` works, from a local folder or a hub id. Tokenizers are set to left
padding (generation appends on the right) and get a pad token when they have none.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_model_folder(name_or_path: str) -> None:
    """Refuse, in one line naming the file, a local model that cannot load: a file, an empty folder, no
    ``config.json``, a ``model_type`` this transformers does not know, or damaged safetensors weights.
    A name that is not a local path is left to the hub."""
    from pathlib import Path

    from safetensors import SafetensorError, safe_open

    path = Path(name_or_path)
    if not path.exists():
        if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
            raise FileNotFoundError(f"--model {name_or_path}: no such folder (pass a model folder or a hub id)")
        return
    if not path.is_dir():
        raise ValueError(f"--model {name_or_path} is a file: pass the model's folder (config.json, weights, "
                         "tokenizer) or a .gguf file")
    config = path / "config.json"
    if not config.is_file() and (path / "adapter_config.json").is_file():
        config = None  # a peft adapter folder: its base model's config is checked when it loads
    elif not config.is_file():
        what = "is empty" if not any(path.iterdir()) else "has no config.json"
        raise ValueError(f"--model {name_or_path} {what}: pass a folder written by save_pretrained "
                         "(config.json, weights, tokenizer), or a hub id")
    if config is not None:
        _check_model_type(config)
    for weights in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="pt"):
                pass
        except SafetensorError as err:
            raise ValueError(f"{weights}: not a readable safetensors file ({err}); the file is damaged or "
                             "incomplete: copy or save the model again") from None


def _check_model_type(config: Any) -> None:
    import json

    import transformers
    from transformers import CONFIG_MAPPING

    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, UnicodeDecodeError, AttributeError) as err:
        raise ValueError(f"{config}: not a readable JSON object ({err}): restore the file") from None
    if model_type not in CONFIG_MAPPING:
        raise ValueError(f"{config}: model_type {model_type!r} is unknown to transformers {transformers.__version__}: "
                         "fix model_type, or upgrade transformers if the architecture is newer")


def load_tokenizer(name_or_path: str) -> Any:
    from transformers import AutoTokenizer

    check_model_folder(name_or_path)
    tok = AutoTokenizer.from_pretrained(name_or_path)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise ValueError(f"tokenizer of {name_or_path!r} has neither a pad nor an EOS token")
        tok.pad_token = tok.eos_token  # completions are masked after the first EOS, so this is safe
    return tok


def load_model(name_or_path: str, dtype: str = "float32", device: str | torch.device = "cpu") -> Any:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per load of a tiny model is noise
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} unknown; choose one of {sorted(DTYPES)}")
    check_model_folder(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=DTYPES[dtype])
    return model.to(device)


def frozen_copy(model: Any) -> Any:
    """The reference policy: a copy that takes no gradient."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


def context_length(model: Any) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


def is_conversational(prompt: Any) -> bool:
    return isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m for m in prompt)


def prompt_texts(tokenizer: Any, prompts: list[Any]) -> list[str]:
    """Prompts as text: chat messages go through the tokenizer's chat template, strings stay as they are."""
    out = []
    for p in prompts:
        if is_conversational(p):
            if not getattr(tokenizer, "chat_template", None):
                raise ValueError("the data holds chat messages but the tokenizer has no chat template")
            out.append(tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True))
        elif isinstance(p, str):
            out.append(p)
        else:
            raise ValueError(f"a prompt must be a string or a list of chat messages, got {type(p).__name__}")
    return out


def bos_prefix(tokenizer: Any) -> list[int]:
    """The ids a tokenizer puts before a text of its own accord (a Llama-style BOS); [] when none."""
    plain = tokenizer("a", add_special_tokens=False).input_ids
    full = tokenizer("a").input_ids
    for k in range(len(full) - len(plain) + 1):
        if full[k:k + len(plain)] == plain:
            return full[:k]
    return []


def encode_texts(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of prompt texts, with the tokenizer's BOS exactly once and nothing after the text.

    The BOS is added where the tokenizer adds one, unless the text already starts with it: a chat
    template that writes ``<s>`` or ``<|begin_of_text|>`` as text must not get a second one from
    ``add_special_tokens`` (which would also append an EOS on tokenizers that add one).
    """
    bos = bos_prefix(tokenizer)
    rows = tokenizer(texts, add_special_tokens=False).input_ids
    return [r if not bos or r[:len(bos)] == bos else bos + r for r in rows]
