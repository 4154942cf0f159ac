"""Per-step metrics to ``metrics.jsonl`` (always) and TensorBoard (when importable); samples to
``samples.jsonl``. Metric names are namespaced: ``reward/exact/mean``, ``clip/low_frac``, ..."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from grpo.utils.io import JsonlWriter, truncate_jsonl


class RunLog:
    """The run's logs from ``start_step`` on: records of later steps, logged before a crash by the run
    being resumed, are dropped (in TensorBoard too, by its purge step), since those steps are redone."""

    def __init__(self, out: Path, tensorboard: bool = True, start_step: int = 0):
        for name in ("metrics.jsonl", "samples.jsonl"):
            truncate_jsonl(out / name, lambda r: r.get("step", -1) < start_step)
        self.metrics = JsonlWriter(out / "metrics.jsonl")
        self.samples = JsonlWriter(out / "samples.jsonl")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tb"), purge_step=start_step or None)
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
