"""Markdown tables from ``compare_trl.py``'s results.jsonl: per seed, then medians and ratios.

    .venv/bin/python benchmarks/llm/report.py runs/bench-llm/results.jsonl

Rows from runs before the launcher recorded them lack the all-problems accuracy, the load average
and the launcher's own peak RSS; those cells show "-".
"""

from __future__ import annotations

import json
import statistics
import sys


def _pct(r: dict, key: str) -> str:
    return f"{r[key]:.1%}" if r.get(key) is not None else "-"


def _gain(r: dict, prefix: str = "accuracy") -> float | None:
    before, after = r.get(f"{prefix}_before"), r.get(f"{prefix}_after")
    return None if before is None or after is None else 100 * (after - before)


def report(rows: list[dict]) -> str:
    out: list[str] = []
    systems = sorted({r["system"] for r in rows}, key=lambda s: s != "ours")
    out.append("| seed | system | test acc. before | after | gain (points) | all 8,100: before | after | "
               "s/step | peak RSS MiB | load 1m (start, end) |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["seed"], systems.index(r["system"]))):
        load = ", ".join(f"{x:.1f}" for x in r["loadavg_1m"]) if r.get("loadavg_1m") else "-"
        out.append(f"| {r['seed']} | {r['system']} | {_pct(r, 'accuracy_before')} | {_pct(r, 'accuracy_after')} | "
                   f"{_gain(r):+.1f} | {_pct(r, 'accuracy_all_before')} | {_pct(r, 'accuracy_all_after')} | "
                   f"{r['seconds_per_step']:.3f} | {r['peak_rss_mb']:.0f} | {load} |")
    med = {}
    for s in systems:
        rs = [r for r in rows if r["system"] == s]
        alls = [g for g in (_gain(r, "accuracy_all") for r in rs) if g is not None]
        med[s] = {"after": statistics.median(r["accuracy_after"] for r in rs),
                  "gain": statistics.median(_gain(r) for r in rs),
                  "gain_all": statistics.median(alls) if alls else None,
                  "sps": statistics.median(r["seconds_per_step"] for r in rs),
                  "rss": statistics.median(r["peak_rss_mb"] for r in rs), "n": len(rs),
                  "gains": sorted(round(_gain(r), 1) for r in rs)}
    out.append("")
    out.append("| system | seeds | median test acc. after | median gain (points) [all seeds] | median gain on all "
               "8,100 | median s/step | median peak RSS MiB |")
    out.append("|---|---|---|---|---|---|---|")
    for s, m in med.items():
        gain_all = f"{m['gain_all']:+.1f}" if m["gain_all"] is not None else "-"
        out.append(f"| {s} | {m['n']} | {m['after']:.1%} | {m['gain']:+.1f} {m['gains']} | {gain_all} | "
                   f"{m['sps']:.3f} | {m['rss']:.0f} |")
    if "ours" in med and "trl" in med:
        o, t = med["ours"], med["trl"]
        per_seed = {(r["seed"], r["system"]): r for r in rows}
        pairs = [(per_seed[(s, "ours")], per_seed[(s, "trl")]) for s in sorted({r["seed"] for r in rows})
                 if (s, "ours") in per_seed and (s, "trl") in per_seed]
        out.append("")
        out.append(f"- wall time per step, ours / TRL: **{o['sps'] / t['sps']:.2f}x** (target <= 0.5x)")
        out.append(f"- peak memory (RSS), ours / TRL: **{o['rss'] / t['rss']:.2f}x** (target <= 1x)")
        out.append(f"- greedy test accuracy after the run, ours - TRL: **{100 * (o['after'] - t['after']):+.1f} "
                   "points** (target >= 0)")
        if o["gain_all"] is not None and t["gain_all"] is not None:
            out.append(f"- gain on all 8,100 problems, ours - TRL: {o['gain_all'] - t['gain_all']:+.1f} points")
        if pairs:
            time_r = [a["seconds_per_step"] / b["seconds_per_step"] for a, b in pairs]
            rss_r = [a["peak_rss_mb"] / b["peak_rss_mb"] for a, b in pairs]
            wins = sum(a["accuracy_after"] > b["accuracy_after"] for a, b in pairs)
            ties = sum(a["accuracy_after"] == b["accuracy_after"] for a, b in pairs)
            out.append(f"- per seed (run back to back): time ratio min {min(time_r):.2f}, median "
                       f"{statistics.median(time_r):.2f}, max {max(time_r):.2f}; memory ratio min {min(rss_r):.2f}, "
                       f"max {max(rss_r):.2f}; test accuracy ours higher on {wins}, equal on {ties}, TRL higher on "
                       f"{len(pairs) - wins - ties} of {len(pairs)} seeds")
        launcher = [r["launcher_peak_rss_mb"] for r in rows if r.get("launcher_peak_rss_mb") is not None]
        if launcher:
            out.append(f"- launcher's own peak RSS: at most {max(launcher):.0f} MiB (below every child's)")
    return "\n".join(out)


def main(path: str) -> None:
    rows = [json.loads(line) for line in open(path) if line.strip()]
    print(report(rows))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/bench-llm/results.jsonl")
