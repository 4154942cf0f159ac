"""The Stable-Baselines3 peer (benchmarks/peers) follows our protocol and writes our files."""

import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("stable_baselines3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from peers import sb3_ppo  # noqa: E402

from grpo.experiments.compare import RunSpec, run_control  # noqa: E402
from grpo.utils.io import read_json, read_jsonl  # noqa: E402


@pytest.mark.parametrize("env, total, points", [
    ("CartPole-v1", 2500, [1000, 2000, 2500]),
    ("MountainCar-v0", 1200, [1000, 1200]),  # rl-zoo normalises observations here: VecNormalize path
])
def test_sb3_peer_protocol(tmp_path, env, total, points):
    seen = []
    spec = RunSpec("sb3-ppo", "sb3-ppo", env, 0, total, runner="peers.sb3_ppo:run", eval_every=1000)
    t0 = time.perf_counter()
    summary = sb3_ppo.run(spec, tmp_path / "sb3", seen.append)
    wall = time.perf_counter() - t0
    evals = read_jsonl(tmp_path / "sb3" / "eval.jsonl")
    assert [e["env_steps"] for e in evals] == points
    assert all(len(e["returns"]) == 20 for e in evals)
    assert seen and seen == sorted(seen) and seen[-1] >= total
    assert summary == read_json(tmp_path / "sb3" / "summary.json")
    assert summary["final_eval"] == evals[-1]["eval_return_mean"] and summary["env_steps"] >= total
    assert 0 < summary["train_wall_s"] < wall  # evaluation time is taken out
    assert summary["param_count"] > 0 and summary["peak_rss_mb"] > 50

    # Our run under the same spec writes the same summary keys and evaluation points.
    ours = run_control(RunSpec("ppo", "ppo", env, 0, total, eval_every=1000), tmp_path / "ours", lambda s: None)
    assert set(ours) <= set(summary) | {"model_state_mb"}
    assert [e["env_steps"] for e in read_jsonl(tmp_path / "ours" / "eval.jsonl")] == points
    if env == "CartPole-v1":
        assert summary["param_count"] == ours["param_count"]  # the same [64, 64] actor and critic
