"""Markdown tables from ``compare_trl.py``'s results.jsonl: per seed, then medians and ratios.

    .venv/bin/python benchmarks/llm/report.py runs/bench-llm/results.jsonl
"""

from __future__ import annotations

import json
import statistics
import sys


def main(path: str) -> None:
    rows = [json.loads(line) for line in open(path) if line.strip()]
    systems = sorted({r["system"] for r in rows}, key=lambda s: s != "ours")
    print("| seed | system | greedy acc. before | after | gain (points) | s/step | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["seed"], systems.index(r["system"]))):
        gain = 100 * (r["accuracy_after"] - r["accuracy_before"])
        print(f"| {r['seed']} | {r['system']} | {r['accuracy_before']:.1%} | {r['accuracy_after']:.1%} | {gain:+.1f} | "
              f"{r['seconds_per_step']:.3f} | {r['peak_rss_mb']:.0f} |")
    med = {}
    for s in systems:
        rs = [r for r in rows if r["system"] == s]
        med[s] = {"after": statistics.median(r["accuracy_after"] for r in rs),
                  "gain": statistics.median(100 * (r["accuracy_after"] - r["accuracy_before"]) for r in rs),
                  "sps": statistics.median(r["seconds_per_step"] for r in rs),
                  "rss": statistics.median(r["peak_rss_mb"] for r in rs), "n": len(rs),
                  "gains": sorted(round(100 * (r["accuracy_after"] - r["accuracy_before"]), 1) for r in rs)}
    print()
    print("| system | seeds | median greedy acc. after | median gain (points) [all] | median s/step | median peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for s, m in med.items():
        print(f"| {s} | {m['n']} | {m['after']:.1%} | {m['gain']:+.1f} {m['gains']} | {m['sps']:.3f} | {m['rss']:.0f} |")
    if "ours" in med and "trl" in med:
        o, t = med["ours"], med["trl"]
        print()
        print(f"- wall time per step, ours / TRL: **{o['sps'] / t['sps']:.2f}x** (target <= 0.5x)")
        print(f"- peak memory (RSS), ours / TRL: **{o['rss'] / t['rss']:.2f}x** (target <= 1x)")
        print(f"- greedy accuracy after 200 steps, ours - TRL: **{100 * (o['after'] - t['after']):+.1f} points** "
              "(target >= 0)")
        per_seed = {(r["seed"], r["system"]): r for r in rows}
        seeds = sorted({r["seed"] for r in rows})
        ratios = [per_seed[(s, "ours")]["seconds_per_step"] / per_seed[(s, "trl")]["seconds_per_step"]
                  for s in seeds if (s, "ours") in per_seed and (s, "trl") in per_seed]
        if ratios:
            print(f"- per-seed time ratios (same seed, run back to back): min {min(ratios):.2f}, "
                  f"median {statistics.median(ratios):.2f}, max {max(ratios):.2f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/bench-llm/results.jsonl")
