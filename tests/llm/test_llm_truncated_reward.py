"""``--truncated-reward``: completions cut at max_new_tokens score a fixed reward, before dynamic
sampling judges which groups have spread; the ReMax baseline is scored the same way."""

from __future__ import annotations

import math

import pytest
import torch

from grpo.llm.algorithms.grpo import GRPOTrainer
from grpo.llm.config import GRPOConfig
from grpo.llm.data.rewards import RewardSet
from grpo.llm.infra.distributed import Runtime
from grpo.llm.rollout.generation import eos_ids_of, finish_rollout
from grpo.llm.run import check_scale_out


def _always_one(prompts, completions, **_):
    return [1.0] * len(completions)


def _trainer(random_tiny, truncated_reward, completions):
    """A GRPO trainer whose engine returns ``completions`` (token rows) for any 2 prompts x G 2."""
    model, tok = random_tiny
    rows = [{"prompt": f"{i}+1=", "answer": str(i + 1)} for i in range(4)]
    cfg = GRPOConfig(model="x", prompts_per_step=2, group_size=2, max_new_tokens=3, beta=0.0, lr=1e-3,
                     dynamic_sampling=True, max_resample=0, truncated_reward=truncated_reward)
    tr = GRPOTrainer(cfg, model, tok, rows, RewardSet({"one": _always_one}))

    def engine(model, tok, ids, mask, G, *args):
        ids_c = torch.tensor(completions[: len(ids) * G])
        return finish_rollout(tok, ids, mask, ids_c, eos_ids_of(tok, model), G)

    tr.sampler.generate_fn = engine
    return tr


def test_cut_completions_score_the_truncated_reward_and_groups_are_judged_after(random_tiny):
    tok = random_tiny[1]
    x, eos, pad = tok.convert_tokens_to_ids("7"), tok.eos_token_id, tok.pad_token_id
    # group 0: one answer finished, one cut; group 1: both cut
    rows = [[x, eos, pad], [x, x, x], [x, x, x], [x, x, x]]
    g = _trainer(random_tiny, 0.0, rows).sampler.collect(0)
    assert g.rollout.truncated.tolist() == [False, True]  # only group 0 had spread, and was kept
    assert g.scored.total.tolist() == [1.0, 0.0] and g.scored.per_fn[:, 0].tolist() == [1.0, 0.0]
    assert g.zero_std_frac == 0.5
    # negative control: scored as they are, every completion gets 1 and no group has spread
    g = _trainer(random_tiny, None, rows).sampler.collect(0)
    assert len(g.rows) == 0 and g.zero_std_frac == 1.0


def test_the_remax_baseline_scores_cut_greedy_completions_the_same_way(random_tiny):
    tok = random_tiny[1]
    x, eos, pad = tok.convert_tokens_to_ids("7"), tok.eos_token_id, tok.pad_token_id
    tr = _trainer(random_tiny, -0.5, [[x, eos, pad], [x, x, x]])
    assert tr.sampler.greedy_rewards(tr.sampler.rows[:2]).tolist() == [1.0, -0.5]


def test_a_truncated_reward_must_be_finite_and_is_single_turn():
    with pytest.raises(ValueError, match="truncated_reward=nan"):
        GRPOConfig(truncated_reward=math.nan)
    with pytest.raises(ValueError, match="--truncated-reward"):
        check_scale_out(GRPOConfig(env="guess-number", truncated_reward=0.0), Runtime(torch.device("cpu")))


def test_a_cut_completions_process_steps_score_the_truncated_reward_too():
    from grpo.llm.data.rewards.base import ScoredBatch, StepRewards
    from grpo.llm.rollout.sampler import score_truncated

    steps = [StepRewards([1.0, 0.5], [3, 7]), StepRewards([1.0, 1.0], [2, 9]), None]
    scored = ScoredBatch(torch.ones(3, 1), torch.ones(3), ["steps"], steps=steps)
    out = score_truncated(scored, torch.tensor([False, True, True]), -0.5)
    assert out.steps[0] == steps[0] and out.steps[2] is None  # finished: as scored; no steps given: none
    assert out.steps[1] == StepRewards([-0.5, -0.5], [2, 9])  # cut: every step scores the value, at its own end
    assert score_truncated(scored, torch.tensor([False, True, True]), None).steps == steps  # negative control
