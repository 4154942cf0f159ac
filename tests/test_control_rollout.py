"""Experience collection: groups share their reset seed; PPO rollouts bootstrap on truncation."""

import numpy as np
import pytest
import torch

from grpo.control.envs import env_info
from grpo.control.evaluation import evaluate_policy
from grpo.control.grpo import GRPOAgent, ControlGRPOConfig
from grpo.control.policies import Actor, Critic
from grpo.control.rollout import GroupCollector, StepCollector


def test_group_episodes_share_their_reset_seed_and_nothing_else():
    torch.manual_seed(0)
    info = env_info("CartPole-v1")
    collector = GroupCollector(info, n_groups=3, group_size=4)
    batch = collector.collect(Actor(info), seeds=[1, 2, 3])
    first_obs = batch.obs[:, 0].view(3, 4, -1)  # [B, G, D]
    for b in range(3):
        assert torch.equal(first_obs[b], first_obs[b, :1].expand(4, -1))  # same start in a group
    assert not torch.equal(first_obs[0, 0], first_obs[1, 0])  # fresh seed per group
    lengths = batch.lengths
    assert batch.env_steps == int(lengths.sum())
    assert torch.equal(batch.returns, lengths.float())  # CartPole pays 1 per step
    assert batch.mask[torch.arange(12), lengths - 1].all()  # the last real step is masked in
    assert batch.mask.sum(-1).equal(lengths) and batch.mask.shape[1] == int(lengths.max())
    padded = ~batch.mask
    assert torch.all(batch.rewards[padded] == 0)
    # Sampling differs inside a group: the episodes do not all have the same actions.
    acts = batch.actions[:4, :5]
    assert not all(torch.equal(acts[0], acts[g]) for g in range(1, 4))
    collector.close()


def test_group_collector_requires_a_time_limit():
    info = env_info("CartPole-v1")
    unlimited = type(info)(**{**info.__dict__, "max_episode_steps": None})
    with pytest.raises(ValueError, match="no time limit"):
        GroupCollector(unlimited, 1, 2)


def test_stored_log_probs_match_the_policy():
    torch.manual_seed(0)
    info = env_info("Pendulum-v1")
    actor = Actor(info)
    batch = GroupCollector(info, 1, 2).collect(actor, [5])
    logp, _ = actor.log_prob_entropy(batch.obs[batch.mask], batch.actions[batch.mask])
    assert torch.allclose(logp, batch.logp[batch.mask], atol=1e-5)


def test_ppo_rollout_bootstraps_truncated_episodes_from_their_final_observation():
    torch.manual_seed(0)
    info = env_info("Pendulum-v1", max_episode_steps=5)  # Pendulum never terminates, only truncates
    actor, critic = Actor(info), Critic(info)
    collector = StepCollector(info, n_envs=2, seed=0)
    batch = collector.collect(actor, critic, n_steps=12)
    ended = batch.episode_end
    assert ended[:, 4].all() and ended[:, 9].all() and ended.sum() == 4
    assert not batch.terminated.any()
    # Where an episode did not end, the next value is V of the next stored observation.
    with torch.no_grad():
        v_next = critic(batch.obs[:, 1:].reshape(-1, info.obs_dim)).view(2, 11)
    keep = ~ended[:, :11]
    assert torch.allclose(batch.next_values[:, :11][keep], v_next[keep], atol=1e-6)
    # At a truncation the next stored observation is the reset one; the bootstrap must not use it.
    assert not torch.allclose(batch.next_values[:, 4], v_next[:, 4])
    assert len(batch.episode_returns) == 4
    collector.close()


def test_evaluation_is_deterministic_and_uses_protocol_seeds():
    info = env_info("CartPole-v1")
    torch.manual_seed(0)
    actor = Actor(info)

    def greedy(obs):
        return actor.to_env(actor.greedy(torch.from_numpy(obs)))

    a = evaluate_policy(greedy, "CartPole-v1", episodes=4)
    b = evaluate_policy(greedy, "CartPole-v1", episodes=4)
    assert a == b and len(a) == 4
    assert all(1 <= r <= 500 for r in a)


def test_grpo_agent_seeds_are_reproducible():
    info = env_info("CartPole-v1")

    def run():
        torch.manual_seed(3)
        agent = GRPOAgent(ControlGRPOConfig(groups=1, group_size=2, epochs=1), info, seed=3)
        batch = agent.collect()
        agent.update(batch, 0.0)
        return batch, [p.detach().clone() for p in agent.actor.parameters()]

    (b1, p1), (b2, p2) = run(), run()
    assert torch.equal(b1.actions, b2.actions)
    assert all(torch.equal(x, y) for x, y in zip(p1, p2))
    assert np.isfinite(b1.returns.numpy()).all()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_ppo_rollout_state_round_trips_through_json_mid_episode(env_id):
    """A collector rebuilt from the JSON of another's state continues exactly as the original does:
    CartPole has auto-resets drawn from np_random inside the rollout, Pendulum (continuous actions,
    200-step episodes) is mid-episode at every rollout's end."""
    import json

    info = env_info(env_id)
    torch.manual_seed(0)
    actor, critic = Actor(info), Critic(info)
    a = StepCollector(info, n_envs=3, seed=5)
    a.collect(actor, critic, 70)
    b = StepCollector(info, n_envs=3, seed=99)  # other seeds: only the loaded state can make it match
    b.load_state(json.loads(json.dumps(a.state())))
    torch.manual_seed(1)
    batch_a = a.collect(actor, critic, 140)  # Pendulum's first episodes end at step 200
    torch.manual_seed(1)
    batch_b = b.collect(actor, critic, 140)
    assert torch.equal(batch_a.obs, batch_b.obs) and torch.equal(batch_a.rewards, batch_b.rewards)
    assert batch_a.episode_returns == batch_b.episode_returns and batch_a.episode_returns  # whole returns
    assert torch.equal(batch_a.episode_end, batch_b.episode_end)


def test_ppo_rollout_state_that_does_not_replay_is_refused():
    info = env_info("CartPole-v1")
    a = StepCollector(info, n_envs=2, seed=5)
    state = a.state()
    state["obs"][1][0] += 1.0
    with pytest.raises(ValueError, match="did not replay to the saved observations"):
        StepCollector(info, n_envs=2, seed=5).load_state(state)
