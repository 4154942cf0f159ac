"""Learning-curve figures (matplotlib, Agg backend: no display needed), saved as PNG and SVG."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from grpo.experiments.table import Curve, Row  # noqa: E402

FORMATS = ("png", "svg")


def _save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(f".{ext}") for ext in FORMATS]
    for path in paths:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def _colors(labels: Sequence[str]) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {label: cycle[i % len(cycle)] for i, label in enumerate(dict.fromkeys(labels))}


def _draw(ax, curve: Curve, x: list[float], color: str) -> None:
    ax.plot(x, curve.median, color=color, label=curve.name, lw=1.8, marker="." if len(x) < 30 else None)
    ax.fill_between(x, curve.low, curve.high, color=color, alpha=0.18, lw=0)


def _y_limits(curves: Sequence[Curve], threshold: float | None) -> tuple[float, float]:
    """Show the threshold, and cut curves that fall far below every first evaluation: more than
    twice the rise from there to the top (a diverging policy would otherwise squash the others
    into a line; a learning curve's early dip stays in view)."""
    low = min(min(c.low) for c in curves)
    high = max(max(c.high) for c in curves)
    if threshold is not None:
        low, high = min(low, threshold), max(high, threshold)
    start = min(c.median[0] for c in curves)
    floor = start - 2.0 * (high - start)
    low = max(low, floor)
    pad = 0.05 * (high - low or 1.0)
    return low - pad, high + pad


def _return_axis(ax, env_curves: Sequence[Curve], ylabel: str) -> None:
    """An evaluation-return axis for one env's curves: solve threshold, y limits, label, grid."""
    threshold = env_curves[0].threshold
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=1)
    ax.set_ylim(*_y_limits(env_curves, threshold))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def plot_curves(curves: Sequence[Curve], stem: str | Path, title: str = "") -> list[Path]:
    """One row per env: evaluation return vs env steps (left) and vs train wall seconds (right).

    Lines are medians over seeds, bands span min to max; the dashed line is the solve threshold.
    Returns the paths written (``stem``.png and ``stem``.svg).
    """
    envs = list(dict.fromkeys(c.env for c in curves))
    colors = _colors([c.label for c in curves])
    fig, axes = plt.subplots(len(envs), 2, figsize=(11, 3.6 * len(envs)), squeeze=False)
    for (ax_steps, ax_wall), env in zip(axes, envs):
        env_curves = [c for c in curves if c.env == env]
        for c in env_curves:
            _draw(ax_steps, c, c.steps, colors[c.label])
            _draw(ax_wall, c, c.wall, colors[c.label])
        for ax in (ax_steps, ax_wall):
            _return_axis(ax, env_curves, f"{env}\neval return (greedy, 20 ep.)")
        ax_steps.set_xlabel("env steps")
        ax_wall.set_xlabel("train wall seconds (evaluation excluded)")
        ax_steps.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, Path(stem))


def plot_group_sweep(curves: Sequence[Curve], rows: Sequence[Row], stem: str | Path,
                     title: str = "GRPO group size sweep") -> list[Path]:
    """GRPO's group size G: curves per G (left) and median env steps to stable solve per G (right).

    ``curves`` and ``rows`` hold the sweep's labels (``grpo G=...``) on one env or several.
    """
    envs = list(dict.fromkeys(c.env for c in curves))
    colors = _colors([c.label for c in curves])
    fig, axes = plt.subplots(len(envs), 2, figsize=(11, 3.6 * len(envs)), squeeze=False)
    for (ax_curve, ax_bar), env in zip(axes, envs):
        env_curves = [c for c in curves if c.env == env]
        for c in env_curves:
            _draw(ax_curve, c, c.steps, colors[c.label])
        _return_axis(ax_curve, env_curves, f"{env}\neval return")
        ax_curve.set_xlabel("env steps")
        ax_curve.legend(loc="lower right", fontsize=8)
        env_rows = [r for r in rows if r.env == env]
        labels = [r.label for r in env_rows]
        # "never" is drawn as an empty bar at the budget and annotated.
        heights = [r.stable_solve_step or 0 for r in env_rows]
        bars = ax_bar.bar(labels, heights, color=[colors.get(lbl, "grey") for lbl in labels])
        for bar, row in zip(bars, env_rows):
            text = "never" if row.stable_solve_step is None else f"{row.solved}/{row.seeds}"
            ax_bar.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=8)
        ax_bar.set_ylabel("median env steps to stable solve")
        ax_bar.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, Path(stem))
