"""Benchmark report: tables, ratios against SB3, GRPO vs PPO memory, curves, from a launcher's results.

    python benchmarks/report.py --runs runs/bench-control --out benchmarks/results

Writes into ``--out``: control.md (every table, pasted into BENCHMARKS.md), control_curves.png/.svg,
control_summary.json (rows, per-run summaries, host and load). Nothing here trains.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

from grpo.experiments import plots, table
from grpo.experiments.compare import load_plan, load_runs
from grpo.utils.io import read_json, write_json

PEER = "sb3-ppo"
OURS = ("grpo", "ppo", "naive-grpo")

# Peak RSS of a process that imports what every run imports and builds one env, then stops:
# the floor under every run's peak RSS.
FLOOR_SCRIPT = """
import grpo.control.train, gymnasium as gym
from grpo.utils.runtime import peak_rss_mb
gym.make("{env}").reset(seed=0)
print(peak_rss_mb())
"""


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def fmt(x, digits: int = 0) -> str:
    return "never" if x is None else f"{x:,.{digits}f}"


def ratios_table(rows: list[table.Row]) -> str:
    """Ours over SB3's, per env: env steps to stable solve, train wall, throughput."""
    lines = ["| env | algorithm | median stable solve step (ours / SB3) | ratio | median train wall s (ours / SB3) "
             "| ratio | env steps/s (ours / SB3) | ratio |", "|---|---|---|---|---|---|---|---|"]
    by_key = {(r.env, r.label): r for r in rows}
    for env in dict.fromkeys(r.env for r in rows):
        peer = by_key.get((env, PEER))
        if peer is None:
            continue
        for label in OURS:
            ours = by_key.get((env, label))
            if ours is None:
                continue
            lines.append(
                f"| {env} | {label} | {fmt(ours.stable_solve_step)} / {fmt(peer.stable_solve_step)} "
                f"| {ratio(ours.stable_solve_step, peer.stable_solve_step)} "
                f"| {fmt(ours.train_wall_s, 1)} / {fmt(peer.train_wall_s, 1)} | {ratio(ours.train_wall_s, peer.train_wall_s)} "
                f"| {fmt(ours.steps_per_s)} / {fmt(peer.steps_per_s)} | {ratio(ours.steps_per_s, peer.steps_per_s)} |")
    return "\n".join(lines) + "\n"


def memory_table(rows: list[table.Row], runs: list[table.Run], floors: dict[str, float], root: Path) -> str:
    """GRPO vs PPO: trainable parameters, model state bytes, and peak RSS above the process floor."""
    lines = ["| env | algorithm | trainable params | frozen params (GRPO reference) | model state KiB "
             "(weights, grads, Adam; + reference) | median peak RSS MiB | above the floor MiB |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        if row.label not in ("grpo", "ppo", PEER):
            continue
        folder = next(r.folder for r in runs if r.env == row.env and r.label == row.label)
        frozen = 0
        if row.label == "grpo":  # the reference policy exists only when beta > 0
            cfg = read_json(root / folder / "config.json")["algo_config"]
            frozen = row.param_count if cfg.get("beta", 0) > 0 else 0
        state_kib = (row.param_count * 16 + frozen * 4) / 1024
        floor = floors.get(row.env)
        above = f"{row.peak_rss_mb - floor:.1f}" if floor is not None and row.peak_rss_mb is not None else "-"
        lines.append(f"| {row.env} | {row.label} | {row.param_count:,} | {frozen:,} | {state_kib:.1f} "
                     f"| {row.peak_rss_mb:.1f} | {above} |")
    return "\n".join(lines) + "\n"


def rss_floor(env: str) -> float:
    out = subprocess.run([sys.executable, "-c", FLOOR_SCRIPT.format(env=env)], check=True, capture_output=True, text=True)
    return round(float(out.stdout.strip().splitlines()[-1]), 1)


def per_seed_table(runs: list[table.Run]) -> str:
    """Every run: seed, stable solve step, final eval, train wall (for the CartPole targets)."""
    lines = ["| env | algorithm | seed | stable solve step | final eval | train wall s | env steps/s |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        s = r.summary
        lines.append(f"| {r.env} | {r.label} | {s['seed']} | {fmt(table.solve_step(r))} | {s['final_eval']:.1f} "
                     f"| {s['train_wall_s']:.1f} | {s['steps_per_s']:,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="runs/bench-control", help="the launcher's --out")
    p.add_argument("--out", default="benchmarks/results", help="where the report goes (committed)")
    p.add_argument("--name", default="control", help="file name prefix")
    args = p.parse_args(argv)
    root, out = Path(args.runs), Path(args.out)
    plan_meta = read_json(root / "plan.json")["meta"]
    specs = load_plan(root)
    runs = load_runs(root, specs)
    rows = table.table(runs)
    curves = table.curves(runs)
    envs = list(dict.fromkeys(r.env for r in rows))
    floors = {env: rss_floor(env) for env in envs} if {"grpo", "ppo"} <= {r.label for r in rows} else {}
    summary = read_json(root / "summary.json") if (root / "summary.json").exists() else {}
    meta = summary.get("meta", plan_meta)
    figures = plots.plot_curves(curves, out / f"{args.name}_curves")
    sweep = [c.label for c in curves if c.label.startswith("grpo G=")]
    if sweep:
        figures += plots.plot_group_sweep([c for c in curves if c.label in sweep],
                                          [r for r in rows if r.label in sweep], out / f"{args.name}_group_sweep")
    has_peer = any(r.label == PEER for r in rows)
    has_pair = {"grpo", "ppo"} <= {r.label for r in rows}
    sections = [
        f"Host: {meta.get('host_before', {}).get('cpus')} CPUs, torch {meta.get('host_before', {}).get('torch')}; "
        f"load average (1, 5, 15 min) before {meta.get('host_before', {}).get('loadavg')}, "
        f"after {meta.get('host_after', {}).get('loadavg')}; {meta.get('jobs')} runs at a time; "
        f"suite wall {meta.get('wall_s')} s; started {meta.get('host_before', {}).get('time')}.\n",
        "### All systems\n\n" + table.to_markdown(rows),
        ("### Ours over Stable-Baselines3 PPO (ratios of medians; < 1 is better for steps and wall, > 1 for steps/s)\n\n"
         + ratios_table(rows)) if has_peer else "",
        ("### Memory: GRPO vs PPO\n\n" + memory_table(rows, runs, floors, root)
         + "\nFloor = peak RSS of a process that only imports torch, gymnasium and grpo and builds the env: "
         + ", ".join(f"{env} {mb:.1f} MiB" for env, mb in floors.items()) + ".\n") if has_pair else "",
        "### Every run\n\n" + per_seed_table(runs),
    ]
    sections = [s for s in sections if s]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.md").write_text("\n".join(sections))
    write_json(out / f"{args.name}_summary.json", {
        "meta": meta, "rss_floor_mb": floors, "rows": [dataclasses.asdict(r) for r in rows],
        "runs": [{"label": r.label, "stable_solve_step_table": table.solve_step(r), **r.summary} for r in runs],
        "curves": [dataclasses.asdict(c) for c in curves]})
    print((out / f"{args.name}.md").read_text())
    print("figures:", ", ".join(str(f) for f in figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
