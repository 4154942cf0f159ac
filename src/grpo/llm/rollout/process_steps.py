"""Process-reward alignment: each reasoning step's reward placed on the token where the step ends."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from grpo.llm.data.rewards.base import StepRewards


def step_token_ends(tokenizer: Any, completion_ids: Tensor, steps: list[StepRewards | None],
                    G: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-step rewards, token ends and mask [B, G, S] from character offsets of the steps.

    A step ending at character e ends at the first token whose decoded prefix reaches e.
    """
    S = max(1, max((len(s.rewards) for s in steps if s), default=1))
    N, C = completion_ids.shape
    rewards, ends, mask = torch.zeros(N, S), torch.zeros(N, S, dtype=torch.long), torch.zeros(N, S, dtype=torch.bool)
    for i, s in enumerate(steps):
        if not s or not s.rewards:
            continue
        ids = completion_ids[i].tolist()
        prefix = [len(tokenizer.decode(ids[:k + 1], skip_special_tokens=True)) for k in range(C)]
        for j, (r, e) in enumerate(zip(s.rewards, s.ends)):
            k = next((k for k, n in enumerate(prefix) if n >= e), C - 1)
            rewards[i, j], ends[i, j], mask[i, j] = r, k, True
    return rewards.view(-1, G, S), ends.view(-1, G, S), mask.view(-1, G, S)
