"""Checkpoints in the Hugging Face format (``save_pretrained``, safetensors) plus trainer state.

A checkpoint folder ``checkpoint-000050/`` holds the policy and tokenizer as a normal model folder,
``optimizer.pt`` (``torch_save``; loaded with ``weights_only=True``), ``rng.pt``, ``trainer_state.json``
and, when the reference has been reset away from the initial model, ``reference/``. It is written
into a temporary folder and renamed into place, so a crash never leaves half a checkpoint. Under
FSDP2 the same files hold the gathered full tensors (the optimizer state keyed by parameter name).

``--resume`` continues from the newest checkpoint, or, when the run died before its first one, starts it
again from step 0; either way the logs are cut back to the step it continues from (:class:`RunLog`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from grpo.utils.io import AtomicDir, read_json, torch_load, torch_save, write_json
from grpo.utils.runfolder import RunFiles
from grpo.utils.trackers import TRACKER_FILES

# What a run writes into --out; --overwrite deletes these and nothing else, and refuses a folder holding
# grpo llm sft's run (sft_config.json) or grpo train's (config.json), which share summary.json and more.
RUN_FILES = RunFiles(("metrics.jsonl", "samples.jsonl", "run_config.json", "summary.json", "final", "final-merged",
                      "curves.png", *TRACKER_FILES),  # curves.png: an --env run's evaluation plot (cli)
                     config="run_config.json", pattern=r"checkpoint-\d+", foreign=("sft_config.json", "config.json"))


def _atomic_dir(target: Path, fill: Any) -> None:
    with AtomicDir(target) as tmp:  # written aside, fsynced, then renamed into place
        fill(tmp)


def save_model(path: Path, model: Any, tokenizer: Any) -> None:
    """A loadable model folder, written atomically."""
    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    _atomic_dir(path, fill)


def save_checkpoint(out: Path, step: int, model: Any, tokenizer: Any, optimizer: torch.optim.Optimizer | dict,
                    state: dict[str, Any], ref: Any | None = None, keep: int = 2,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``out/checkpoint-{step}``; keep the ``keep`` newest. ``step`` = steps completed.

    ``optimizer``: the optimizer, or its state dict already gathered (FSDP2: full tensors by name).
    ``extra``: more modules with ``save_pretrained`` (e.g. PPO's value model), each in its subfolder.
    """
    target = out / f"checkpoint-{step:06d}"

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        torch_save(tmp / "optimizer.pt", optimizer if isinstance(optimizer, dict) else optimizer.state_dict())
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch_save(tmp / "rng.pt", rng)
        if ref is not None:
            ref.save_pretrained(tmp / "reference", safe_serialization=True)
        for name, module in (extra or {}).items():
            module.save_pretrained(tmp / name)
        write_json(tmp / "trainer_state.json", {"step": step, **state})

    _atomic_dir(target, fill)
    for old in list_checkpoints(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(out: Path) -> list[Path]:
    return sorted(p for p in Path(out).glob("checkpoint-*") if (p / "trainer_state.json").exists())


def load_trainer_state(path: Path, optimizer: torch.optim.Optimizer,
                       load_optimizer: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Restore optimizer and RNG state from a checkpoint; returns its trainer_state.json.
    ``load_optimizer``: loads the state dict instead of ``optimizer.load_state_dict`` (FSDP2)."""
    (load_optimizer or optimizer.load_state_dict)(torch_load(path / "optimizer.pt"))
    rng = torch_load(path / "rng.pt")
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return read_json(path / "trainer_state.json")


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> Path | None:
    """Check the run folder; returns the checkpoint to resume from (None: start at step 0).

    A folder that already holds a run is an error unless ``resume`` or ``overwrite``; overwrite
    removes only this trainer's files, never anything else in the folder. ``resume`` needs the run's
    ``run_config.json``; a run that died before its first checkpoint starts again clean.
    """
    RUN_FILES.prepare(out, resume, overwrite)
    ckpts = list_checkpoints(out) if resume else []
    if resume and not ckpts:
        RUN_FILES.remove(out, keep=(RUN_FILES.config,))
    return ckpts[-1] if ckpts else None
