"""Stable-Baselines3 PPO with rl-baselines3-zoo's tuned hyperparameters, under our protocol.

The run folder has the same files and keys as ours (``eval.jsonl``, ``summary.json``,
``config.json``), so ``grpo.experiments.table`` reads both alike. The protocol is literally
ours: ``grpo.control.evaluation.evaluate_policy`` on the greedy policy (``predict(...,
deterministic=True)``, observations passed through the frozen VecNormalize statistics where
rl-zoo normalises), called from a callback when an env step crosses a 5,000-step boundary, so
the policy evaluated is the one in effect, and its time is taken out of the train wall.
Like our runs, SB3 gets one torch thread and the CPU device.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from grpo.control.envs import env_info
from grpo.control.evaluation import EVAL_EPISODES, EVAL_SEED0, eval_boundaries, evaluate_policy, stable_solve_step
from grpo.utils.io import JsonlWriter, write_json
from grpo.utils.runtime import peak_rss_mb

# rl-baselines3-zoo hyperparams/ppo.yml (LunarLander-v3 uses the zoo's LunarLander-v2 entry);
# "lin_X" is a schedule decaying linearly from X to 0, as in the zoo. SB3 defaults otherwise
# (batch_size 64, lr 3e-4, clip 0.2, [64, 64] tanh actor and critic).
ZOO: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                        ent_coef=0.0, learning_rate="lin_0.001", clip_range="lin_0.2"),
    "Acrobot-v1": dict(normalize=True, n_envs=16, n_steps=256, gae_lambda=0.94, gamma=0.99, n_epochs=4, ent_coef=0.0),
    "MountainCar-v0": dict(normalize=True, n_envs=16, n_steps=16, gae_lambda=0.98, gamma=0.99, n_epochs=4, ent_coef=0.0),
    "LunarLander-v3": dict(n_envs=16, n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999, n_epochs=4,
                           ent_coef=0.01),
    "Pendulum-v1": dict(n_envs=4, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0,
                        learning_rate=1e-3, clip_range=0.2, use_sde=True, sde_sample_freq=4),
}
# The zoo's n_timesteps, for BENCHMARKS.md to say where a budget was cut.
ZOO_BUDGETS = {"CartPole-v1": 100_000, "Acrobot-v1": 1_000_000, "MountainCar-v0": 1_000_000,
               "LunarLander-v3": 1_000_000, "Pendulum-v1": 100_000}


def schedule(value: Any) -> Any:
    """``"lin_0.001"`` -> a function of SB3's progress_remaining (1 -> 0); numbers unchanged."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


class ProtocolCallback(BaseCallback):
    """Evaluates at the protocol's points and keeps evaluation time out of the train wall."""

    def __init__(self, env_id: str, total_steps: int, eval_every: int, policy_fn, max_episode_steps: int | None,
                 log: JsonlWriter, on_iteration: Callable[[int], None]):
        super().__init__()
        self.env_id, self.total, self.every = env_id, total_steps, eval_every
        self.policy_fn, self.max_steps = policy_fn, max_episode_steps
        self.log, self.report = log, on_iteration
        self.evals: list[dict[str, Any]] = []
        self.start = time.perf_counter()
        self.eval_time = 0.0

    def train_wall(self) -> float:
        return time.perf_counter() - self.start - self.eval_time

    def _on_rollout_end(self) -> None:
        self.report(self.num_timesteps)

    def _on_step(self) -> bool:
        steps = self.num_timesteps
        before = steps - self.training_env.num_envs
        points = eval_boundaries(before, min(steps, self.total), self.every)
        if before < self.total <= steps and self.total not in points:
            points.append(self.total)  # the budget's end is always evaluated, as in our runs
        if points:
            self.evaluate(points)
        return True

    def evaluate(self, points: list[int]) -> None:
        wall = self.train_wall()
        t0 = time.perf_counter()
        returns = evaluate_policy(self.policy_fn, self.env_id, EVAL_EPISODES, EVAL_SEED0, self.max_steps)
        self.eval_time += time.perf_counter() - t0
        for p in points:
            record = {"env_steps": p, "train_wall_s": round(wall, 4), "eval_return_mean": float(np.mean(returns)),
                      "eval_return_std": float(np.std(returns)), "returns": returns}
            self.evals.append(record)
            self.log.write(record)


def run(spec, out: Path, on_iteration: Callable[[int], None]) -> dict[str, Any]:
    """Runner for ``grpo.experiments.compare``: train SB3 PPO for ``spec.total_steps``, write ``out``."""
    from grpo.control.train import prepare_out_dir

    out = Path(out)
    prepare_out_dir(out, resume=False, overwrite=True)
    torch.set_num_threads(1)
    info = env_info(spec.env)
    hp = {**ZOO[spec.env], **spec.overrides}
    n_envs, normalize = hp.pop("n_envs"), hp.pop("normalize", False)
    env = make_vec_env(spec.env, n_envs=n_envs, seed=spec.seed)
    vec_norm = VecNormalize(env) if normalize else None
    model = PPO("MlpPolicy", vec_norm or env, seed=spec.seed, device="cpu", verbose=0,
                **{k: schedule(v) for k, v in hp.items()})

    def policy_fn(obs: np.ndarray) -> np.ndarray:
        if vec_norm is not None:
            obs = vec_norm.normalize_obs(obs)  # the running statistics, not updated here
        return model.predict(obs, deterministic=True)[0]

    write_json(out / "config.json", {"algo": spec.algo, "peer": "stable-baselines3 PPO, rl-zoo hyperparameters",
                                     "hyperparameters": {**ZOO[spec.env], **spec.overrides},
                                     "run": dataclasses.asdict(spec), "env_info": dataclasses.asdict(info)})
    with JsonlWriter(out / "eval.jsonl") as log:
        cb = ProtocolCallback(spec.env, spec.total_steps, spec.eval_every, policy_fn, info.max_episode_steps,
                              log, on_iteration)
        model.learn(total_timesteps=spec.total_steps, callback=cb)
        train_wall = cb.train_wall()
    env.close()
    steps = int(model.num_timesteps)
    means = [e["eval_return_mean"] for e in cb.evals]
    params = sum(p.numel() for p in model.policy.parameters())
    summary = {
        "algo": spec.algo, "env": spec.env, "seed": spec.seed, "total_steps": spec.total_steps, "env_steps": steps,
        "train_wall_s": round(train_wall, 3), "steps_per_s": round(steps / train_wall, 1),
        "final_eval": means[-1] if means else None, "best_eval": max(means) if means else None,
        "stable_solve_step": stable_solve_step([e["env_steps"] for e in cb.evals], means, info.reward_threshold),
        "reward_threshold": info.reward_threshold, "param_count": params,
        "model_state_mb": round(params * 4 * 4 / 2**20, 4), "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    write_json(out / "summary.json", summary)
    return summary
