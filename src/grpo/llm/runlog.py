"""Per-step metrics to ``metrics.jsonl`` (always) and TensorBoard (when importable); samples to
``samples.jsonl``. Metric names are namespaced: ``reward/exact/mean``, ``clip/low_frac``, ..."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from grpo.utils.io import JsonlWriter, read_jsonl


def truncate_jsonl(path: Path, before_step: int) -> None:
    """Keep the records of steps < ``before_step`` (a resumed run rewrites the steps after its checkpoint)."""
    if not path.exists():
        return
    keep = [r for r in read_jsonl(path, skip_bad_lines=True) if r.get("step", -1) < before_step]
    with JsonlWriter(path, mode="w") as w:
        for r in keep:
            w.write(r)


class RunLog:
    def __init__(self, out: Path, tensorboard: bool = True, start_step: int = 0):
        truncate_jsonl(out / "metrics.jsonl", start_step)
        truncate_jsonl(out / "samples.jsonl", start_step)
        self.metrics = JsonlWriter(out / "metrics.jsonl")
        self.samples = JsonlWriter(out / "samples.jsonl")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tb"))
            except ImportError:  # TensorBoard is optional
                self.tb = None

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        record = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        self.metrics.write(record)
        if self.tb is not None:
            for k, v in metrics.items():
                if not math.isnan(float(v)):
                    self.tb.add_scalar(k, float(v), step)

    def log_samples(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            self.samples.write(r)

    def close(self) -> None:
        self.metrics.close()
        self.samples.close()
        if self.tb is not None:
            self.tb.close()
