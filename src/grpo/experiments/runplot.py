"""``grpo plot RUN_DIR...``: the logged metrics of several runs against steps, one panel per metric.

Reads only what the runs wrote. A language-model run folder (``grpo llm train``) has
``metrics.jsonl`` with one record per ``step``, and ``summary.json`` with the greedy accuracy
before and after training (drawn at the first and last logged step). A classic-control run
folder (``grpo train``) has ``metrics.jsonl`` per iteration against ``env_steps`` and
``eval.jsonl`` (drawn as ``eval/return_mean``); its seconds per iteration are the differences of
``train_wall_s`` (``time/iteration_s``). A ``grpo compare`` folder stands for all its runs.
"""

from __future__ import annotations

import fnmatch
import math
import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from grpo.utils.io import read_json, read_jsonl

# Drawn when present, in this order, unless --metrics says otherwise.
DEFAULT_METRICS = (
    "reward/total/mean", "train/episode_return_mean", "eval/greedy_accuracy", "eval/return_mean",
    "train/accuracy", "kl/ref", "policy/entropy", "completions/mean_length", "train/episode_length_mean",
    "time/step_s", "time/iteration_s",
)
PLOT_FORMATS = (".png", ".svg")


@dataclass
class RunSeries:
    """One run's metrics: name -> (x [n], y [n]); ``x_label`` says what the steps count."""

    name: str
    x_label: str
    series: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)

    def add(self, metric: str, x: float, y: float) -> None:
        xs, ys = self.series.setdefault(metric, ([], []))
        xs.append(x)
        ys.append(y)


def _numbers(record: dict, skip: Sequence[str]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if k not in skip and isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(float(v))}


def _control_run(folder: Path, name: str) -> RunSeries:
    run = RunSeries(name, "env steps")
    wall = None
    for r in read_jsonl(folder / "metrics.jsonl", skip_bad_lines=True):
        x = r["env_steps"]
        for k, v in _numbers(r, ("iteration", "env_steps", "train_wall_s")).items():
            run.add(k, x, v)
        if wall is not None and "train_wall_s" in r:
            run.add("time/iteration_s", x, r["train_wall_s"] - wall)
        wall = r.get("train_wall_s")
    if (folder / "eval.jsonl").exists():
        for r in read_jsonl(folder / "eval.jsonl", skip_bad_lines=True):
            run.add("eval/return_mean", r["env_steps"], r["eval_return_mean"])
    return run


def _llm_run(folder: Path, name: str) -> RunSeries:
    run = RunSeries(name, "step")
    records = read_jsonl(folder / "metrics.jsonl", skip_bad_lines=True)
    for r in records:
        for k, v in _numbers(r, ("step",)).items():
            run.add(k, r["step"], v)
    summary = read_json(folder / "summary.json") if (folder / "summary.json").exists() else {}
    steps = [r["step"] for r in records]
    ends = {"accuracy_before": min(steps, default=0), "accuracy_after": max(steps, default=0)}
    for key, x in ends.items():
        if summary.get(key) is not None:
            run.add("eval/greedy_accuracy", x, float(summary[key]))
    # --env runs: the episodes played before and after training, beside those of every eval_every steps.
    for key, x in (("env_eval_before", min(steps, default=0)), ("env_eval_after", max(steps, default=0))):
        for k, v in _numbers(summary.get(key) or {}, ()).items():
            run.add(f"eval/{k}", x, v)
    for metric in [m for m in run.series if m.startswith("eval/")]:  # in step order, the ends included
        xs, ys = run.series[metric]
        pairs = sorted(zip(xs, ys), key=lambda p: p[0])
        run.series[metric] = ([p[0] for p in pairs], [p[1] for p in pairs])
    return run


def read_runs(folders: Sequence[str | Path]) -> list[RunSeries]:
    """Every folder's series; a ``grpo compare`` folder gives one per run it holds."""
    runs = []
    for given in folders:
        folder = Path(given)
        if not folder.is_dir():
            raise FileNotFoundError(f"run folder {given} does not exist")
        if (folder / "plan.json").exists():  # a comparison: its runs, named env/label/seed
            inner = sorted(p.parent for p in folder.glob("runs/*/*/*/metrics.jsonl"))
            runs += [_control_run(p, "/".join(p.relative_to(folder / "runs").parts)) for p in inner]
            continue
        if not (folder / "metrics.jsonl").exists():
            raise ValueError(f"{given} is not a run folder (no metrics.jsonl): give folders written by "
                             "grpo train, grpo llm train or grpo compare")
        first = next(iter(read_jsonl(folder / "metrics.jsonl", skip_bad_lines=True)), {})
        runs.append(_control_run(folder, str(given)) if "env_steps" in first else _llm_run(folder, str(given)))
    return runs


def choose_metrics(runs: Sequence[RunSeries], wanted: Sequence[str] | None = None) -> list[str]:
    """The metrics to draw: ``wanted`` (names or patterns such as ``reward/*``), else the defaults present."""
    present = list(dict.fromkeys(m for r in runs for m in r.series))
    if not wanted:
        chosen = [m for m in DEFAULT_METRICS if m in present]
        return chosen or present[:6]
    chosen = []
    for pattern in wanted:
        hits = [m for m in present if fnmatch.fnmatchcase(m, pattern)]
        if not hits:
            raise ValueError(f"--metrics {pattern}: no run logged it; logged: {', '.join(sorted(present))}")
        chosen += [m for m in hits if m not in chosen]
    return chosen


def plot_runs(runs: Sequence[RunSeries], metrics: Sequence[str], out: str | Path) -> list[tuple[str, str]]:
    """One panel per metric, one line per run, written to ``out`` (.png or .svg); returns the panels
    drawn as (metric, x axis)."""
    from grpo.experiments.plots import _colors, plt

    out = Path(out)
    if out.suffix.lower() not in PLOT_FORMATS:
        raise ValueError(f"--out {out}: unknown extension {out.suffix or '(none)'!r}; use .png or .svg")
    if not runs or not metrics:
        raise ValueError("nothing to plot: no run logged any metric")
    # A metric both sides log (kl/ref, policy/entropy) gets a panel per x axis: steps are not env steps.
    panels = [(m, x) for m in metrics for x in dict.fromkeys(r.x_label for r in runs if m in r.series)]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows), squeeze=False)
    colors = _colors([r.name for r in runs])
    for ax, (metric, x_label) in zip(axes.flat, panels):
        for r in runs:
            if metric in r.series and r.x_label == x_label:
                xs, ys = r.series[metric]
                ax.plot(xs, ys, color=colors[r.name], label=r.name, lw=1.5, marker="." if len(xs) < 30 else None)
        several = sum(1 for m, _ in panels if m == metric) > 1
        ax.set_title(f"{metric} ({x_label})" if several else metric, fontsize=10)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    named = {lbl: h for ax in axes.flat for h, lbl in zip(*ax.get_legend_handles_labels())}
    fig.legend(list(named.values()), list(named.keys()), loc="lower center", ncol=min(4, len(named)),
               fontsize=8, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.04 + 0.02 * math.ceil(len(named) / 4), 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return panels


def register(sub: argparse._SubParsersAction) -> None:
    """``grpo plot``."""
    p = sub.add_parser("plot", help="draw the logged metrics of several runs (either side) in one figure",
                       description="One panel per metric, one line per run, against steps (LLM) or env steps "
                                   "(classic control); reads only the run folders.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (grpo train, grpo llm train, grpo compare)")
    p.add_argument("--out", default="plot.png", metavar="FILE.png|.svg", help="figure to write")
    p.add_argument("--metrics", nargs="+", default=None, metavar="NAME",
                   help="metrics (or patterns such as 'reward/*') to draw; default: reward, accuracy, eval "
                        "return, KL, entropy, length and time per step, those logged")
    p.set_defaults(func=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    runs = read_runs(args.runs)
    metrics = choose_metrics(runs, args.metrics)
    panels = plot_runs(runs, metrics, args.out)
    print(f"{args.out}: {len(panels)} panel(s) ({', '.join(metrics)}) of {len(runs)} run(s)")
    return 0
