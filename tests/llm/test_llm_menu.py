"""The algorithm menu in the language-model trainer: every entry is reachable by name, remax gets
its greedy baseline, and the rollout importance-sampling correction acts on an engine whose
log-probs differ from the trainer's by a known amount."""

from __future__ import annotations

import math

import pytest
import torch

from grpo.core import OUTCOME_ESTIMATORS, POLICY_LOSSES, ROLLOUT_CORRECTIONS, TOKEN_SELECTIONS
from grpo.llm.algorithms.grpo import GRPOTrainer
from grpo.llm.config import (ADVANTAGE_ESTIMATOR_NAMES, POLICY_LOSS_NAMES, ROLLOUT_CORRECTION_NAMES,
                             TOKEN_SELECTION_NAMES, GRPOConfig)
from grpo.llm.data.rewards import REWARDS, RewardSet
from grpo.llm.data.tasks import load_rows
from grpo.llm.rollout.generation import generate_cached

ROWS = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a in range(3) for b in range(3)]


def by_position(prompts, completions, **_):
    """A reward that always differs inside a group (the random tiny model is never right)."""
    return [float(i % 3) for i in range(len(completions))]


def rewards() -> RewardSet:
    return RewardSet({"position": by_position, "exact": REWARDS.get("exact")}, {"position": 1.0, "exact": 1.0})


def test_config_menu_names_match_core_registries():
    assert tuple(OUTCOME_ESTIMATORS.names()) == ADVANTAGE_ESTIMATOR_NAMES
    assert tuple(POLICY_LOSSES.names()) == POLICY_LOSS_NAMES
    assert tuple(TOKEN_SELECTIONS.names()) == TOKEN_SELECTION_NAMES
    assert tuple(ROLLOUT_CORRECTIONS.names()) == ROLLOUT_CORRECTION_NAMES


def test_bad_policy_loss_argument_is_one_line():
    with pytest.raises(ValueError, match="policy loss argument 'tau=1'"):
        GRPOConfig(model="x", policy_loss_args=["tau=1"])
    assert GRPOConfig(model="x", policy_loss_args=["dual_clip_c=4"]).policy_loss_args == ["dual_clip_c=4"]


def _trainer(model, tok, **kw):
    cfg = GRPOConfig(model="x", prompts_per_step=2, group_size=4, max_new_tokens=3, beta=0.0, seed=3,
                     max_grad_norm=None, **kw)
    return GRPOTrainer(cfg, model, tok, ROWS, rewards()), cfg


@pytest.mark.parametrize("name", ADVANTAGE_ESTIMATOR_NAMES)
def test_every_estimator_runs_a_step(random_tiny, name):
    model, tok = random_tiny
    trainer, _ = _trainer(model, tok, advantage_estimator=name)
    metrics, _ = trainer.step(0)
    assert math.isfinite(metrics["loss/total"])


@pytest.mark.parametrize("name", POLICY_LOSS_NAMES)
def test_every_policy_loss_runs_two_updates(random_tiny, name):
    model, tok = random_tiny
    trainer, _ = _trainer(model, tok, policy_loss=name, mu=2, token_selection="top-entropy")
    metrics, _ = trainer.step(0)
    assert math.isfinite(metrics["loss/total"]) and metrics["policy/grad_norm"] > 0


def by_text(prompts, completions, **_):
    """A reward that depends on the completion's characters."""
    return [float(sum(map(ord, c)) % 7) for c in completions]


def test_remax_advantage_is_reward_minus_greedy_reward(random_tiny, monkeypatch):
    model, tok = random_tiny
    cfg = GRPOConfig(model="x", prompts_per_step=2, group_size=4, max_new_tokens=3, beta=0.0, seed=3,
                     advantage_estimator="remax", temperature=2.0)
    trainer = GRPOTrainer(cfg, model, tok, ROWS, RewardSet({"text": by_text}))
    calls = []
    real = trainer.sampler.greedy_rewards
    monkeypatch.setattr(trainer.sampler, "greedy_rewards", lambda rows: calls.append(rows) or real(rows))
    g = trainer.sampler.collect(0)
    adv = trainer.advantages(g)[:, 0].view(2, 4)
    assert len(calls) == 1 and len(calls[0]) == 2  # one greedy completion per prompt
    ids, mask = g.rollout.prompt_ids[::4], g.rollout.prompt_mask[::4]
    greedy = generate_cached(model, tok, ids, mask, 1, 3, greedy=True).completions  # [B]
    expected = torch.tensor(by_text(None, greedy))
    torch.testing.assert_close(adv, g.scored.total.view(2, 4) - expected[:, None])


def _known_offset_engine(delta: float):
    """The cached engine with its log-probs lowered by ``delta``: pi_old / pi_engine = e^delta per token."""
    def engine(*args, **kw):
        roll = generate_cached(*args, **kw)
        if roll.sampling_logp is not None:
            roll.sampling_logp = roll.sampling_logp - delta
        return roll
    return engine


def _grad(model, tok, delta, **kw):
    torch.manual_seed(0)
    m = type(model)(model.config)
    m.load_state_dict(model.state_dict())
    trainer, _ = _trainer(m, tok, aggregation="token-mean", **kw)
    trainer.sampler.generate_fn = _known_offset_engine(delta)
    trainer.opt = torch.optim.SGD(m.parameters(), lr=0.0)  # read the gradient, keep the weights
    metrics, g = trainer.step(0)
    grad = torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None])
    return grad, metrics


def test_cached_engine_log_probs_match_the_trainer(random_tiny):
    model, tok = random_tiny
    trainer, _ = _trainer(model, tok)
    g = trainer.sampler.collect(0)
    roll = g.rollout
    logp = trainer._no_grad_logprobs(model, roll)
    mask = roll.completion_mask.bool()
    torch.testing.assert_close(roll.sampling_logp[mask], logp[mask], atol=1e-4, rtol=1e-4)


def test_rollout_correction_with_known_engine_mismatch(random_tiny):
    model, tok = random_tiny
    base, _ = _grad(model, tok, 0.0)
    doubled, m = _grad(model, tok, math.log(2.0), rollout_correction="token-truncate", rollout_correction_cap=3.0)
    assert m["rollout_is/ratio_mean"] == pytest.approx(2.0, rel=1e-3)
    torch.testing.assert_close(doubled, 2 * base, rtol=1e-3, atol=1e-6)  # every token weighted by w = 2
    capped, _ = _grad(model, tok, math.log(4.0), rollout_correction="token-truncate", rollout_correction_cap=3.0)
    torch.testing.assert_close(capped, 3 * base, rtol=1e-3, atol=1e-6)  # w = 4 truncated to 3
    masked, m = _grad(model, tok, math.log(4.0), rollout_correction="token-mask", rollout_correction_cap=3.0)
    assert m["rollout_is/zero_frac"] == pytest.approx(1.0) and masked.abs().max() == 0  # w = 4 > 3: masked
    off, _ = _grad(model, tok, math.log(2.0))  # correction off: the mismatch is ignored
    torch.testing.assert_close(off, base)


def test_off_policy_sequence_mask_drops_negative_drifted_sequences(random_tiny):
    model, tok = random_tiny
    _, m = _grad(model, tok, -0.5, off_policy_mask_delta=0.1)  # sampling log-probs 0.5 above the trainer's
    assert 0 < m["rollout_is/off_policy_masked_frac"] < 1  # the negative-advantage sequences only


def test_top_entropy_keeps_a_fifth_of_the_tokens(random_tiny):
    model, tok = random_tiny
    trainer, _ = _trainer(model, tok, token_selection="top-entropy")
    g = trainer.sampler.collect(0)
    mask = g.rollout.completion_mask.float()
    w = trainer._token_weights(g.rollout, mask)
    assert float(w.sum()) == pytest.approx(round(0.2 * float(mask.sum())), abs=1)


def test_tiny_addition_task_loads():
    assert load_rows("addition")
