"""The language-model trainer's :class:`grpo.utils.runlog.RunLog`: per-step metrics to ``metrics.jsonl``
and the trackers (TensorBoard by default when installed); samples to ``samples.jsonl``. Metric names
are namespaced: ``reward/exact/mean``, ``clip/low_frac``, ..."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection

from grpo.utils import runlog
from grpo.utils.trackers import resolve_report_to

LLM_LOG_FILES = ("metrics.jsonl", "samples.jsonl")


class RunLog(runlog.RunLog):
    """The run's logs from ``start_step`` on: records of later steps, logged before a crash by the run
    being resumed, are dropped (in TensorBoard too, by its purge step), since those steps are redone."""

    def __init__(self, out: Path, tensorboard: bool = True, start_step: int = 0,
                 report_to: Collection[str] | None = None, config: dict[str, Any] | None = None):
        super().__init__(out, LLM_LOG_FILES, resolve_report_to(report_to, tensorboard), start_step, "step", config)
