"""The article's "GRPO", kept so that users can compare it with GRPO (``--algo naive-grpo``).

Per episode: discounted returns-to-go normalised *within that one episode*, then a single
gradient step of the clipped surrogate plus beta * KL against the policy that just played.
Because that step is the first one on the data, the ratio is exactly 1, the clip never acts,
and the KL and its gradient are 0: the update is REINFORCE with an in-episode baseline. There
is no group at all. This module reproduces that behaviour on purpose; use ``--algo grpo``.
REINFORCE is enough for CartPole-v1 (4 of 5 seeds solved in 100k steps, BENCHMARKS.md) and not for
Acrobot, MountainCar, LunarLander or Pendulum (0 of 5 each).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from grpo.control.envs import EnvInfo
from grpo.control.policies import Actor, count_parameters
from grpo.control.rollout import EpisodeBatch, GroupCollector
from grpo.core import discounted_returns, grpo_loss, masked_whiten


@dataclass
class NaiveGRPOConfig:
    """The article's settings (hidden 128, ReLU, lr 3e-4, eps 0.2, beta 0.01, gamma 0.99)."""

    lr: float = field(default=3e-4, metadata={"help": "Adam learning rate"})
    eps: float = field(default=0.2, metadata={"help": "clip range (never acts: the ratio is 1)"})
    beta: float = field(default=0.01, metadata={"help": "KL coefficient (the KL is always 0)"})
    gamma: float = field(default=0.99, metadata={"help": "discount of the in-episode returns"})
    hidden: list[int] = field(default_factory=lambda: [128, 128], metadata={"help": "hidden layer sizes"})
    activation: str = field(default="relu", metadata={"help": "hidden activation", "choices": ["tanh", "relu"]})

    def __post_init__(self) -> None:
        if self.lr <= 0 or not 0 < self.eps < 1 or self.beta < 0:
            raise ValueError("naive-grpo config: need lr > 0, eps in (0, 1), beta >= 0")


class NaiveGRPOAgent:
    def __init__(self, cfg: NaiveGRPOConfig, info: EnvInfo, seed: int):
        self.cfg = cfg
        self.actor = Actor(info, tuple(cfg.hidden), cfg.activation)
        self.optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        self.collector = GroupCollector(info, n_groups=1, group_size=1)
        self.seed_rng = np.random.default_rng(seed)
        self.iteration = 0

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"actor": self.actor}

    def param_count(self) -> int:
        return count_parameters(self.actor)

    def collect(self) -> EpisodeBatch:
        return self.collector.collect(self.actor, [int(self.seed_rng.integers(0, 2**31 - 1))])

    def update(self, batch: EpisodeBatch, progress: float) -> dict[str, float]:
        mask = batch.mask  # [1, T]
        adv = masked_whiten(discounted_returns(batch.rewards, mask, self.cfg.gamma), mask)  # [1, T]
        logp, _ = self.actor.log_prob_entropy(batch.obs[mask], batch.actions[mask])
        logp = torch.zeros(mask.shape).masked_scatter(mask, logp)
        # The "old" and "reference" log-probs are those of the policy being updated: ratio 1, KL 0.
        loss, metrics = grpo_loss(logp, batch.logp, adv, mask, ref_logp=batch.logp, beta=self.cfg.beta,
                                  eps_low=self.cfg.eps, aggregation="token-mean")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.iteration += 1
        out = {k: float(v) for k, v in metrics.items()}
        out["train/episode_return_mean"] = float(batch.returns.mean())
        return out

    def close(self) -> None:
        self.collector.close()
