"""Starting several processes: ``accelerate launch`` of ``grpo llm train`` (``--num-processes N``)."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


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
        return subprocess.call(cmd)
