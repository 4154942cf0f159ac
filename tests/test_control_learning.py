"""Learning tests: a broken update (wrong sign, no ratio, no groups) would fail them."""

import math

import pytest
import torch

from grpo.control.grpo import GRPOConfig
from grpo.control.train import RunConfig, algo_config, train
from grpo.utils.io import read_jsonl


def quick_run(tmp_path, algo, total_steps, env="CartPole-v1", eval_every=5_000, **overrides):
    run = RunConfig(env=env, seed=0, total_steps=total_steps, eval_every=eval_every, progress=False)
    cfg = algo_config(algo, env, overrides)
    summary = train(algo, run, cfg, tmp_path / algo)
    return summary, read_jsonl(tmp_path / algo / "metrics.jsonl"), read_jsonl(tmp_path / algo / "eval.jsonl")


def test_grpo_learns_cartpole(tmp_path):
    summary, metrics, evals = quick_run(tmp_path, "grpo", 20_000)
    assert max(e["eval_return_mean"] for e in evals) >= 200
    # The ratio and the clip act (several epochs per batch) and the KL to the reference is live.
    assert max(m["clip/low_frac"] + m["clip/high_frac"] for m in metrics) > 0
    assert max(m["kl/ref"] for m in metrics) > 0
    assert any(abs(m["policy/ratio_mean"] - 1) > 1e-4 for m in metrics)


def test_ppo_learns_cartpole(tmp_path):
    summary, metrics, evals = quick_run(tmp_path, "ppo", 10_000)
    assert max(e["eval_return_mean"] for e in evals) >= 200
    assert all(math.isfinite(m["loss/value"]) for m in metrics)


def test_grpo_with_flipped_advantages_does_not_learn(tmp_path, monkeypatch):
    """The control experiment for the test above: the same run with the advantage sign flipped."""
    import grpo.control.grpo as grpo_mod

    estimator = grpo_mod.ADVANTAGES.get("timestep")
    monkeypatch.setitem(grpo_mod.ADVANTAGES._table, "timestep", lambda b, c: -estimator(b, c))
    summary, _, evals = quick_run(tmp_path, "grpo", 20_000)
    assert max(e["eval_return_mean"] for e in evals) < 100


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_continuous_actions_smoke(tmp_path, algo):
    overrides = {"groups": 1, "group_size": 2, "epochs": 2, "minibatches": 1} if algo == "grpo" else {"n_envs": 2, "n_steps": 200, "epochs": 2}
    summary, metrics, evals = quick_run(tmp_path, algo, 800, env="Pendulum-v1", eval_every=400, **overrides)
    assert summary["env_steps"] >= 800 and len(evals) == 2
    for m in metrics:
        assert all(math.isfinite(v) for v in m.values() if isinstance(v, float))
    assert -2000 < summary["final_eval"] < 0


def test_grpo_config_validation_names_the_field():
    with pytest.raises(ValueError, match="group_size"):
        GRPOConfig(group_size=1)
    with pytest.raises(ValueError, match="beta"):
        GRPOConfig(beta=-0.1)
    with pytest.raises(ValueError, match="eps_low"):
        GRPOConfig(eps_low=1.5)
    with pytest.raises(ValueError, match="loss aggregation"):
        GRPOConfig(aggregation="sum")
    with pytest.raises(ValueError, match="unknown option"):
        algo_config("grpo", "CartPole-v1", {"n_envs": 4})


def test_naive_grpo_has_ratio_one_and_zero_kl(tmp_path):
    """The article's variant really is REINFORCE: nothing clips and the KL never moves."""
    _, metrics, _ = quick_run(tmp_path, "naive-grpo", 2_000, eval_every=0)
    assert len(metrics) > 10  # one update per episode
    for m in metrics:
        assert m["policy/ratio_mean"] == pytest.approx(1.0, abs=1e-6)
        assert m["clip/low_frac"] == 0 and m["clip/high_frac"] == 0
        assert m["kl/ref"] == pytest.approx(0.0, abs=1e-7)
    torch.set_num_threads(torch.get_num_threads())
