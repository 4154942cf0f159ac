"""Tables and figures from ``run.py``'s results.jsonl: memory, time per step, accuracy; GRPO/PPO ratios.

    .venv/bin/python benchmarks/llm_memory/plot.py runs/bench-llm-memory/results.jsonl \\
        --out benchmarks/llm_memory/results

writes ``report.md`` (the tables pasted into BENCHMARKS.md), ``summary.json``, ``accuracy.png/.svg``
(accuracy vs step and vs training wall time, tiny model) and ``memory.png/.svg`` (peak RSS bars).
Nothing here trains.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ORDER = ["grpo", "ppo", "ppo-shared", "grpo-beta0", "ppo-beta0"]
LABELS = {"grpo": "GRPO (beta 0.04: + reference)", "ppo": "PPO, separate critic (+ reference)",
          "ppo-shared": "PPO, value head on shared backbone (+ reference)", "grpo-beta0": "GRPO, beta 0 (no reference)",
          "ppo-beta0": "PPO, separate critic, beta 0 (no reference)"}
# Bytes per parameter in float32: weights 4; a trained one adds its gradient (4) and AdamW's two moments (8).
FROZEN_BYTES, TRAINED_BYTES = 4, 16
# GRPO/PPO pairs whose memory ratio is reported: (GRPO system, PPO system).
PAIRS = [("grpo", "ppo"), ("grpo-beta0", "ppo-beta0"), ("grpo", "ppo-shared")]


def model_state_mb(params: dict[str, int]) -> float:
    """Weights, gradients and AdamW state the run must hold, in MiB (float32)."""
    trained = params["policy"] + params["value_trained"]
    return (TRAINED_BYTES * trained + FROZEN_BYTES * params["reference"]) / 2**20


def summarise(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """model -> system -> medians over seeds."""
    out: dict[str, dict[str, dict]] = {}
    for model in sorted({r["model"] for r in rows}, key=lambda m: m != "tiny"):
        out[model] = {}
        for system in [s for s in ORDER if any(r["model"] == model and r["system"] == s for r in rows)]:
            rs = [r for r in rows if r["model"] == model and r["system"] == system]
            med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
            m = {"runs": len(rs), "seeds": sorted(r["seed"] for r in rs), "peak_rss_mb": med("peak_rss_mb"),
                 "floor_rss_mb": med("floor_rss_mb"),
                 "above_floor_mb": statistics.median(r["peak_rss_mb"] - r["floor_rss_mb"] for r in rs),
                 "median_step_s": med("median_step_s"), "model_state_mb": model_state_mb(rs[0]["params"]),
                 "params": rs[0]["params"], "steps": rs[0]["steps"],
                 "loadavg_1m": [min(min(r["loadavg_1m"]) for r in rs), max(max(r["loadavg_1m"]) for r in rs)]}
            if rs[0]["accuracy_after"] is not None:
                m.update(accuracy_before=med("accuracy_before"), accuracy_after=med("accuracy_after"),
                         accuracy_after_all=sorted(r["accuracy_after"] for r in rs))
            if all("peak_cuda_allocated_mb" in r for r in rs):
                m["peak_cuda_allocated_mb"] = med("peak_cuda_allocated_mb")
            out[model][system] = m
    return out


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def report(summary: dict[str, dict[str, dict]]) -> str:
    lines: list[str] = []
    for model, systems in summary.items():
        any_ = next(iter(systems.values()))
        lines += [f"**{model}** ({any_['params']['policy'] / 1e6:.1f}M parameters, {any_['steps']} steps, "
                  f"medians over {', '.join(str(len(v['seeds'])) for v in systems.values())} runs)", ""]
        gpu = all("peak_cuda_allocated_mb" in v for v in systems.values())
        head = "| system | trained params | frozen params | model state MiB (computed) | peak RSS MiB | RSS above floor MiB | s/step |"
        head += " peak GPU MiB |" if gpu else ""
        acc = all("accuracy_after" in v for v in systems.values())
        head += " greedy acc. before -> after [per seed] |" if acc else ""
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for s, v in systems.items():
            p = v["params"]
            row = (f"| {LABELS[s]} | {(p['policy'] + p['value_trained']) / 1e6:.2f}M | {p['reference'] / 1e6:.2f}M | "
                   f"{v['model_state_mb']:.0f} | {v['peak_rss_mb']:.0f} | {v['above_floor_mb']:.0f} | "
                   f"{v['median_step_s']:.3f} |")
            row += f" {v['peak_cuda_allocated_mb']:.0f} |" if gpu else ""
            if acc:
                per = ", ".join(f"{a:.1%}" for a in v["accuracy_after_all"])
                row += f" {v['accuracy_before']:.1%} -> {v['accuracy_after']:.1%} [{per}] |"
            lines.append(row)
        lines += ["", "| GRPO / PPO | peak RSS | RSS above floor | model state (computed) | s/step |", "|---|---|---|---|---|"]
        for g, q in PAIRS:
            if g in systems and q in systems:
                a, b = systems[g], systems[q]
                lines.append(f"| {g} / {q} | {_ratio(a['peak_rss_mb'], b['peak_rss_mb'])} | "
                             f"{_ratio(a['above_floor_mb'], b['above_floor_mb'])} | "
                             f"{_ratio(a['model_state_mb'], b['model_state_mb'])} | "
                             f"{_ratio(a['median_step_s'], b['median_step_s'])} |")
        lo = min(v["loadavg_1m"][0] for v in systems.values())
        hi = max(v["loadavg_1m"][1] for v in systems.values())
        lines += ["", f"Floor (RSS after imports, shared by every run): {any_['floor_rss_mb']:.0f} MiB. "
                  f"1-minute load average during the runs: {lo:.1f} to {hi:.1f} on 2 cores.", ""]
    return "\n".join(lines)


def plot_accuracy(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["model"] == "tiny" and r["accuracy_after"] is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, system in enumerate(s for s in ORDER if any(r["system"] == s for r in rows)):
        color = f"C{i}"
        runs = [r for r in rows if r["system"] == system]
        for j, r in enumerate(runs):
            steps = [c["step"] for c in r["curve"]]
            acc = [100 * c["accuracy"] for c in r["curve"]]
            label = LABELS[system] if j == 0 else None
            axes[0].plot(steps, acc, color=color, alpha=0.8, label=label)
            axes[1].plot([c["wall_s"] for c in r["curve"]], acc, color=color, alpha=0.8, label=label)
    axes[0].set_xlabel("step (32 prompts x 8 samples)")
    axes[1].set_xlabel("training wall time, s (evaluation excluded; 1 thread, shared machine)")
    for ax in axes:
        ax.set_ylabel("greedy accuracy, 200 test prompts (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Tiny model on two-digit addition: GRPO vs PPO (one line per seed)")
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(out / f"accuracy.{ext}", dpi=120)
    plt.close(fig)


def plot_memory(summary: dict[str, dict[str, dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(6 * len(summary), 4.5), squeeze=False)
    for ax, (model, systems) in zip(axes[0], summary.items()):
        names = list(systems)
        x = range(len(names))
        floor = [systems[s]["floor_rss_mb"] for s in names]
        above = [systems[s]["above_floor_mb"] for s in names]
        ax.bar(x, floor, color="0.8", label="floor: Python + torch + transformers")
        ax.bar(x, above, bottom=floor, color=[f"C{ORDER.index(s)}" for s in names], label="above the floor")
        ax.scatter(x, [f + systems[s]["model_state_mb"] for f, s in zip(floor, names)], marker="_", s=400,
                   color="k", zorder=3, label="floor + computed model state")
        for xi, s in zip(x, names):
            ax.text(xi, systems[s]["peak_rss_mb"], f"{systems[s]['peak_rss_mb']:.0f}", ha="center", va="bottom",
                    fontsize=8)
        ax.set_xticks(list(x), [s.replace("-", "\n") for s in names], fontsize=8)
        ax.set_ylabel("peak RSS, MiB")
        ax.set_title(f"{model} ({next(iter(systems.values()))['params']['policy'] / 1e6:.1f}M params)")
        ax.set_ylim(0, 1.3 * max(systems[s]["peak_rss_mb"] for s in names))  # room for the legend
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.suptitle("Peak process memory, GRPO vs PPO (CPU, float32, each run in a fresh process)")
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(out / f"memory.{ext}", dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="?", default="runs/bench-llm-memory/results.jsonl")
    p.add_argument("--out", default="benchmarks/llm_memory/results")
    args = p.parse_args()
    rows = [json.loads(line) for line in open(args.results) if line.strip()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = report(summary)
    (out / "report.md").write_text(text + "\n")
    print(text)
    if any(r["model"] == "tiny" and r["accuracy_after"] is not None for r in rows):
        plot_accuracy(rows, out)
    plot_memory(summary, out)


if __name__ == "__main__":
    main()
