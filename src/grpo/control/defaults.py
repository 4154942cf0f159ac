"""Tuned hyperparameters per algorithm and environment, in one readable place.

A run's config is built in layers: the dataclass defaults, then the entry below for its env,
then a ``--config`` YAML file, then the flags given on the command line.

PPO's entries follow rl-baselines3-zoo's tuned values (hyperparams/ppo.yml) where this
library has the matching option; GRPO's were tuned here (BENCHMARKS.md says how).
"""

from __future__ import annotations

from typing import Any

TUNED: dict[str, dict[str, dict[str, Any]]] = {
    "grpo": {
        "CartPole-v1": dict(group_size=8, groups=2, epochs=10, minibatches=2, lr=5e-4, anneal_lr=True,
                            advantage="timestep", gamma=0.98, beta=0.04, ref_sync_every=5,
                            aggregation="token-mean"),
        # Acrobot: nothing is learnt until an episode of a group reaches the goal (2.5% of random
        # episodes do), so 32 episodes per iteration; undiscounted returns-to-go spread the credit.
        "Acrobot-v1": dict(group_size=16, groups=2, epochs=10, minibatches=8, lr=1e-3, advantage="timestep",
                           gamma=1.0),
        # MountainCar: no random episode reaches the flag in 200 steps, every group has equal
        # returns and zero advantage; no setting here changes that (BENCHMARKS.md).
        "MountainCar-v0": dict(group_size=16, groups=2, epochs=10, minibatches=4, lr=1e-3, advantage="timestep"),
        "LunarLander-v3": dict(group_size=8, groups=2, epochs=10, minibatches=4, lr=1e-3, advantage="timestep"),
        # Pendulum: no critic, so the baseline is the group's mean at the same time step; more
        # start states per iteration (4 groups of 4), a shorter horizon and more updates per batch.
        "Pendulum-v1": dict(group_size=4, groups=4, epochs=20, minibatches=16, lr=2e-3, advantage="timestep",
                            gamma=0.95, init_log_std=0.0),
    },
    "ppo": {
        # rl-zoo: n_envs 8, n_steps 32, batch 256, 20 epochs, gamma 0.98, lambda 0.8, lin_1e-3, lin_0.2
        "CartPole-v1": dict(n_envs=8, n_steps=32, batch_size=256, epochs=20, gamma=0.98, gae_lambda=0.8,
                            lr=1e-3, anneal_lr=True, clip=0.2, anneal_clip=True, ent_coef=0.0),
        "Acrobot-v1": dict(n_envs=16, n_steps=256, batch_size=64, epochs=4, gamma=0.99, gae_lambda=0.94,
                           lr=3e-4, anneal_lr=False, ent_coef=0.0),
        "MountainCar-v0": dict(n_envs=16, n_steps=16, batch_size=64, epochs=4, gamma=0.99, gae_lambda=0.98,
                               lr=3e-4, anneal_lr=False, ent_coef=0.0),
        "LunarLander-v3": dict(n_envs=16, n_steps=1024, batch_size=64, epochs=4, gamma=0.999, gae_lambda=0.98,
                               lr=3e-4, anneal_lr=False, ent_coef=0.01),
        "Pendulum-v1": dict(n_envs=4, n_steps=1024, batch_size=64, epochs=10, gamma=0.9, gae_lambda=0.95,
                            lr=1e-3, anneal_lr=False, clip=0.2, ent_coef=0.0),
    },
    "naive-grpo": {},
}


def tuned(algo: str, env_id: str) -> dict[str, Any]:
    """The tuned overrides for ``algo`` on ``env_id`` (empty when none were tuned)."""
    return dict(TUNED.get(algo, {}).get(env_id, {}))
