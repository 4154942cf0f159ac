"""Gymnasium environments: creation, validation and a description of their spaces."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces


@dataclass(frozen=True)
class EnvInfo:
    """What a policy and the evaluation protocol need to know about an environment."""

    env_id: str
    obs_dim: int
    discrete: bool
    action_dim: int  # number of actions (discrete) or action dimensions (continuous)
    action_low: tuple[float, ...] | None  # bounds of a Box action space
    action_high: tuple[float, ...] | None
    reward_threshold: float | None  # the env's "solved" return, from its registration
    max_episode_steps: int | None


def check_env_id(env_id: str) -> None:
    """Raise a ValueError naming close matches when ``env_id`` is not registered.

    ``module:EnvId`` (gymnasium's convention) imports the module first, which registers the env.
    """
    if ":" in env_id:
        from grpo.utils.imports import import_module, split_ref

        module, env_id = split_ref(env_id, "env")
        import_module(module, f"env {module}:{env_id}")
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"env: unknown gymnasium environment id {env_id!r}{hint}")


def make_env(env_id: str, max_episode_steps: int | None = None) -> gym.Env:
    """One environment without the passive checker (it costs time on every step)."""
    check_env_id(env_id)
    kwargs = {"max_episode_steps": max_episode_steps} if max_episode_steps else {}
    return gym.make(env_id, disable_env_checker=True, **kwargs)


def env_info(env_id: str, max_episode_steps: int | None = None) -> EnvInfo:
    """Describe ``env_id``; ValueError for spaces this library does not support."""
    env = make_env(env_id, max_episode_steps)
    try:
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
            raise ValueError(f"env: {env_id} has observation space {obs_space}; only flat Box "
                             "observations are supported (wrap the env to flatten it)")
        spec = env.spec
        steps = max_episode_steps or (spec.max_episode_steps if spec else None)
        threshold = spec.reward_threshold if spec else None
        if isinstance(act_space, spaces.Discrete):
            return EnvInfo(env_id, int(obs_space.shape[0]), True, int(act_space.n), None, None, threshold, steps)
        if isinstance(act_space, spaces.Box) and len(act_space.shape) == 1:
            if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
                raise ValueError(f"env: {env_id} has an unbounded Box action space; bounds are needed")
            return EnvInfo(env_id, int(obs_space.shape[0]), False, int(act_space.shape[0]),
                           tuple(float(x) for x in act_space.low), tuple(float(x) for x in act_space.high),
                           threshold, steps)
        raise ValueError(f"env: {env_id} has action space {act_space}; supported: Discrete and 1-D Box")
    finally:
        env.close()
