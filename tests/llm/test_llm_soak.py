"""Soak test: a long LLM GRPO run on the tiny task keeps a flat memory profile (run with -m slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grpo.llm.config import GRPOConfig
from grpo.llm.data.tasks import load_rows
from grpo.llm.modeling.models import frozen_copy
from grpo.llm.data.rewards import RewardSet
from grpo.llm.algorithms.grpo import GRPOTrainer
from grpo.utils.runtime import current_rss_mb


@pytest.mark.slow
def test_long_llm_run_memory_stays_flat(tiny):
    torch.manual_seed(0)
    model, tok = tiny
    cfg = GRPOConfig(max_new_tokens=6, prompts_per_step=16, group_size=8, seed=0, lr=3e-4)
    trainer = GRPOTrainer(cfg, model, tok, load_rows("addition", "train"), RewardSet.from_specs(["exact"]),
                          frozen_copy(model))
    rss = []
    for step in range(400):
        trainer.step(step)
        rss.append(current_rss_mb())
    rss = np.array(rss)
    q = len(rss) // 4
    early, late = np.median(rss[q:2 * q]), np.median(rss[-q:])
    assert late - early < 30, f"RSS grew from {early:.1f} MiB to {late:.1f} MiB"
