"""Benchmark launcher: our GRPO, PPO and naive-grpo vs Stable-Baselines3 PPO (rl-zoo), side by side.

    python benchmarks/control.py                      # the full suite (BENCHMARKS.md), resumable
    python benchmarks/control.py --envs CartPole-v1   # one env
    python benchmarks/report.py                       # tables and figures from the results

Every (env, system, seed) is one process; ``--jobs`` of them run at a time, ordered seed by seed
so that the systems of an env share the machine's load alike. Results go to ``--out`` (run
folders, table, curves: ``grpo.experiments.compare``); the report lives in benchmarks/report.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpo.experiments.compare import RunSpec, available_cpus, compare, plan

# Budgets in env steps. rl-zoo trains PPO for 1e5 (CartPole, Pendulum) and 1e6 (Acrobot,
# MountainCar, LunarLander) steps; the last three are cut here (to 10%, 10% and 30%) so that
# 4 systems x 5 seeds fit on 2 cores in about two hours (BENCHMARKS.md states the cuts).
BUDGETS = {
    "CartPole-v1": 100_000,
    "Acrobot-v1": 100_000,
    "MountainCar-v0": 100_000,
    "LunarLander-v3": 300_000,
    "Pendulum-v1": 100_000,
}
SYSTEMS = ("grpo", "ppo", "naive-grpo", "sb3-ppo")
OURS = ("grpo", "ppo", "naive-grpo")


def sb3_runner() -> str:
    from peers import sb3_ppo  # benchmarks/ is on sys.path when this file is run as a script

    return f"{sb3_ppo.__name__}:run"


def suite(envs: list[str], systems: list[str], seeds: list[int], budgets: dict[str, int]) -> list[RunSpec]:
    """Env-major, then seed-major, systems interleaved within a seed."""
    specs = []
    for env in envs:
        for seed in seeds:
            ours = [s for s in systems if s in OURS]
            specs += plan([env], ours, [seed], budgets[env]) if ours else []
            if "sb3-ppo" in systems:
                specs.append(RunSpec("sb3-ppo", "sb3-ppo", env, seed, budgets[env], runner=sb3_runner()))
    return specs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--envs", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    p.add_argument("--total-steps", type=int, default=None, help="override every env's budget")
    p.add_argument("--jobs", type=int, default=available_cpus())
    p.add_argument("--out", default="runs/bench-control", help="results folder (run folders are large: not committed)")
    p.add_argument("--resume", action="store_true", help="keep the finished runs in --out")
    args = p.parse_args(argv)
    budgets = {env: args.total_steps or BUDGETS[env] for env in args.envs}
    specs = suite(args.envs, args.systems, list(range(args.seeds)), budgets)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.resume:
        p.error(f"{out} is not empty: pass --resume to finish it, or another --out")
    print(f"{len(specs)} runs, {args.jobs} at a time -> {out}/", flush=True)
    result = compare(specs, out, args.jobs, resume=args.resume, meta={"command": ["python", *sys.argv], "budgets": budgets})
    print((out / "table.md").read_text())
    print(f"wall {result['meta']['wall_s']} s; now: python benchmarks/report.py --runs {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
