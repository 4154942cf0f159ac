"""The TRL benchmark's launcher and report: the launcher stays light (children's peak RSS is their own)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "llm"

# Runs compare_trl.main() as the launcher, in a fresh interpreter, with every child process faked:
# what the launcher imports on its own is what is left in sys.modules.
LAUNCHER = r"""
import json, subprocess, sys, types
sys.path.insert(0, {bench!r})
import compare_trl

calls = []
def fake_run(cmd, **kw):
    calls.append(cmd)
    if "--resolve-model" in cmd:
        return types.SimpleNamespace(stdout="building...\nMODEL /some/tiny\n", stderr="", returncode=0)
    system, seed = cmd[cmd.index("--child") + 1], int(cmd[cmd.index("--seed") + 1])
    res = dict(system=system, seed=seed, accuracy_before=0.3, accuracy_after=0.5, train_seconds=2.0,
               seconds_per_step=0.1 if system == "ours" else 0.3, peak_rss_mb=500.0 if system == "ours" else 700.0)
    return types.SimpleNamespace(stdout="RESULT " + json.dumps(res) + "\n", stderr="", returncode=0)

subprocess.run = fake_run
sys.argv = ["compare_trl.py", "--seeds", "0", "1", "--steps", "3", "--out", {out!r}]
compare_trl.main()
heavy = sorted(m for m in ("torch", "transformers", "trl", "grpo.llm.modeling.tiny") if m in sys.modules)
print("CHECK " + json.dumps({{"heavy": heavy, "calls": calls}}))
"""


def test_launcher_never_imports_torch_and_builds_the_model_in_a_child(tmp_path):
    code = LAUNCHER.format(bench=str(BENCH), out=str(tmp_path / "bench"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    check = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("CHECK "))[6:])
    assert check["heavy"] == []
    calls = check["calls"]
    assert "--resolve-model" in calls[0]  # the tiny model is found (or built) by a child
    children = calls[1:]
    assert [(c[c.index("--child") + 1], c[c.index("--seed") + 1]) for c in children] == [
        ("ours", "0"), ("trl", "0"), ("ours", "1"), ("trl", "1")]  # interleaved seed by seed
    assert all(c[c.index("--model") + 1] == "/some/tiny" for c in children)
    assert all(c[c.index("--lr-schedule") + 1] == "linear" for c in children)  # one schedule, both systems
    rows = [json.loads(line) for line in (tmp_path / "bench" / "results.jsonl").read_text().splitlines()]
    assert all(0 < r["launcher_peak_rss_mb"] < 200 for r in rows)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"llm_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_tables_medians_and_per_seed_ratios():
    report = _load("report")
    rows = []
    for seed, (o, t) in enumerate([(0.50, 0.45), (0.48, 0.49), (0.52, 0.52)]):
        rows.append(dict(system="ours", seed=seed, accuracy_before=0.31, accuracy_after=o, accuracy_all_before=0.34,
                         accuracy_all_after=o + 0.02, seconds_per_step=0.1, peak_rss_mb=400, loadavg_1m=[1.0, 2.0],
                         launcher_peak_rss_mb=20.0))
        rows.append(dict(system="trl", seed=seed, accuracy_before=0.31, accuracy_after=t, accuracy_all_before=0.34,
                         accuracy_all_after=t + 0.02, seconds_per_step=0.25, peak_rss_mb=800, loadavg_1m=[1.0, 2.0],
                         launcher_peak_rss_mb=20.0))
    text = report.report(rows)
    assert "| ours | 3 | 50.0% | +19.0 [17.0, 19.0, 21.0] | +18.0 | 0.100 | 400 |" in text
    assert "**0.40x**" in text and "**0.50x**" in text and "**+1.0 points**" in text
    assert "ours higher on 1, equal on 1, TRL higher on 1 of 3 seeds" in text
    old = [{k: v for k, v in r.items() if k not in ("accuracy_all_before", "accuracy_all_after", "loadavg_1m")}
           for r in rows]
    assert "| 0 | ours | 31.0% | 50.0% | +19.0 | - | - |" in report.report(old)  # rows of the earlier launcher


REAL_LAUNCHER = r"""
import json, subprocess, sys, types
sys.path.insert(0, {bench!r})
import real_model_vs_trl as bench

calls = []
def fake_run(cmd, **kw):
    calls.append(cmd)
    system, seed = cmd[cmd.index("--child") + 1], int(cmd[cmd.index("--seed") + 1])
    res = dict(system="base", accuracy=0.2) if system == "base" else dict(
        system=system, seed=seed, accuracy_after=0.5 if system == "ours" else 0.4, reward=[0.1, 0.3],
        held_out={{"2": 0.5 if system == "ours" else 0.4}}, seconds_per_step=1.0 if system == "ours" else 4.0,
        peak_rss_mb=1000.0 if system == "ours" else 2500.0)
    return types.SimpleNamespace(stdout="RESULT " + json.dumps(res) + "\n", stderr="", returncode=0)

subprocess.run = fake_run
bench.plot = lambda *a: None
sys.argv = ["real_model_vs_trl.py", "--model", "/m", "--task", "t.jsonl", "--eval-task", "e.jsonl", "--seeds", "0", "1",
            "--steps", "2", "--out", {out!r}]
bench.main()
heavy = sorted(m for m in ("torch", "transformers", "trl") if m in sys.modules)
print("CHECK " + json.dumps({{"heavy": heavy, "calls": calls}}))
"""


def test_real_model_launcher_alternates_systems_and_reports_ratios(tmp_path):
    code = REAL_LAUNCHER.format(bench=str(BENCH), out=str(tmp_path / "bench"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    check = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("CHECK "))[6:])
    assert check["heavy"] == []  # children measure their own peak RSS
    order = [(c[c.index("--child") + 1], c[c.index("--seed") + 1]) for c in check["calls"]]
    assert order == [("base", "0"), ("ours", "0"), ("trl", "0"), ("trl", "1"), ("ours", "1")]
    assert all("--steps=2" in c and "--model=/m" in c and "--eval-task=e.jsonl" in c for c in check["calls"])
    assert "| time per step (s, first step excluded) | 1.00 | 4.00 | 0.25 |" in proc.stdout
    assert "| peak RSS (MiB) | 1,000 | 2,500 | 0.40 |" in proc.stdout
    assert "(base 20.0%) | 50.0% | 40.0% | +10.0 points |" in proc.stdout


def test_flop_floor_counts_each_pass_by_hand():
    """The step FLOPs of benchmarks/llm/flop_floor.py on numbers small enough to add by hand."""
    spec = importlib.util.spec_from_file_location("flop_floor", BENCH / "flop_floor.py")
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    # body 10, head 3; B 2 prompts of P 5 tokens, G 2 -> N 4 rows, C 2 sampled tokens, padded W 3
    f = floor.step_flops(body=10, head=3, B=2, G=2, P=5, C=2, W=3)
    generation = 2 * 10 * (2 * 5) + (2 * 10 + 2 * 3) * (4 * 2)  # prefill 10 tokens, then 8 sampled with logits
    assert f["ours_generation"] == generation == 408
    assert f["ours_update"] == 4 * (2 * 10 * (2 * 5 + 4 * 3) + 2 * 3 * (4 * 3)) == 2048
    assert f["trl"] == (2 * 10 * (4 * 5) + (2 * 10 + 2 * 3) * 8) + 4 * (2 * 10 * (4 * 8) + 2 * 3 * 12) == 3456
