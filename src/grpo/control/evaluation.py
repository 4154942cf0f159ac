"""The evaluation protocol shared by our trainers and the peers we benchmark against.

Every ``EVAL_EVERY`` env steps the greedy policy plays ``EVAL_EPISODES`` episodes with reset
seeds ``EVAL_SEED0 ..``; evaluation time is not training time. The policy evaluated "at step k"
is the one in effect when the k-th env step was taken: an iteration that crosses k is evaluated
before its own update (the same convention as a Stable-Baselines3 EvalCallback).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from grpo.control.envs import make_env

EVAL_EVERY = 5_000
EVAL_EPISODES = 20
EVAL_SEED0 = 10_000

# Greedy action for a batch of observations: [N, D] float32 -> actions for env.step.
PolicyFn = Callable[[np.ndarray], np.ndarray]


def evaluate_policy(
    policy: PolicyFn,
    env_id: str,
    episodes: int = EVAL_EPISODES,
    seed0: int = EVAL_SEED0,
    max_episode_steps: int | None = None,
) -> list[float]:
    """Returns of ``episodes`` episodes played in lockstep (one batched policy call per step)."""
    envs = [make_env(env_id, max_episode_steps) for _ in range(episodes)]
    try:
        obs = np.stack([env.reset(seed=seed0 + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
        returns = np.zeros(episodes)
        active = np.ones(episodes, dtype=bool)
        while active.any():
            idx = np.flatnonzero(active)
            actions = policy(obs[idx])
            for j, a in zip(idx, actions):
                o, r, term, trunc, _ = envs[j].step(a)
                returns[j] += float(r)
                obs[j] = o
                if term or trunc:
                    active[j] = False
        return returns.tolist()
    finally:
        for env in envs:
            env.close()


def eval_boundaries(steps_before: int, steps_after: int, every: int = EVAL_EVERY) -> list[int]:
    """The evaluation points ``k * every`` in ``(steps_before, steps_after]``.

    >>> eval_boundaries(4_800, 10_100)
    [5000, 10000]
    >>> eval_boundaries(5_000, 9_999)
    []
    """
    first = steps_before // every + 1
    return [k * every for k in range(first, steps_after // every + 1)]


def stable_solve_step(steps: Sequence[int], means: Sequence[float], threshold: float | None) -> int | None:
    """The first evaluation step from which every later evaluation reaches ``threshold``.

    >>> stable_solve_step([5000, 10000, 15000, 20000], [100, 500, 300, 500], 475)
    20000
    >>> stable_solve_step([5000, 10000], [500, 400], 475) is None
    True
    """
    if threshold is None:
        return None
    solved_from = None
    for step, mean in zip(steps, means):
        if mean >= threshold:
            solved_from = step if solved_from is None else solved_from
        else:
            solved_from = None
    return solved_from
