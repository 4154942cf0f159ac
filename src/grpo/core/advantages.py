"""Advantage estimators: GRPO's group-relative ones (outcome, per-time-step, process) and GAE.

Shape letters: B groups (prompts, or reset seeds in classic control), G samples per group,
T time steps or tokens, S reasoning steps. Time is always the last dimension.

Every function here is pure tensor math; the control and LLM trainers both call them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from grpo.core.masked import masked_sum

# How the centred rewards are scaled: by the group's std (GRPO, DeepSeekMath 4.1.2), by the std of
# the whole batch (more robust for small G), or not at all (Dr. GRPO, arXiv 2503.20783, which
# shows that dividing by the group std up-weights too-easy and too-hard prompts).
REWARD_SCALES = ("group", "batch", "none")

# Below this std a group counts as "all rewards equal": its advantages are exactly 0, never NaN.
ZERO_STD = 1e-6


def _std(x: Tensor, mask: Tensor, dim: int | tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Masked mean and unbiased std (as ``torch.std``) over ``dim``, keeping dims."""
    maskf = mask.to(x.dtype)
    n = maskf.sum(dim, keepdim=True)
    mean = masked_sum(x, mask, dim).reshape(n.shape) / n.clamp(min=1)
    sq = masked_sum((x - mean) ** 2, mask, dim).reshape(n.shape)
    std = (sq / (n - 1).clamp(min=1)).sqrt()
    return mean, std


def group_advantages(rewards: Tensor, scale: str = "group", eps: float = 1e-4) -> Tensor:
    """Outcome supervision: each sample's reward normalised inside its group.

    ``rewards`` [B, G] -> advantages [B, G], ``(r - mean_g(r)) / (std_g(r) + eps)`` for
    ``scale="group"``; ``std`` over the whole batch for ``"batch"``; no division for ``"none"``.
    A group whose rewards are all equal gets exactly zero advantage. The trainer broadcasts the
    result to every token (or time step) of the sample.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [groups, G] with G >= 2, got {tuple(rewards.shape)}")
    if scale not in REWARD_SCALES:
        raise ValueError(f"unknown reward scale {scale!r}; choose one of {REWARD_SCALES}")
    rewards = rewards.double()  # float64 statistics: float32 sums and squares overflow past ~1e19
    mean = rewards.mean(dim=1, keepdim=True)  # [B, 1]
    std = rewards.std(dim=1, keepdim=True)  # [B, 1]
    centred = rewards - mean  # [B, G]
    constant = std < ZERO_STD  # [B, 1]
    if scale == "group":
        adv = centred / (std + eps)
    elif scale == "batch":
        adv = centred / (rewards.std() + eps) if rewards.numel() > 1 else centred
    else:
        adv = centred
    return torch.where(constant, torch.zeros_like(adv), adv).float()


def process_advantages(
    step_rewards: Tensor, step_ends: Tensor, step_mask: Tensor, num_tokens: int, eps: float = 1e-4
) -> Tensor:
    """Process supervision (DeepSeekMath 4.1.3): per-step rewards normalised over the group.

    ``step_rewards`` [B, G, S] reward of reasoning step s of sample g; ``step_ends`` [B, G, S]
    (long) index of the token (or time step) at which that step ends; ``step_mask`` [B, G, S]
    true for real steps. All real steps of a group are normalised together (mean and std over
    the group's steps); the advantage of token t is the sum of the normalised rewards of the
    steps that end at or after t. Returns [B, G, T] with T = ``num_tokens``.
    """
    B, G, S = step_rewards.shape
    step_rewards = step_rewards.double()  # float64 statistics, as in group_advantages
    mean, std = _std(step_rewards, step_mask, dim=(1, 2))  # [B, 1, 1]
    norm = (step_rewards - mean) / (std + eps)  # [B, G, S]
    norm = torch.where((std < ZERO_STD) | ~step_mask.bool(), torch.zeros_like(norm), norm)
    ends = step_ends.long().clamp(0, num_tokens - 1)
    at_end = torch.zeros(B, G, num_tokens, dtype=norm.dtype, device=norm.device)
    at_end.scatter_add_(2, ends, norm)  # [B, G, T]: each step's reward at its last token
    # Suffix sum: token t collects every step ending at or after t.
    return at_end.flip(-1).cumsum(-1).flip(-1).float()


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Returns-to-go ``R_t = r_t + gamma * R_{t+1}`` inside each episode. [..., T] -> [..., T].

    ``mask`` marks the real steps of each (right-padded) episode; the return past the end is 0.
    """
    rewards = torch.where(mask.bool(), rewards.float(), torch.zeros((), device=rewards.device))
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] + gamma * running
        out[..., t] = running
    return out


def timestep_group_advantages(
    returns: Tensor, mask: Tensor, scale: str = "group", eps: float = 1e-4
) -> Tensor:
    """Per-time-step group baseline: returns-to-go normalised across the group at the same t.

    ``returns`` [B, G, T] returns-to-go, ``mask`` [B, G, T] true while the episode is alive.
    At each t the samples of a group still alive are compared with each other; where fewer than
    two are alive, or their returns are equal, the advantage is 0. ``scale`` as in
    :func:`group_advantages` (``"batch"`` uses the std of all valid entries).
    """
    if scale not in REWARD_SCALES:
        raise ValueError(f"unknown reward scale {scale!r}; choose one of {REWARD_SCALES}")
    returns = returns.double()  # float64 statistics, as in group_advantages
    mean, std = _std(returns, mask, dim=1)  # [B, 1, T]
    alive = mask.to(returns.dtype).sum(1, keepdim=True)  # [B, 1, T]
    centred = returns - mean
    if scale == "group":
        adv = centred / (std + eps)
    elif scale == "batch":
        _, all_std = _std(returns.reshape(1, -1), mask.reshape(1, -1), dim=1)
        adv = centred / (all_std.reshape(()) + eps)
    else:
        adv = centred
    degenerate = (alive < 2) | (std < ZERO_STD)
    adv = torch.where(degenerate | ~mask.bool(), torch.zeros_like(adv), adv)
    return adv.float()


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    episode_end: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016). All inputs [..., T].

    ``values[t] = V(s_t)``; ``next_values[t] = V(s_{t+1})`` where ``s_{t+1}`` is the true next
    state: at a truncated step it is the final observation (so the value bootstraps), at a
    terminated step it is ignored. ``episode_end[t]`` is terminated or truncated: the recursion
    does not carry advantages across it. Returns (advantages, returns = advantages + values).
    """
    not_term = 1.0 - terminated.float()
    not_end = 1.0 - episode_end.float()
    deltas = rewards.float() + gamma * next_values.float() * not_term - values.float()  # [..., T]
    adv = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[..., 0])
    for t in range(deltas.shape[-1] - 1, -1, -1):
        running = deltas[..., t] + gamma * lam * not_end[..., t] * running
        adv[..., t] = running
    return adv, adv + values.float()
