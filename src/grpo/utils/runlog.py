"""A run's logs, for classic control and language models alike: JSON lines files in the run folder
(always) and the trackers of ``--report-to`` (TensorBoard by default when installed).

A resumed run redoes the steps after its checkpoint, so its logs start cut back to that point: the
records of those steps that the run being resumed wrote before it died are dropped from every JSON
lines file, and from TensorBoard by its purge step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Collection

from grpo.utils.io import JsonlWriter, truncate_jsonl
from grpo.utils.trackers import open_trackers


class RunLog:
    """JSON lines files ``files`` in ``out`` keyed by ``step_key``, and the trackers ``report_to``
    (names already resolved: :func:`grpo.utils.trackers.resolve_report_to`). Records with
    ``record[step_key] >= start_step`` are dropped from the files when it opens."""

    def __init__(self, out: Path, files: Collection[str] = ("metrics.jsonl",), report_to: Collection[str] = (),
                 start_step: int = 0, step_key: str = "step", config: dict[str, Any] | None = None):
        out = Path(out)
        self.step_key = step_key
        for name in files:
            truncate_jsonl(out / name, lambda r: r.get(step_key, -1) < start_step)
        self.files = {name: JsonlWriter(out / name) for name in files}
        self.trackers = open_trackers(report_to, out, start_step, config)

    def write(self, name: str, record: dict[str, Any]) -> None:
        """One record into the JSON lines file ``name`` (not to the trackers)."""
        self.files[name].write(record)

    def track(self, step: int, metrics: dict[str, Any]) -> None:
        """Scalars to the trackers; NaN (a metric not measured this step) is left out."""
        values = {k: float(v) for k, v in metrics.items()}
        values = {k: v for k, v in values.items() if not math.isnan(v)}
        for tracker in self.trackers:
            tracker.log(step, values)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """``{step_key: step, **metrics}`` (floats) to ``metrics.jsonl`` and the metrics to the trackers."""
        self.write("metrics.jsonl", {self.step_key: step, **{k: float(v) for k, v in metrics.items()}})
        self.track(step, metrics)

    def log_samples(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            self.write("samples.jsonl", r)

    def close(self) -> None:
        for writer in self.files.values():
            writer.close()
        for tracker in self.trackers:
            tracker.close()
