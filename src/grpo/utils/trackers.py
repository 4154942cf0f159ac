"""Experiment trackers a run reports its metrics to (``--report-to NAME [NAME ...]``), chosen by name.

Each is a small class with ``log(step, metrics)`` and ``close()``, registered in :data:`TRACKERS`; a
new one is one class and a ``@TRACKERS.register`` line. Every tracker stays on this machine unless
the user says otherwise: wandb runs offline (``WANDB_MODE=offline`` when unset), MLflow writes a file
store under the run folder (when ``MLFLOW_TRACKING_URI`` is unset), trackio keeps its local store.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Collection

from grpo.core.registry import Registry

TRACKERS: Registry = Registry("tracker")
# tracker -> (module it imports, what to pip install)
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
            "trackio": ("trackio", "trackio"), "mlflow": ("mlflow", "mlflow")}
TRACKER_NAMES = tuple(PACKAGES)  # spelled out so that config and --help need no import
# What the trackers write into a run folder (the run's own entries: --overwrite removes them).
TRACKER_FILES = ("tb", "wandb", "mlruns")


def installed(name: str) -> bool:
    return importlib.util.find_spec(PACKAGES[name][0]) is not None


def resolve_report_to(report_to: Collection[str] | None, tensorboard: bool = True) -> list[str]:
    """The trackers to open: ``None`` means TensorBoard when installed; ``none`` alone means no tracker.
    ``tensorboard=False`` (the LLM trainer's older ``--tensorboard false``) drops TensorBoard.

    >>> resolve_report_to(["none"]), resolve_report_to(["wandb", "wandb"], tensorboard=False)
    ([], ['wandb'])
    """
    if report_to is None:
        names = ["tensorboard"] if installed("tensorboard") else []
    else:
        names = list(dict.fromkeys(n for n in report_to if n != "none"))
    return [n for n in names if tensorboard or n != "tensorboard"]


def check_report_to(report_to: Collection[str] | None) -> None:
    """One-line ValueError for an unknown tracker, ``none`` mixed with others, or one not installed."""
    if report_to is None:
        return
    unknown = [n for n in report_to if n not in TRACKER_NAMES and n != "none"]
    if unknown:
        raise ValueError(f"report_to: unknown tracker(s) {unknown}; choose from {list(TRACKER_NAMES)} or none")
    if "none" in report_to and len(set(report_to)) > 1:
        raise ValueError(f"report_to: 'none' disables every tracker; drop it or the others ({list(report_to)})")
    missing = [PACKAGES[n][1] for n in report_to if n != "none" and not installed(n)]
    if missing:
        raise ValueError(f"report_to: {', '.join(missing)} not installed; pip install {' '.join(missing)} "
                         "(or drop it from --report-to)")


def open_trackers(names: Collection[str], out: Path, start_step: int = 0,
                  config: dict[str, Any] | None = None) -> list[Any]:
    """The trackers ``names`` for the run folder ``out``; steps from ``start_step`` on are (re)logged."""
    return [TRACKERS.get(n)(Path(out), start_step, config or {}) for n in names]


@TRACKERS.register("tensorboard")
class TensorBoardTracker:
    """Event files in ``out/tb``; a resumed run purges the events of the steps it redoes."""

    def __init__(self, out: Path, start_step: int, config: dict[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out / "tb"), purge_step=start_step or None)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        self.writer.close()


@TRACKERS.register("wandb")
class WandbTracker:
    """A Weights & Biases run in ``out/wandb``, offline unless ``WANDB_MODE`` says otherwise."""

    def __init__(self, out: Path, start_step: int, config: dict[str, Any]):
        os.environ.setdefault("WANDB_MODE", "offline")
        wandb = importlib.import_module("wandb")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "grpo-lab"), name=out.resolve().name,
                              dir=str(out), config=config)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


@TRACKERS.register("trackio")
class TrackioTracker:
    """A trackio run in its local store (no Space unless the user configures one)."""

    def __init__(self, out: Path, start_step: int, config: dict[str, Any]):
        self.trackio = importlib.import_module("trackio")
        self.trackio.init(project=os.environ.get("TRACKIO_PROJECT", "grpo-lab"), name=out.resolve().name, config=config)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.trackio.log(metrics, step=step)

    def close(self) -> None:
        self.trackio.finish()


@TRACKERS.register("mlflow")
class MLflowTracker:
    """An MLflow run in the file store ``out/mlruns`` (unless ``MLFLOW_TRACKING_URI`` is set)."""

    def __init__(self, out: Path, start_step: int, config: dict[str, Any]):
        self.mlflow = importlib.import_module("mlflow")
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            self.mlflow.set_tracking_uri((out / "mlruns").resolve().as_uri())
        self.mlflow.start_run(run_name=out.resolve().name)
        if config:
            self.mlflow.log_params({k: str(v)[:250] for k, v in config.items()})

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def close(self) -> None:
        self.mlflow.end_run()
