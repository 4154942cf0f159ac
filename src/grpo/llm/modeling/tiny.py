"""The built-in tiny model: a 2-layer Llama with a character tokenizer, partly trained on addition.

It is supervised-pretrained on the built-in ``addition`` task only until its greedy accuracy on the
test split first reaches ``target_accuracy`` (30%), so that GRPO has room to improve it.
The result is a normal model folder (``save_pretrained``, safetensors), cached under
``$GRPO_LAB_CACHE`` (default ``~/.cache/grpo-lab``) and keyed by the spec, so it is built once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

CACHE_ENV = "GRPO_LAB_CACHE"
SPECIALS = ("<pad>", "<eos>", "<unk>")
CHARS = tuple(chr(c) for c in range(32, 127)) + ("\n",)


@dataclass(frozen=True)
class TinySpec:
    """Size of the tiny model and how far to pretrain it."""

    hidden: int = 128
    layers: int = 2
    heads: int = 4
    intermediate: int = 512
    context: int = 64
    target_accuracy: float = 0.3
    max_steps: int = 3000
    batch: int = 128
    lr: float = 3e-3
    eval_every: int = 25
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "grpo-lab")


def char_tokenizer() -> Any:
    """A character-level fast tokenizer: printable ASCII and newline, plus pad/eos/unk."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>", padding_side="left")


def new_model(spec: TinySpec, tokenizer: Any) -> Any:
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # saving a 1 MB model needs no progress bar

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden, intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers, num_attention_heads=spec.heads, num_key_value_heads=spec.heads,
        max_position_embeddings=spec.context, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    return model


def _sft_batch(tokenizer: Any, rows: list[dict], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Right-padded ``prompt + answer + <eos>``; labels only on the answer and EOS."""
    ids, labels = [], []
    for r in rows:
        p = tokenizer(r["prompt"], add_special_tokens=False).input_ids
        a = tokenizer(r["answer"], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        ids.append(p + a)
        labels.append([-100] * len(p) + a)
    width = max(map(len, ids))
    pad = tokenizer.pad_token_id
    x = torch.tensor([s + [pad] * (width - len(s)) for s in ids], device=device)  # [B, T]
    y = torch.tensor([s + [-100] * (width - len(s)) for s in labels], device=device)  # [B, T]
    return x, y, (x != pad).long()


def pretrain(spec: TinySpec, device: str | torch.device = "cpu", log: Any = None) -> tuple[Any, Any, dict]:
    """Supervised training on addition until greedy test accuracy >= ``spec.target_accuracy``.

    Runs on one CPU thread: at this size more threads only add synchronisation, and on a busy
    machine they make each step many times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _pretrain(spec, device, log)
    finally:
        torch.set_num_threads(threads)


def _pretrain(spec: TinySpec, device: str | torch.device, log: Any) -> tuple[Any, Any, dict]:
    import random

    from grpo.llm.data.tasks import load_rows
    from grpo.llm.evaluation import greedy_accuracy

    tok = char_tokenizer()
    model = new_model(spec, tok).to(device)
    train, test = load_rows("addition", "train"), load_rows("addition", "test")
    rng = random.Random(spec.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.0)
    start, acc, step = time.time(), 0.0, 0
    for step in range(1, spec.max_steps + 1):
        x, y, m = _sft_batch(tok, rng.sample(train, spec.batch), torch.device(device))
        loss = model(input_ids=x, attention_mask=m, labels=y).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % spec.eval_every == 0:
            acc = greedy_accuracy(model, tok, test, max_new_tokens=4)
            if log:
                log(f"tiny pretraining: step {step} loss {loss.item():.3f} greedy accuracy {acc:.1%}")
            if acc >= spec.target_accuracy:
                break
    info = {"spec": asdict(spec), "steps": step, "greedy_accuracy": acc, "seconds": round(time.time() - start, 1)}
    return model, tok, info


def tiny_model_path(spec: TinySpec | None = None, log: Any = print) -> Path:
    """Folder of the built-in tiny model, pretraining it on first use (about a minute on CPU)."""
    spec = spec or TinySpec()
    path = cache_dir() / f"tiny-addition-{spec.key()}"
    if (path / "config.json").exists():
        return path
    if log:
        log(f"building the tiny model into {path} (once)")
    model, tok, info = pretrain(spec, log=log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=path.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "tiny_info.json").write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, path)  # atomic: a concurrent builder either wins or finds the folder
    except OSError:
        if not (path / "config.json").exists():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path
