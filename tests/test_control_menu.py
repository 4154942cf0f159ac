"""The algorithm menu in classic-control GRPO: every entry by name, remax's greedy episode from the
group's seed, top-entropy steps, off-policy episode masking, and the CLI flags."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grpo.cli import main
from grpo.control.envs import env_info
from grpo.control.evaluation import evaluate_policy
from grpo.control.grpo import ADVANTAGES, MENU_ESTIMATORS, ControlGRPOConfig, GRPOAgent
from grpo.core import POLICY_LOSSES


def _agent(**kw):
    torch.manual_seed(0)
    cfg = ControlGRPOConfig(groups=2, group_size=4, epochs=2, minibatches=2, **kw)
    return GRPOAgent(cfg, env_info("CartPole-v1"), seed=0)


@pytest.mark.parametrize("advantage", MENU_ESTIMATORS)
def test_every_menu_estimator_updates(advantage):
    agent = _agent(advantage=advantage)
    try:
        batch = agent.collect()
        metrics = agent.update(batch, 0.0)
        assert math.isfinite(metrics["loss/total"])
    finally:
        agent.close()


@pytest.mark.parametrize("policy_loss", POLICY_LOSSES.names())
def test_every_policy_loss_updates(policy_loss):
    agent = _agent(policy_loss=policy_loss, token_selection="top-entropy", off_policy_mask_delta=0.0)
    try:
        metrics = agent.update(agent.collect(), 0.0)
        assert math.isfinite(metrics["loss/total"]) and metrics["policy/grad_norm"] > 0
    finally:
        agent.close()


def test_remax_baseline_is_the_greedy_episode_from_the_group_seed():
    agent = _agent(advantage="remax")
    try:
        seeds = np.random.default_rng(0).integers(0, 2**31 - 1, size=2).tolist()  # the agent's first seeds
        batch = agent.collect()
        policy = lambda obs: agent.actor.to_env(agent.actor.greedy(torch.from_numpy(obs)))  # noqa: E731
        expected = [evaluate_policy(policy, "CartPole-v1", episodes=1, seed0=s)[0] for s in seeds]
        assert batch.baseline.tolist() == expected
        assert batch.env_steps == int(batch.lengths.sum()) + int(sum(expected))  # CartPole: return = steps
        a = ADVANTAGES.get("remax")(batch, agent.cfg)[:, 0].view(2, 4)
        torch.testing.assert_close(a, batch.returns.view(2, 4) - torch.tensor(expected)[:, None])
    finally:
        agent.close()


def test_top_entropy_selects_a_fifth_of_the_steps():
    agent = _agent(token_selection="top-entropy")
    try:
        batch = agent.collect()
        w = agent._step_weights(batch)
        assert float(w.sum()) == pytest.approx(round(0.2 * float(batch.mask.sum())), abs=1)
        assert (w[~batch.mask] == 0).all()
    finally:
        agent.close()


def test_cli_flags_choose_menu_entries(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--algo", "grpo", "--env", "CartPole-v1", "--total-steps", "600", "--eval-every", "600",
            "--eval-episodes", "2", "--group-size", "4", "--advantage", "rloo", "--policy-loss", "sapo",
            "--aggregation", "seq-mean-token-sum", "--token-selection", "top-entropy", "--out", str(out),
            "--progress", "false"]
    assert main(argv) == 0
    with pytest.raises(SystemExit) as err:  # argparse: the choices named in one line
        main(["train", "--policy-loss", "nope", "--out", str(tmp_path / "x")])
    assert err.value.code == 2


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])  # categorical and Gaussian actions
def test_exact_kl_is_the_kl_of_the_action_distributions_at_the_visited_states(env):
    torch.manual_seed(0)
    cfg = ControlGRPOConfig(groups=2, group_size=4, epochs=1, minibatches=1, beta=0.5, kl_estimator="full")
    agent = GRPOAgent(cfg, env_info(env), seed=0)
    try:
        with torch.no_grad():
            for p in agent.ref.parameters():
                p.add_(0.3 * torch.randn_like(p))
        batch = agent.collect()
        obs = batch.obs[batch.mask]  # [steps, D]
        with torch.no_grad():
            a, r = agent.actor.net(obs), agent.ref.net(obs)
            if agent.actor.discrete:
                dists = [torch.distributions.Categorical(logits=x) for x in (a, r)]
            else:
                dists = [torch.distributions.Independent(torch.distributions.Normal(x, m.log_std.exp().expand_as(x)), 1)
                         for x, m in ((a, agent.actor), (r, agent.ref))]
            want = float(torch.distributions.kl_divergence(*dists).mean())
        kl = agent.actor.kl_to(agent.ref, obs)
        assert kl.requires_grad and all(p.grad is None for p in agent.ref.parameters())
        metrics = agent.update(batch, 0.0)  # one epoch, one minibatch: the metric is the pre-update policy's
        assert want > 1e-3 and metrics["kl/ref"] == pytest.approx(want, rel=1e-4)
    finally:
        agent.close()
