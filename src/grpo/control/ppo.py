"""PPO (Schulman et al. 2017) with an actor and a critic, in the manner of CleanRL's ppo.py.

One iteration: N environments x T steps -> GAE (termination vs truncation handled: a truncated
episode bootstraps from the value of its final observation) -> ``epochs`` passes over shuffled
minibatches of the clipped surrogate, the (optionally clipped) value loss and an entropy bonus,
with per-minibatch advantage normalisation, gradient-norm clipping and optional linear
annealing of the learning rate and the clip range (rl-zoo's ``lin_`` schedules).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from grpo.control.envs import EnvInfo
from grpo.control.policies import Actor, Critic, count_parameters
from grpo.control.rollout import StepBatch, StepCollector
from grpo.utils.metrics import mean_metrics
from grpo.utils.optim import GuardedStep
from grpo.core import clipped_surrogate, explained_variance, gae, value_loss


@dataclass
class ControlPPOConfig:
    """Classic-control PPO. Per-env tuned values live in ``grpo.control.defaults``."""

    n_envs: int = field(default=8, metadata={"help": "parallel environments"})
    n_steps: int = field(default=128, metadata={"help": "steps per environment per rollout"})
    epochs: int = field(default=10, metadata={"help": "passes over each rollout"})
    batch_size: int = field(default=256, metadata={"help": "minibatch size (transitions)"})
    lr: float = field(default=3e-4, metadata={"help": "Adam learning rate"})
    anneal_lr: bool = field(default=True, metadata={"help": "decay the learning rate linearly to 0"})
    gamma: float = field(default=0.99, metadata={"help": "discount"})
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda"})
    clip: float = field(default=0.2, metadata={"help": "policy clip range"})
    anneal_clip: bool = field(default=False, metadata={"help": "decay the clip range linearly to 0"})
    clip_value: float | None = field(default=None, metadata={"help": "value clip range (None: unclipped)"})
    vf_coef: float = field(default=0.5, metadata={"help": "value loss coefficient"})
    ent_coef: float = field(default=0.0, metadata={"help": "entropy bonus coefficient"})
    max_grad_norm: float = field(default=0.5, metadata={"help": "gradient-norm clip"})
    norm_adv: bool = field(default=True, metadata={"help": "normalise advantages per minibatch"})
    target_kl: float | None = field(default=None, metadata={"help": "stop the epochs early past this KL"})
    hidden: list[int] = field(default_factory=lambda: [64, 64], metadata={"help": "hidden layer sizes"})
    activation: str = field(default="tanh", metadata={"help": "hidden activation", "choices": ["tanh", "relu"]})
    init_log_std: float = field(default=0.0, metadata={"help": "initial log-std (continuous actions)"})

    def __post_init__(self) -> None:
        checks = [
            (self.n_envs >= 1, "n_envs must be >= 1"),
            (self.n_steps >= 1, "n_steps must be >= 1"),
            (1 <= self.batch_size <= self.n_envs * self.n_steps, "batch_size must be in [1, n_envs * n_steps]"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (0 < self.clip < 1, "clip must be in (0, 1)"),
            (self.clip_value is None or self.clip_value > 0, "clip_value must be > 0"),
            (0 <= self.gamma <= 1 and 0 <= self.gae_lambda <= 1, "gamma and gae_lambda must be in [0, 1]"),
            (self.max_grad_norm > 0, "max_grad_norm must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"ppo config: {message}")


class PPOAgent:
    def __init__(self, cfg: ControlPPOConfig, info: EnvInfo, seed: int):
        self.cfg, self.info = cfg, info
        self.actor = Actor(info, tuple(cfg.hidden), cfg.activation, cfg.init_log_std)
        self.critic = Critic(info, tuple(cfg.hidden), cfg.activation)
        params = list(self.actor.parameters()) + list(self.critic.parameters())
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, eps=1e-5, fused=True)
        self.step = GuardedStep(self.optimizer, cfg.max_grad_norm)
        self.collector = StepCollector(info, cfg.n_envs, seed)
        self.iteration = 0

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"actor": self.actor, "critic": self.critic}

    def param_count(self) -> int:
        return count_parameters(self.actor, self.critic)

    def collect(self) -> StepBatch:
        return self.collector.collect(self.actor, self.critic, self.cfg.n_steps)

    def update(self, batch: StepBatch, progress: float) -> dict[str, float]:
        cfg = self.cfg
        frac = max(1.0 - progress, 0.0)
        if cfg.anneal_lr:
            self.optimizer.param_groups[0]["lr"] = cfg.lr * frac
        clip = cfg.clip * frac if cfg.anneal_clip else cfg.clip
        adv, returns = gae(batch.rewards, batch.values, batch.next_values, batch.terminated,
                           batch.episode_end, cfg.gamma, cfg.gae_lambda)  # [N, T]
        # Flatten N x T transitions into one batch of size M.
        b_obs = batch.obs.flatten(0, 1)  # [M, D]
        b_actions = batch.actions.flatten(0, 1)
        b_logp, b_adv = batch.logp.flatten(), adv.flatten()  # [M]
        b_returns, b_values = returns.flatten(), batch.values.flatten()
        M = b_obs.shape[0]
        history: list[dict[str, torch.Tensor]] = []
        for epoch in range(cfg.epochs):
            # Metrics cost as much as the loss on small nets: log the last epoch's (every epoch's
            # when target_kl needs the KL to stop early).
            log = epoch == cfg.epochs - 1 or cfg.target_kl is not None
            for idx in torch.randperm(M).split(cfg.batch_size):
                ones = torch.ones(len(idx), dtype=torch.bool)
                logp, entropy = self.actor.log_prob_entropy(b_obs[idx], b_actions[idx])
                mb_adv = b_adv[idx]
                if cfg.norm_adv and len(idx) > 1:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg, metrics = clipped_surrogate(logp, b_logp[idx], mb_adv, ones, eps_low=clip, with_metrics=log)
                v_loss, v_metrics = value_loss(self.critic(b_obs[idx]), b_values[idx], b_returns[idx], ones, cfg.clip_value)
                entropy_mean = entropy.mean()
                loss = pg.mean() + cfg.vf_coef * v_loss.mean() - cfg.ent_coef * entropy_mean
                grad_norm = self.step(loss)
                if log:
                    metrics.update(v_metrics)
                    metrics.update({"loss/policy": pg.mean().detach(), "loss/value": v_loss.mean().detach(),
                                    "loss/total": loss.detach(), "policy/entropy": entropy_mean.detach(),
                                    "policy/grad_norm": grad_norm})
                    history.append(metrics)
            if cfg.target_kl is not None and float(history[-1]["policy/approx_kl_old"]) > cfg.target_kl:
                break
        self.iteration += 1
        out = mean_metrics(history)
        if batch.episode_returns:
            out["train/episode_return_mean"] = sum(batch.episode_returns) / len(batch.episode_returns)
        out["value/explained_variance"] = float(explained_variance(b_values, b_returns, torch.ones_like(b_returns, dtype=torch.bool)))
        out["train/lr"] = self.optimizer.param_groups[0]["lr"]
        out["train/skipped_updates"] = float(self.step.skipped_total)
        out["train/clip"] = clip
        return out

    def close(self) -> None:
        self.collector.close()
