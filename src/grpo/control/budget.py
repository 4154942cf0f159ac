"""Before a classic-control run starts: does one iteration's batch fit the step budget and the memory?

GRPO collects ``groups x group_size`` whole episodes per iteration, one environment each, with
buffers [E, T, D] for the env's time limit T; PPO steps ``n_envs`` environments ``n_steps`` times.
A batch larger than the whole budget would overshoot it on the first iteration, and a batch whose
environments and buffers exceed the free memory would die allocating: both are refused here, in one
line with the numbers.
"""

from __future__ import annotations

from typing import Any

from grpo.control.envs import EnvInfo
from grpo.utils.bounds import TooLarge, check_fits

# One gymnasium classic-control environment object with its wrappers (measured: 200k CartPole envs
# took about 5 GB, issue 11); a lower bound for the heavier Box2D ones.
ENV_BYTES = 25_000


def batch_shape(algo: str, cfg: Any, info: EnvInfo) -> tuple[int, int, int, str]:
    """(environments, time steps buffered per environment, fewest env steps per iteration, the options
    that set them) for one iteration of ``algo``."""
    if algo == "ppo":
        return cfg.n_envs, cfg.n_steps, cfg.n_envs * cfg.n_steps, "--n-envs x --n-steps"
    episodes = cfg.groups * cfg.group_size if algo == "grpo" else 1
    # every episode takes at least one step; its buffers hold the whole time limit
    return episodes, info.max_episode_steps or 1, episodes, "--groups x --group-size"


def estimate_bytes(algo: str, cfg: Any, info: EnvInfo) -> int:
    """A lower bound of one iteration's memory: the environments and the rollout buffers (float32
    observations, actions, log-probs, rewards; collected once and copied once into tensors)."""
    n_envs, steps, _, _ = batch_shape(algo, cfg, info)
    per_step = 4 * (info.obs_dim + (1 if info.discrete else info.action_dim) + 2)
    return n_envs * (ENV_BYTES + 2 * steps * per_step)


def check_batch(algo: str, total_steps: int, cfg: Any, info: EnvInfo) -> None:
    """Refuse a batch that cannot fit ``total_steps`` or the free memory, naming the options to lower."""
    n_envs, steps, per_iteration, options = batch_shape(algo, cfg, info)
    if per_iteration > total_steps:
        raise TooLarge(f"{algo}: one iteration takes at least {per_iteration:,} env steps ({options}), more than "
                       f"--total-steps {total_steps:,}: lower {options.replace(' x ', ' or ')}, or raise --total-steps")
    check_fits(f"{algo}: a batch of {n_envs:,} environments x {steps:,} steps ({options})",
               estimate_bytes(algo, cfg, info), f"lower {options.replace(' x ', ' or ')}")
