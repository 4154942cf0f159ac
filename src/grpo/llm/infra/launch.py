"""Starting several processes: ``accelerate launch`` of ``grpo llm train`` (``--num-processes N``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


# Executed and failed (docs/scale-out.md): DeepSpeed 0.19.8, torch 2.13 CPU, gloo.
ZERO3_ON_CPU = ("DeepSpeed ZeRO-3 does not run on CPU processes here (its partitioned embedding is not gathered "
                "for grpo's log-prob pass); use deepspeed_zero2.yaml or fsdp.yaml, which do (docs/scale-out.md)")


def check_launch_config(path: str | None, device: str) -> str:
    """Refuse, before any process starts, an accelerate config grpo cannot run: FSDP other than
    ``fsdp_version: 2``, DeepSpeed when it is not installed, ZeRO-3 on CPU processes. Returns the
    ``distributed_type`` the file asks for, upper case ("" when there is no file or it names none: DDP)."""
    if path is None:
        return ""
    import yaml

    conf = yaml.safe_load(Path(path).read_text()) or {}
    kind = str(conf.get("distributed_type", "")).upper()
    if kind == "FSDP" and int((conf.get("fsdp_config") or {}).get("fsdp_version", 1)) != 2:
        raise ValueError(f"{path}: set fsdp_version: 2 under fsdp_config (grpo runs FSDP2 only)")
    if kind == "DEEPSPEED":
        from grpo.llm.infra.fsdp import require_deepspeed

        require_deepspeed()
        if device == "cpu" and int((conf.get("deepspeed_config") or {}).get("zero_stage", 0)) == 3:
            raise ValueError(ZERO3_ON_CPU)
    return kind


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_command(num_processes: int, accelerate_config: str | None, mixed_precision: str,
                   args: list[str]) -> list[str]:
    """``accelerate launch`` of ``python -m grpo ARGS`` in ``num_processes`` processes.

    Without an accelerate config it is plain DDP (``--multi_gpu``: torchrun-style, which is also
    what starts several CPU processes; accelerate's ``--cpu`` alone would start one).
    """
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes),
           "--num_machines", "1", "--main_process_port", str(free_port()), "--dynamo_backend", "no",
           "--mixed_precision", mixed_precision]
    cmd += ["--config_file", accelerate_config] if accelerate_config else ["--multi_gpu"]
    return cmd + ["-m", "grpo", *args]


def relaunch(cfg: Any, algo: str) -> int:
    """Run ``grpo llm train`` for ``cfg`` in ``cfg.num_processes`` processes; returns their exit code.

    The resolved config (file and flags merged) goes to the children as one YAML file.
    """
    import dataclasses

    import yaml

    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init}
    with tempfile.TemporaryDirectory(prefix="grpo-launch-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(values, sort_keys=False))
        cmd = launch_command(cfg.num_processes, cfg.accelerate_config, cfg.mixed_precision,
                             ["llm", "train", "--algo", algo, "--config", str(path)])
        # --time-limit counts from the command the user typed, not from each child's later start
        from grpo.llm.infra.time_budget import RUN_START_ENV, run_started_at

        return subprocess.call(cmd, env={**os.environ, RUN_START_ENV: repr(run_started_at())})
