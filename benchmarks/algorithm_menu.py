"""Benchmark of the algorithm menu (docs/algorithms.md): each entry against the default, side by side.

    python benchmarks/algorithm_menu.py control --entries grpo rloo cispo --seeds 5   # CartPole + Acrobot
    python benchmarks/algorithm_menu.py llm --entries grpo rloo cispo --seeds 5 --steps 60
    python benchmarks/algorithm_menu.py report                                          # table + plot

Classic control: every entry is GRPO with the env's tuned settings (``grpo.control.defaults``) and
one option changed; the protocol of /work/shared (evaluation every 5,000 steps on 20 greedy
episodes, ``stable_solve_step``, training wall time), through :mod:`grpo.experiments.compare`
(one process per run, entries interleaved seed by seed so that they share the machine's load).
An outcome estimator replaces the tuned ``advantage="timestep"``; its baseline row is ``outcome``
(GRPO's outcome advantage, the estimator ``grpo``). Language models: ``grpo llm train`` on the
built-in addition task with the tiny model, one process per (entry, seed), entries alternated;
held-out greedy accuracy after the same number of steps, and seconds per step.

Results: ``--out`` (default benchmarks/results/algorithm_menu/): control/ (compare's folder),
llm.json, and ``report`` writes menu.json, menu.md and menu.png from both.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

# name -> (control overrides, LLM flags). None: the entry has no meaning on that side.
ENTRIES: dict[str, tuple[dict | None, list[str] | None]] = {
    "grpo": ({}, []),  # the defaults: tuned control GRPO (timestep advantage, clip); LLM GRPO (paper)
    "outcome": ({"advantage": "outcome"}, None),  # control baseline row of the outcome estimators
    "rloo": ({"advantage": "rloo"}, ["--advantage-estimator", "rloo"]),
    "reinforce++": ({"advantage": "reinforce++"}, ["--advantage-estimator", "reinforce++"]),
    "reinforce++-baseline": ({"advantage": "reinforce++-baseline"}, ["--advantage-estimator", "reinforce++-baseline"]),
    "remax": ({"advantage": "remax"}, ["--advantage-estimator", "remax"]),
    "opo": ({"advantage": "opo"}, ["--advantage-estimator", "opo"]),
    "grpo-passk": ({"advantage": "grpo-passk"}, ["--advantage-estimator", "grpo-passk"]),
    "gdpo": ({"advantage": "gdpo"}, ["--advantage-estimator", "gdpo"]),
    "clip-higher": ({"policy_loss": "clip-higher"}, ["--policy-loss", "clip-higher"]),
    "dual-clip": ({"policy_loss": "dual-clip"}, ["--policy-loss", "dual-clip"]),
    "gspo": ({"policy_loss": "gspo"}, ["--policy-loss", "gspo"]),
    "cispo": ({"policy_loss": "cispo"}, ["--policy-loss", "cispo"]),
    "gmpo": ({"policy_loss": "gmpo"}, ["--policy-loss", "gmpo"]),
    "sapo": ({"policy_loss": "sapo"}, ["--policy-loss", "sapo"]),
    "clip-cov": ({"policy_loss": "clip-cov"}, ["--policy-loss", "clip-cov"]),
    "kl-cov": ({"policy_loss": "kl-cov"}, ["--policy-loss", "kl-cov"]),
    "dppo-tv": ({"policy_loss": "dppo-tv"}, ["--policy-loss", "dppo-tv"]),
    "top-entropy": ({"token_selection": "top-entropy"}, ["--token-selection", "top-entropy"]),
    "kl-full": ({"kl_estimator": "full"}, ["--kl-estimator", "full"]),  # the exact KL instead of k3
    "token-sum": ({"aggregation": "token-sum"}, ["--aggregation", "token-sum"]),
    "seq-mean-token-sum": ({"aggregation": "seq-mean-token-sum"}, ["--aggregation", "seq-mean-token-sum"]),
    "seq-mean-token-sum-norm": ({"aggregation": "seq-mean-token-sum-norm"},
                                ["--aggregation", "seq-mean-token-sum-norm"]),
}
ENVS = ("CartPole-v1", "Acrobot-v1")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "algorithm_menu"


def run_control(args: argparse.Namespace) -> None:
    from grpo.experiments.compare import RunSpec, compare

    steps = dict(args.env_steps)
    specs = [RunSpec(name, "grpo", env, seed, steps.get(env, args.total_steps), dict(ENTRIES[name][0]))
             for env in args.envs for seed in range(args.seeds) for name in args.entries
             if ENTRIES[name][0] is not None]
    compare(specs, args.out / "control", jobs=args.jobs, progress=False, resume=args.resume,
            meta={"command": " ".join(sys.argv), "total_steps": {e: steps.get(e, args.total_steps) for e in args.envs}})


def run_llm(args: argparse.Namespace) -> None:
    path = args.out / "llm.json"
    results = json.loads(path.read_text()) if args.resume and path.exists() else []
    done = {(r["entry"], r["seed"]) for r in results}
    for seed in range(args.seeds):
        for name in args.entries:  # alternated: each seed runs every entry before the next seed
            flags = ENTRIES[name][1]
            if flags is None or (name, seed) in done:
                continue
            out = args.out / "llm_runs" / name / f"seed{seed}"
            cmd = [sys.executable, "-m", "grpo.cli", "llm", "train", "--steps", str(args.steps), "--seed", str(seed),
                   "--threads", "1", "--out", str(out), "--overwrite", "--progress", "false", "--report-to", "none",
                   "--eval-limit", str(args.eval_limit), *args.llm_args, *flags]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            summary = json.loads((out / "summary.json").read_text())
            results.append({"entry": name, "seed": seed, "wall_s": round(time.perf_counter() - t0, 1),
                            "command": " ".join(cmd[1:]), **{k: summary[k] for k in (
                                "accuracy_before", "accuracy_after", "seconds_per_step", "train_seconds")}})
            path.write_text(json.dumps(results, indent=1))
            print(f"{name} seed {seed}: {summary['accuracy_before']:.3f} -> {summary['accuracy_after']:.3f} "
                  f"({summary['seconds_per_step']:.2f} s/step)", flush=True)


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _k(step: float | None) -> str:
    return "-" if step is None else f"{step / 1000:.0f}k"


def _collect(out: Path) -> tuple[dict[str, dict], dict[str, int], float | None]:
    """entry -> {env or "llm": per-seed lists (seed order)}; env -> its budget; the LLM accuracy before."""
    rows: dict[str, dict] = {}
    budgets: dict[str, int] = {}
    control = out / "control" / "summary.json"
    if control.exists():
        for run in sorted(json.loads(control.read_text())["runs"], key=lambda r: r["seed"]):
            env = run["env_id"] if "env_id" in run else run["folder"].split("/")[1]
            budgets[env] = run["total_steps"]
            r = rows.setdefault(run["label"], {}).setdefault(env, {"solve": [], "final": [], "wall": []})
            r["solve"].append(run.get("stable_solve_step_table"))
            r["final"].append(run.get("final_eval"))
            r["wall"].append(run.get("train_wall_s"))
    before = None
    llm = out / "llm.json"
    if llm.exists():
        for res in sorted(json.loads(llm.read_text()), key=lambda r: r["seed"]):
            r = rows.setdefault(res["entry"], {}).setdefault("llm", {"acc": [], "lift": [], "sps": []})
            r["acc"].append(res["accuracy_after"])
            r["lift"].append(res["accuracy_after"] - res["accuracy_before"])
            r["sps"].append(res["seconds_per_step"])
            before = res["accuracy_before"]
    return rows, budgets, before


def report(args: argparse.Namespace) -> None:
    rows, budgets, before = _collect(args.out)
    envs = [e for e in ENVS if any(e in v for v in rows.values())]
    head = ["entry"] + [f"{e} solved / median stable solve / median final / median wall s" for e in envs]
    has_llm = any("llm" in v for v in rows.values())
    head += ["LLM median acc after (lift) / s per step"] if has_llm else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    detail = {e: [f"\n{e}, {budgets[e]:,} env steps: stable solve step per seed (- never)\n",
                  "| entry | stable solve step per seed | solved | median | median final | median train s |",
                  "|---|---|---|---|---|---|"] for e in envs}
    detail["llm"] = [f"\nLLM: held-out accuracy after, per seed (before: {100 * (before or 0):.1f}%)\n",
                     "| entry | accuracy after per seed | median (lift) | median s/step |", "|---|---|---|---|"]
    summary = {}
    for name in [n for n in ENTRIES if n in rows]:
        cells, s = [name], {}
        for e in envs:
            r = rows[name].get(e)
            if r is None:
                cells.append("")
                continue
            solved = [x for x in r["solve"] if x is not None]
            med = statistics.median([math.inf if x is None else x for x in r["solve"]])  # a seed never solved: inf
            med_solve = None if math.isinf(med) else med
            s[e] = {"solved": len(solved), "seeds": len(r["solve"]), "median_stable_solve_step": med_solve,
                    "median_final_eval": _median([x for x in r["final"] if x is not None]),
                    "median_train_wall_s": _median([x for x in r["wall"] if x is not None]), "solve_steps": r["solve"],
                    "budget": budgets[e]}
            cells.append(f"{len(solved)}/{len(r['solve'])} / {'never' if med_solve is None else f'{med_solve:,.0f}'} / "
                         f"{s[e]['median_final_eval']:.0f} / {s[e]['median_train_wall_s']:.0f}")
            detail[e].append(f"| {name} | {' '.join(_k(x) for x in r['solve'])} | {len(solved)}/{len(r['solve'])} | "
                             f"{'never' if med_solve is None else f'{med_solve:,.0f}'} | "
                             f"{s[e]['median_final_eval']:.0f} | {s[e]['median_train_wall_s']:.1f} |")
        if has_llm:
            r = rows[name].get("llm")
            if r:
                s["llm"] = {"median_accuracy_after": _median(r["acc"]), "median_lift": _median(r["lift"]),
                            "median_seconds_per_step": _median(r["sps"]), "accuracy_after": r["acc"], "seeds": len(r["acc"]),
                            "accuracy_before": before}
                cells.append(f"{100 * s['llm']['median_accuracy_after']:.1f}% ({100 * s['llm']['median_lift']:+.1f}) / "
                             f"{s['llm']['median_seconds_per_step']:.2f} (n={len(r['acc'])})")
                detail["llm"].append(f"| {name} | {' '.join(f'{100 * a:.0f}' for a in r['acc'])} | "
                                     f"{100 * s['llm']['median_accuracy_after']:.1f}% "
                                     f"({100 * s['llm']['median_lift']:+.1f}) | {s['llm']['median_seconds_per_step']:.2f} |")
            else:
                cells.append("")
        summary[name] = s
        lines.append("| " + " | ".join(cells) + " |")
    for key in [*envs, "llm"] if has_llm else envs:
        lines += detail[key]
    (args.out / "menu.md").write_text("\n".join(lines) + "\n")
    (args.out / "menu.json").write_text(json.dumps(summary, indent=1))
    _plot(summary, envs, args.out / "menu.png")
    print("\n".join(lines))


def _plot(summary: dict, envs: list[str], path: Path) -> None:
    """One figure: per env, each seed's stable solve step (x: never within the budget) and the median
    (bar); for the LLM, each seed's held-out accuracy and the median (bar), the accuracy before dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [*envs, "llm"] if any("llm" in v for v in summary.values()) else list(envs)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 0.3 * len(summary) + 1.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        names = [n for n in summary if key in summary[n]]
        for i, n in enumerate(names):
            r, color = summary[n][key], "tab:gray" if n in ("grpo", "outcome") else "tab:blue"
            if key == "llm":
                ax.barh(i, 100 * r["median_accuracy_after"], color=color, alpha=0.5)
                acc = r["accuracy_after"]
                ax.plot([100 * a for a in acc], [i + _jitter(j) for j in range(len(acc))], "k.", ms=4)
            else:
                never = 1.08 * r["budget"]
                ax.barh(i, r["median_stable_solve_step"] or never, color=color, alpha=0.5)
                xs = r["solve_steps"]
                for j, x in enumerate(xs):  # one mark per seed, seeds spread vertically
                    ax.plot(never if x is None else x, i + _jitter(j), "rx" if x is None else "k.", ms=4)
        if key == "llm":
            before = next(summary[n]["llm"]["accuracy_before"] for n in names)
            ax.axvline(100 * before, color="k", ls="--", lw=0.8)
            ax.set_xlim(left=100 * before - 5)
            ax.set_xlabel("held-out accuracy after, % (dashed: before)")
            ax.set_title("tiny addition model, 30 steps (higher is better)", fontsize=9)
        else:
            ax.axvline(next(summary[n][key]["budget"] for n in names), color="r", ls=":", lw=0.8)
            ax.set_xlabel("stable solve step (x: never within the budget)")
            ax.set_title(f"{key} (lower is better)", fontsize=9)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _jitter(seed: int) -> float:
    return 0.08 * (seed - 2)


def _env_steps(text: str) -> tuple[str, int]:
    env, _, n = text.partition("=")
    if env not in ENVS or not n.isdigit():
        raise argparse.ArgumentTypeError(f"--env-steps {text!r}: expected ENV=N with ENV one of {', '.join(ENVS)}")
    return env, int(n)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("part", choices=["control", "llm", "report"])
    p.add_argument("--entries", nargs="+", default=list(ENTRIES), choices=list(ENTRIES))
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    p.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    p.add_argument("--total-steps", type=int, default=100_000, help="control: env steps per run")
    p.add_argument("--env-steps", nargs="+", default=[], type=_env_steps, metavar="ENV=N",
                   help="control: env steps per run for these envs instead of --total-steps")
    p.add_argument("--jobs", type=int, default=1, help="control: runs at a time")
    p.add_argument("--steps", type=int, default=200, help="llm: policy updates per run (the demo's 200)")
    p.add_argument("--eval-limit", type=int, default=200, help="llm: held-out prompts evaluated")
    p.add_argument("--llm-args", nargs=argparse.REMAINDER, default=[], help="llm: extra flags for every run")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--resume", action="store_true", help="keep finished runs")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    {"control": run_control, "llm": run_llm, "report": report}[args.part](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
