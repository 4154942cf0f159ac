"""Which groups carry a learning signal: dynamic sampling keeps the groups whose advantages are
not all zero, process rewards included; an evaluation accuracy of 0% is logged as 0, not NaN."""

from __future__ import annotations

import json
import math

import torch

from grpo.llm.config import GRPOConfig
from grpo.llm.data.rewards import RewardSet
from grpo.llm.data.rewards.base import ScoredBatch, StepRewards
from grpo.llm.algorithms.grpo import GRPOTrainer
from grpo.llm.rollout.sampler import varied_groups


def _scored(totals, steps, step_weight=1.0):
    N = len(totals)
    return ScoredBatch(torch.zeros(N, 1), torch.tensor(totals), ["r"], steps, None, step_weight)


def test_varied_groups_count_process_rewards():
    S = StepRewards
    steps = [S([1.0], [1]), S([1.0], [1]),  # group 0: equal totals, equal steps -> no signal
             S([0.0, 1.0], [1, 2]), S([1.0], [1]),  # group 1: equal totals, steps differ -> signal
             None, S([1.0], [1]),  # group 2: one step in all -> no signal
             S([1.0], [1]), S([1.0], [1])]  # group 3: totals differ -> signal
    totals = [0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 0.0, 1.0]
    assert varied_groups(_scored(totals, steps), 2).tolist() == [False, True, False, True]
    # a process reward of weight 0 adds nothing to the advantages, so it makes no spread either
    assert varied_groups(_scored(totals, steps, 0.0), 2).tolist() == [False, False, False, True]
    assert varied_groups(_scored(totals, None), 2).tolist() == [False, False, False, True]


def _alternating_steps(prompts, completions, **_):
    """A process-only reward: sample i's one step scores i % 2, so every group of 2 has spread."""
    return [StepRewards([float(i % 2)], [max(1, len(c))]) for i, c in enumerate(completions)]


def test_dynamic_sampling_keeps_groups_that_only_process_rewards_separate(random_tiny):
    model, tok = random_tiny
    rows = [{"prompt": f"{i}+1=", "answer": str(i + 1)} for i in range(4)]
    cfg = GRPOConfig(model="x", prompts_per_step=4, group_size=2, max_new_tokens=3, beta=0.0, lr=1e-3,
                     dynamic_sampling=True, max_resample=1)
    tr = GRPOTrainer(cfg, model, tok, rows, RewardSet({"steps": _alternating_steps}))
    g = tr.sampler.collect(0)
    assert len(g.rows) == 4 and g.zero_std_frac == 0.0  # every group's advantages are non-zero
    assert g.rounds == 1  # the first round filled the batch: no extra generation
    assert bool((tr.advantages(g).abs().sum(-1) > 0).all())


def test_dynamic_sampling_counts_its_rounds_when_no_group_has_spread(random_tiny):
    """A reward that never varies leaves every group all-equal: every allowed round runs, nothing is kept."""
    model, tok = random_tiny
    rows = [{"prompt": f"{i}+1=", "answer": str(i + 1)} for i in range(4)]
    cfg = GRPOConfig(model="x", prompts_per_step=2, group_size=2, max_new_tokens=3, beta=0.0, lr=1e-3,
                     dynamic_sampling=True, max_resample=2)
    tr = GRPOTrainer(cfg, model, tok, rows, RewardSet({"same": lambda prompts, completions, **_: [1.0] * len(completions)}))
    g = tr.sampler.collect(0)
    assert g.rounds == 3 and len(g.rows) == 0


def test_an_accuracy_of_zero_is_logged_as_zero(random_tiny, tmp_path):
    """An untrained model answers none of the eval prompts: eval/greedy_accuracy is 0.0, not NaN."""
    from grpo.llm.run import train

    model, tok = random_tiny
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    cfg = GRPOConfig(model=str(tmp_path / "m"), steps=1, prompts_per_step=2, group_size=2, max_new_tokens=3,
                     eval_every=1, eval_limit=4, beta=0.0, out=str(tmp_path / "run"), progress=False,
                     tensorboard=False)
    summary = train(cfg)
    assert summary["accuracy_before"] == 0.0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    acc = [r["eval/greedy_accuracy"] for r in rows if "eval/greedy_accuracy" in r]
    assert acc == [0.0] and not math.isnan(acc[0])
