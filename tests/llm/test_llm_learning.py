"""GRPO must learn: the tiny model gets better at addition prompts through the real trainer loop.

Eight fixed addition prompts on the session's small tiny model (about 7% right at the start):
100 GRPO steps with the exact-answer reward raise the sampled accuracy well above its start.
A sign error, a zero advantage, misaligned log-probs or a wrong mask all fail this.
"""

from __future__ import annotations

import torch

from grpo.llm.config import GRPOConfig
from grpo.llm.data import load_rows
from grpo.llm.evaluation import greedy_accuracy
from grpo.llm.models import frozen_copy, load_model, load_tokenizer
from grpo.llm.rewards import RewardSet
from grpo.llm.trainer import GRPOTrainer


def _train(tiny_path, steps: int, **overrides):
    torch.manual_seed(0)
    model, tok = load_model(str(tiny_path)), load_tokenizer(str(tiny_path))
    rows = load_rows("addition", "train")[:8]
    cfg = GRPOConfig(**{"model": str(tiny_path), "max_new_tokens": 6, "lr": 1e-3, "prompts_per_step": 8,
                        "group_size": 8, "seed": 0, **overrides})
    trainer = GRPOTrainer(cfg, model, tok, rows, RewardSet.from_specs(["exact"]), frozen_copy(model))
    before = greedy_accuracy(model, tok, rows, 6)
    acc = [trainer.step(s)[0]["train/accuracy"] for s in range(steps)]
    return acc, before, greedy_accuracy(model, tok, rows, 6)


def test_grpo_raises_accuracy_on_the_tiny_task(tiny_path):
    acc, before, after = _train(tiny_path, 100)
    first, last = sum(acc[:10]) / 10, sum(acc[-10:]) / 10
    assert last >= first + 0.25, (first, last)
    assert after > before, (before, after)


def test_zero_learning_rate_does_not_learn(tiny_path):
    """The control: the same loop with the update switched off stays where it started."""
    acc, before, after = _train(tiny_path, 30, lr=1e-12)
    assert after == before and sum(acc[-10:]) / 10 < 0.2
