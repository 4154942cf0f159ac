"""The built-in tiny model: a 2-layer Llama with a character tokenizer, partly trained on addition.

It is supervised-pretrained on the built-in ``addition`` task for a fixed number of steps, the
learning rate decaying linearly to 0 over the last ``decay_steps``. In 60% of the problems whose
units carry (``carry_noise``) the answer it is shown drops the carry ("17+25=" -> "32"), so its
greedy answer to them is usually wrong while sampling finds the right one 40% of the time: a gap
that GRPO with the exact-answer reward closes in a few dozen steps (+24.5 to +27.0 points on GRPO
seeds 0-4, where an early-stopped model on clean answers gained +6 to +20 depending on the build).
A fixed step count (not "until accuracy X") stops the build at the same point on every machine;
float summation order still differs across CPUs, and the step at which the model learns addition
varies with its start (``seed=1`` is still at 5% after 1,400 steps), so the default model's weights
ship with the package (``tiny_model/``, built by ``python -m grpo.llm.modeling.tiny --build``) and every
machine starts the demo from the same model. Other specs are built on first use into
``$GRPO_LAB_CACHE`` (default ``~/.cache/grpo-lab``), keyed by the spec. A folder is a normal
model folder (``save_pretrained``, safetensors).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from grpo.llm.modeling.model_cache import cache_dir, write_folder

SHIPPED = Path(__file__).with_name("tiny_model")  # the default spec's model, package data
SPECIALS = ("<pad>", "<eos>", "<unk>")
CHARS = tuple(chr(c) for c in range(32, 127)) + ("\n",)


@dataclass(frozen=True)
class TinySpec:
    """Size of the tiny model and its pretraining recipe."""

    hidden: int = 128
    layers: int = 2
    heads: int = 4
    intermediate: int = 512
    context: int = 64
    max_steps: int = 1400  # pretraining steps (all of them unless target_accuracy stops earlier)
    decay_steps: int = 500  # the learning rate falls linearly to 0 over the last N steps; 0: constant
    target_accuracy: float | None = None  # stop once greedy test accuracy reaches it (machine-dependent)
    carry_noise: float = 0.6  # share of units-carrying training answers given without the carry
    batch: int = 128
    lr: float = 3e-3
    eval_every: int = 25  # with target_accuracy: how often to check it
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def char_tokenizer(words: tuple[str, ...] = ()) -> Any:
    """A character-level fast tokenizer: printable ASCII and newline, plus pad/eos/unk; each of ``words``
    (e.g. the numbers ``"000"`` .. ``"101"``) is one token wherever it occurs in the text."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    pattern = "|".join([*(re.escape(w) for w in sorted(words, key=len, reverse=True)), r"[\s\S]"])
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
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


def pretrain(spec: TinySpec, device: str | torch.device = "cpu", log: Any = None,
             threads: int = 1) -> tuple[Any, Any, dict]:
    """Supervised training on addition for ``spec.max_steps`` steps (fewer with ``target_accuracy``).

    Runs on ``threads`` CPU threads (default 1): at this size more threads only add
    synchronisation, and on a busy machine they make each step many times slower.
    """
    with torch_threads(threads):
        return _pretrain(spec, device, log)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block on ``threads`` torch CPU threads, then restore the number before."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def lr_at(spec: TinySpec, step: int) -> float:
    """Learning rate of pretraining step ``step`` (1-based): constant, then linear decay to 0.

    >>> s = TinySpec(max_steps=10, decay_steps=4, lr=1.0)
    >>> [lr_at(s, t) for t in (1, 6, 7, 8, 10)]
    [1.0, 1.0, 1.0, 0.75, 0.25]
    """
    left = spec.max_steps - step + 1  # steps left, this one included
    return spec.lr * min(1.0, left / spec.decay_steps) if spec.decay_steps else spec.lr


def drop_carry(row: dict, rng: Any, p: float) -> dict:
    """With probability ``p``, a problem whose units carry gets the answer that forgets it.

    >>> import random
    >>> [drop_carry({"prompt": q, "answer": a}, random.Random(0), 1.0)["answer"] for q, a in (("17+25=", "42"),
    ...     ("12+34=", "46"), ("58+64=", "122"))]
    ['32', '46', '112']
    """
    a, b = map(int, row["prompt"][:-1].split("+"))
    if a % 10 + b % 10 >= 10 and rng.random() < p:
        return {**row, "answer": str(a + b - 10)}
    return row


def _pretrain(spec: TinySpec, device: str | torch.device, log: Any) -> tuple[Any, Any, dict]:
    import random

    from grpo.llm.data.tasks import load_rows
    from grpo.llm.evaluation import greedy_accuracy

    tok = char_tokenizer()
    model = new_model(spec, tok).to(device)
    train, test = load_rows("addition", "train"), load_rows("addition", "test")
    rng, noise = random.Random(spec.seed), random.Random(spec.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.0)
    start, acc, step = time.time(), None, 0
    for step in range(1, spec.max_steps + 1):
        for group in opt.param_groups:
            group["lr"] = lr_at(spec, step)
        rows = [drop_carry(r, noise, spec.carry_noise) for r in rng.sample(train, spec.batch)]
        x, y, m = _sft_batch(tok, rows, torch.device(device))
        loss = model(input_ids=x, attention_mask=m, labels=y).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if spec.target_accuracy is not None and step % spec.eval_every == 0:
            acc = greedy_accuracy(model, tok, test, max_new_tokens=4)
            if acc >= spec.target_accuracy:
                break
        if log and step % 100 == 0:
            log(f"tiny pretraining: step {step}/{spec.max_steps} loss {loss.item():.3f}")
    if acc is None or step % spec.eval_every:
        acc = greedy_accuracy(model, tok, test, max_new_tokens=4)
    info = {"spec": asdict(spec), "steps": step, "greedy_accuracy": acc, "seconds": round(time.time() - start, 1)}
    return model, tok, info


def tiny_model_path(spec: TinySpec | None = None, log: Any = print) -> Path:
    """Folder of the tiny model: the shipped one for the default spec, else built on first use and cached."""
    spec = spec or TinySpec()
    if spec == TinySpec() and shipped_matches(spec):
        return SHIPPED
    path = cache_dir() / f"tiny-addition-{spec.key()}"
    if (path / "config.json").exists():
        return path
    if log:
        log(f"building the tiny model into {path} (once)")
    model, tok, info = pretrain(spec, log=log)
    save_tiny(path, model, tok, info)
    return path


def save_tiny(path: Path, model: Any, tok: Any, info: dict) -> None:
    """Write a model folder atomically: a concurrent builder either wins or finds the folder."""
    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "tiny_info.json").write_text(json.dumps({**info, "weights_sha256": weights_sha256(tmp)}, indent=2) + "\n")

    write_folder(path, fill)


def weights_sha256(folder: str | Path) -> str:
    """SHA-256 of a folder's tensors (names, dtypes, shapes, bytes): blind to file metadata."""
    from safetensors.torch import load_file

    tensors = load_file(str(Path(folder) / "model.safetensors"))
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def shipped_info(folder: Path = SHIPPED) -> dict | None:
    path = folder / "tiny_info.json"
    return json.loads(path.read_text()) if path.is_file() else None


def shipped_matches(spec: Any, folder: Path = SHIPPED) -> bool:
    """Whether ``folder`` holds ``spec``'s model (a changed spec default must be rebuilt)."""
    info = shipped_info(folder)
    return bool(info) and info["spec"] == asdict(spec) and (folder / "model.safetensors").is_file()


def machine() -> dict:
    """What the float results of a build depend on: it is recorded with the weights."""
    import platform

    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
               platform.processor())
    return {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "transformers": transformers.__version__}


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def build(out: Path = SHIPPED, threads: int = 1, log: Any = print) -> dict:
    """Pretrain the default spec on ``threads`` threads and write it to ``out`` (replacing a tiny folder)."""
    check_build_folder(out)
    model, tok, info = pretrain(TinySpec(), log=log, threads=threads)
    return write_build(out, model, tok, info, threads)


def check_build_folder(out: Path) -> None:
    """Refuse to build into a folder that exists and that no build wrote."""
    if out.exists() and not (out / "tiny_info.json").is_file():
        raise ValueError(f"{out} exists and is not a tiny model folder: choose another --out")


def write_build(out: Path, model: Any, tok: Any, info: dict, threads: int) -> dict:
    """Write a built model to ``out`` as package data, with the machine that built it; its info back."""
    info["machine"] = {**machine(), "threads": threads}
    if out.exists():
        shutil.rmtree(out)  # a tiny model folder this function wrote before
    save_tiny(out, model, tok, info)
    out.chmod(0o755)  # package data: readable by every user (mkdtemp made it private)
    for f in out.iterdir():
        f.chmod(0o644)
    return json.loads((out / "tiny_info.json").read_text())


def build_main(argv: list[str] | None, prog: str, description: str, build_fn: Callable[[Path, int], dict],
               shipped: Path, summary: Callable[[dict], dict]) -> int:
    """The ``--build`` command line of a shipped tiny model (this one, the guess-the-number player)."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--build", action="store_true", required=True, help="pretrain and write the model folder")
    parser.add_argument("--out", type=Path, default=shipped, help="model folder to write (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for the build (default: 1)")
    args = parser.parse_args(argv)
    try:
        info = build_fn(args.out, args.threads)
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    print(json.dumps(summary(info)))
    print(args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    return build_main(argv, "python -m grpo.llm.modeling.tiny",
                      "Build the default tiny model (the weights shipped in grpo/llm/modeling/tiny_model) from scratch.",
                      build, SHIPPED, lambda info: {k: info[k] for k in ("steps", "greedy_accuracy", "seconds",
                                                                          "weights_sha256")})


if __name__ == "__main__":
    raise SystemExit(main())
