"""The comparison table and learning curves, computed from run folders (pure Python, no torch).

A *run* here is what one run folder holds: its ``summary.json`` (a dict) and the records of its
``eval.jsonl`` (a list of dicts with ``env_steps``, ``train_wall_s``, ``eval_return_mean``).
Runs are grouped by (env, label); a label is an algorithm name or a variant such as ``grpo G=4``.

Medians are over seeds. A seed that never stably solves counts as +infinity in the median of
``stable_solve_step`` (so 15k, 15k, 45k, 50k, never -> 45k), and the median is "never" when at
least half the seeds never solve.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from grpo.control.evaluation import stable_solve_step

# Envs registered without a reward_threshold get one here, so that "solved" means something.
# Pendulum-v1: -200 is the usual bar (rl-zoo's trained PPO/SAC agents reach about -150 to -200).
EXTRA_THRESHOLDS: dict[str, float] = {"Pendulum-v1": -200.0}


@dataclass
class Run:
    """One finished run: its label (the table's row name), summary and evaluations."""

    label: str
    summary: dict[str, Any]
    evals: list[dict[str, Any]]
    folder: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # the algorithm's config (config.json)

    @property
    def env(self) -> str:
        return self.summary["env"]


# What the paper's GRPO does (DeepSeekMath 4.1.2): outcome supervision, each output's loss
# averaged over its own tokens, then over the group. The tuned classic-control settings differ.
PAPER_MODE = "outcome, sequence-mean"
MODE_NOTE = ("GRPO mode: advantage estimator, loss aggregation. The paper's is outcome, sequence-mean "
             "(the group-normalised return on every step, each episode's loss averaged over its own steps); "
             "timestep normalises returns-to-go across the group at each time step, token-mean averages over "
             "every step of the batch (DAPO).")


def mode_of(run: Run) -> str | None:
    """How a GRPO run computed advantages and aggregated its loss, e.g. ``"timestep, token-mean"``;
    None for other algorithms and for runs whose config is unknown.

    >>> mode_of(Run("grpo", {"algo": "grpo"}, [], config={"advantage": "outcome", "aggregation": "sequence-mean"}))
    'paper: outcome, sequence-mean'
    >>> mode_of(Run("ppo", {"algo": "ppo"}, [], config={"aggregation": "token-mean"})) is None
    True
    """
    cfg = run.config
    if run.summary.get("algo") != "grpo" or "advantage" not in cfg or "aggregation" not in cfg:
        return None
    mode = f"{cfg['advantage']}, {cfg['aggregation']}"
    return f"paper: {mode}" if mode == PAPER_MODE else mode


def group_mode(runs: Sequence[Run]) -> str | None:
    """The mode of a group of runs (seeds); several are joined with " / " (a table row mixes them)."""
    modes = list(dict.fromkeys(m for m in (mode_of(r) for r in runs) if m is not None))
    return " / ".join(modes) or None


@dataclass
class Row:
    """One line of the table: a label on an env, summarised over its seeds."""

    env: str
    label: str
    seeds: int
    solved: int
    threshold: float | None
    stable_solve_step: float | None  # median; None: never
    stable_solve_min: int | None
    stable_solve_max: int | None
    final_eval: float | None
    train_wall_s: float | None
    steps_per_s: float | None
    param_count: int | None
    peak_rss_mb: float | None
    mode: str | None = None  # GRPO's advantage estimator and loss aggregation (mode_of)


def threshold_of(summary: dict[str, Any]) -> float | None:
    """The env's reward threshold, or the one this module supplies for envs without one."""
    value = summary.get("reward_threshold")
    return value if value is not None else EXTRA_THRESHOLDS.get(summary["env"])


def solve_step(run: Run) -> int | None:
    """The run's stable_solve_step against :func:`threshold_of` (recomputed from its evals)."""
    steps = [e["env_steps"] for e in run.evals]
    means = [e["eval_return_mean"] for e in run.evals]
    return stable_solve_step(steps, means, threshold_of(run.summary))


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that are not None; None if there are none.

    >>> median([3, None, 1, 2])
    2
    >>> median([1, 2, 3, 4])
    2.5
    >>> median([None]) is None
    True
    """
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def median_solve_step(steps: Sequence[int | None]) -> float | None:
    """Median over seeds with "never" (None) counted as +infinity; None if that median is infinite.

    >>> median_solve_step([15000, 15000, 45000, 50000, None])
    45000
    >>> median_solve_step([20000, None, None]) is None
    True
    >>> median_solve_step([10000, 20000, 30000, None])
    25000.0
    """
    if not steps:
        return None
    value = median([math.inf if s is None else s for s in steps])
    return None if value is None or math.isinf(value) else value


def group_runs(runs: Iterable[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs keyed by (env, label), in first-seen order."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.env, run.label), []).append(run)
    return groups


def summarize(runs: Sequence[Run]) -> Row:
    """One table row from the runs (seeds) of one label on one env."""
    first = runs[0].summary
    steps = [solve_step(r) for r in runs]
    solved = [s for s in steps if s is not None]
    pick = lambda key: median(r.summary.get(key) for r in runs)  # noqa: E731
    return Row(
        env=first["env"], label=runs[0].label, seeds=len(runs), solved=len(solved),
        threshold=threshold_of(first), stable_solve_step=median_solve_step(steps),
        stable_solve_min=min(solved) if solved else None, stable_solve_max=max(solved) if solved else None,
        final_eval=pick("final_eval"), train_wall_s=pick("train_wall_s"), steps_per_s=pick("steps_per_s"),
        param_count=first.get("param_count"), peak_rss_mb=pick("peak_rss_mb"), mode=group_mode(runs),
    )


def table(runs: Iterable[Run]) -> list[Row]:
    return [summarize(group) for group in group_runs(runs).values()]


# --------------------------------------------------------------------------------------------
# Learning curves
# --------------------------------------------------------------------------------------------
@dataclass
class Curve:
    """Median over seeds with the min-max band, one point per evaluation index.

    ``steps`` are the evaluation points (the same for every seed under the protocol);
    ``wall`` is the median over seeds of the train wall seconds at each point.
    """

    env: str
    label: str
    steps: list[int]
    wall: list[float]
    median: list[float]
    low: list[float]
    high: list[float]
    threshold: float | None = None  # the solve threshold (threshold_of)
    mode: str | None = None  # GRPO's advantage estimator and loss aggregation (mode_of)

    @property
    def name(self) -> str:
        """The label with the GRPO mode, as figures name a line: ``grpo (timestep, token-mean)``."""
        return f"{self.label} ({self.mode})" if self.mode else self.label


def curve(runs: Sequence[Run]) -> Curve:
    """The curve of one (env, label) group; evaluation points beyond the shortest run are dropped."""
    n = min(len(r.evals) for r in runs)
    points = [[r.evals[k] for r in runs] for k in range(n)]
    returns = [[e["eval_return_mean"] for e in point] for point in points]
    return Curve(
        env=runs[0].env, label=runs[0].label,
        steps=[int(median(e["env_steps"] for e in point)) for point in points],
        wall=[median(e["train_wall_s"] for e in point) for point in points],
        median=[median(r) for r in returns], low=[min(r) for r in returns], high=[max(r) for r in returns],
        threshold=threshold_of(runs[0].summary), mode=group_mode(runs),
    )


def curves(runs: Iterable[Run]) -> list[Curve]:
    return [curve(group) for group in group_runs(runs).values()]


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------
COLUMNS = [
    ("env", "env"), ("label", "algorithm"), ("mode", "GRPO mode"), ("solved", "seeds solved"),
    ("stable_solve_step", "median stable solve step"), ("final_eval", "median final eval"),
    ("train_wall_s", "median train wall (s)"), ("steps_per_s", "env steps/s"),
    ("param_count", "parameters"), ("peak_rss_mb", "peak RSS (MiB)"),
]


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) >= 100:
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def format_cells(row: Row) -> dict[str, str]:
    """Human-readable cells for the Markdown/terminal table."""
    cells = {key: _fmt(getattr(row, key)) for key, _ in COLUMNS}
    cells["solved"] = f"{row.solved}/{row.seeds}" + (f" (>= {row.threshold:g})" if row.threshold is not None else " (no threshold)")
    if row.stable_solve_step is None:
        cells["stable_solve_step"] = "never"
    elif row.stable_solve_min != row.stable_solve_max:
        cells["stable_solve_step"] = f"{_fmt(row.stable_solve_step)} ({_fmt(row.stable_solve_min)}-{_fmt(row.stable_solve_max)})"
    cells["steps_per_s"] = _fmt(row.steps_per_s, 0) if row.steps_per_s is not None else "-"
    return cells


def to_markdown(rows: Sequence[Row]) -> str:
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [head, rule]
    for row in rows:
        cells = format_cells(row)
        lines.append("| " + " | ".join(cells[key] for key, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n" + _note(rows)


def _note(rows: Sequence[Row]) -> str:
    """The footnote that says what a GRPO mode means, when the table has a GRPO row."""
    return f"\n{MODE_NOTE}\n" if any(r.mode for r in rows) else ""


def to_csv(rows: Sequence[Row]) -> str:
    """Machine-readable: raw numbers, empty for None."""
    buf = io.StringIO()
    fields = list(asdict(rows[0]).keys()) if rows else [f for f in Row.__dataclass_fields__]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else round(v, 4) if isinstance(v, float) else v
                         for k, v in asdict(row).items()})
    return buf.getvalue()


def to_text(rows: Sequence[Row]) -> str:
    """An aligned plain-text table for the terminal."""
    table_cells = [[title for _, title in COLUMNS]] + [[format_cells(r)[k] for k, _ in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in table_cells) for i in range(len(COLUMNS))]
    text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table_cells)
    return text + "\n" + _note(rows)
