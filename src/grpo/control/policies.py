"""Actor and critic networks for flat observations; Categorical or diagonal-Gaussian actions.

Shape letters: N observations in a batch, D observation size, A actions (discrete) or action
dimensions (continuous).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from grpo.control.envs import EnvInfo
from grpo.core import categorical_entropy, categorical_kl, gaussian_entropy, gaussian_kl, gaussian_log_prob

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def layer_init(layer: nn.Linear, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights, constant bias: the PPO implementation detail (Huang et al. 2022, #2)."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(sizes: list[int], activation: str, out_gain: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        layers.append(layer_init(nn.Linear(sizes[i], sizes[i + 1]), gain=out_gain if last else math.sqrt(2)))
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """pi(a | s). Discrete: logits over A actions. Continuous: Gaussian mean and a learned,
    state-independent log-std; sampled actions are clipped to the bounds only when sent to the
    environment (their log-prob is that of the unclipped sample, as in CleanRL and SB3)."""

    def __init__(self, info: EnvInfo, hidden: tuple[int, ...] = (64, 64), activation: str = "tanh",
                 init_log_std: float = 0.0):
        super().__init__()
        self.discrete = info.discrete
        self.net = mlp([info.obs_dim, *hidden, info.action_dim], activation, out_gain=0.01)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((info.action_dim,), float(init_log_std)))
            self.register_buffer("low", torch.tensor(info.action_low, dtype=torch.float32))
            self.register_buffer("high", torch.tensor(info.action_high, dtype=torch.float32))

    def forward(self, obs: Tensor) -> Tensor:
        """[N, D] -> logits or Gaussian means [N, A]."""
        return self.net(obs)

    def log_prob_entropy(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probs [N] of the given actions ([N] long or [N, A]) and entropies [N]."""
        return self.log_prob_entropy_of(self.net(obs), actions)

    def log_prob_entropy_of(self, out: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`log_prob_entropy` from the network's outputs ``out`` [N, A] (logits or means)."""
        if self.discrete:
            logp_all = torch.log_softmax(out, dim=-1)
            return logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1), categorical_entropy(out)
        log_std = self.log_std.expand_as(out)
        return gaussian_log_prob(actions, out, log_std), gaussian_entropy(log_std)

    def kl_to(self, ref: "Actor", obs: Tensor, out: Tensor | None = None) -> Tensor:
        """Exact KL(pi(. | s) || ref(. | s)) [N] at observations [N, D]; the reference without gradients.
        ``out``: this actor's ``net(obs)`` [N, A] when the caller already has it."""
        out = self.net(obs) if out is None else out  # [N, A]
        with torch.no_grad():
            ref_out = ref.net(obs)
        if self.discrete:
            return categorical_kl(out, ref_out)
        return gaussian_kl(out, self.log_std.expand_as(out), ref_out, ref.log_std.detach().expand_as(out))

    @torch.no_grad()
    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Sampled actions ([N] or [N, A]) and their log-probs [N]."""
        out = self.net(obs)
        if self.discrete:
            logp_all = torch.log_softmax(out, dim=-1)
            # Gumbel-max: argmax(logits + Gumbel noise) ~ Categorical; cheaper than multinomial.
            gumbel = -torch.log(-torch.log(torch.rand_like(logp_all).clamp_(min=1e-20)))
            actions = (logp_all + gumbel).argmax(-1)  # [N]
            return actions, logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        std = self.log_std.exp()
        actions = out + std * torch.randn_like(out)
        return actions, gaussian_log_prob(actions, out, self.log_std.expand_as(out))

    @torch.no_grad()
    def greedy(self, obs: Tensor) -> Tensor:
        """The deterministic action: argmax (discrete) or the Gaussian mean (continuous)."""
        out = self.net(obs)
        return out.argmax(-1) if self.discrete else out

    def to_env(self, actions: Tensor) -> np.ndarray | list[int]:
        """Actions as the environment takes them: Python ints (the cheapest for ``Discrete``
        to check) or arrays clipped to the Box bounds."""
        if self.discrete:
            return actions.tolist()
        return torch.max(torch.min(actions, self.high), self.low).numpy()


class Critic(nn.Module):
    """V(s): [N, D] -> [N]."""

    def __init__(self, info: EnvInfo, hidden: tuple[int, ...] = (64, 64), activation: str = "tanh"):
        super().__init__()
        self.net = mlp([info.obs_dim, *hidden, 1], activation, out_gain=1.0)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)


def count_parameters(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())
