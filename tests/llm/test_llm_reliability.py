"""Bad rewards (raise, hang, NaN, wrong length, wrong type) and non-finite updates in the LLM trainer."""

from __future__ import annotations

import math
import time

import pytest
import torch

from grpo.errors import NonFiniteError
from grpo.llm.config import GRPOConfig
from grpo.llm.data.tasks import load_rows
from grpo.llm.data.rewards import RewardError, RewardSet
from grpo.llm.algorithms.grpo import GRPOTrainer

PROMPTS = ["1+1=", "2+2=", "3+3=", "4+4="]
COMPLETIONS = ["2", "oops", "6", "8"]


def fails_on_oops(prompts, completions, **_):
    return [1.0 / 0 if c == "oops" else 1.0 for c in completions]  # ZeroDivisionError on sample 1


def nan_on_oops(prompts, completions, **_):
    return [math.nan if c == "oops" else 1.0 for c in completions]


def hangs(prompts, completions, **_):
    time.sleep(3)
    return [1.0] * len(completions)


def one_too_few(prompts, completions, **_):
    return [1.0] * (len(completions) - 1)


def text_not_number(prompts, completions, **_):
    return ["yes"] * len(completions)


@pytest.mark.parametrize("fn, message", [
    (fails_on_oops, "raised ZeroDivisionError.*sample 1 .*'oops'"),
    (nan_on_oops, "returned nan for sample 1 .*'oops'"),
    (hangs, "did not return within 0.2 s"),
    (one_too_few, "returned 3 values for 4 completions"),
    (text_not_number, "returned yes for sample 0"),
])
def test_bad_rewards_raise_an_error_naming_the_function_and_sample(fn, message):
    rewards = RewardSet({"bad": fn}, timeout_s=0.2)
    with pytest.raises(RewardError, match=f"reward 'bad' {message}"):
        rewards(PROMPTS, COMPLETIONS)


def test_zero_policy_scores_only_the_failing_sample_zero():
    rewards = RewardSet({"bad": fails_on_oops, "nan": nan_on_oops}, on_failure="zero")
    scored = rewards(PROMPTS, COMPLETIONS)
    assert scored.total.tolist() == [2.0, 0.0, 2.0, 2.0]
    assert scored.failed is None


def test_drop_policy_marks_failing_samples():
    scored = RewardSet({"nan": nan_on_oops}, on_failure="drop")(PROMPTS, COMPLETIONS)
    assert scored.failed.tolist() == [False, True, False, False]
    assert torch.isfinite(scored.total).all()


def test_hung_reward_under_zero_policy_returns_quickly():
    start = time.perf_counter()
    scored = RewardSet({"slow": hangs}, on_failure="zero", timeout_s=0.2)(PROMPTS, COMPLETIONS)
    assert time.perf_counter() - start < 2.0
    assert scored.total.tolist() == [0.0] * 4


def test_unknown_failure_policy_is_refused():
    with pytest.raises(ValueError, match="failure policy"):
        RewardSet({"x": nan_on_oops}, on_failure="ignore")
    with pytest.raises(ValueError, match="reward_failure"):
        GRPOConfig(reward_failure="ignore")


def _trainer(tiny, reward, **overrides):
    model, tok = tiny
    rows = load_rows("addition", "train")[:4]
    cfg = GRPOConfig(**{"max_new_tokens": 4, "prompts_per_step": 4, "group_size": 4, "beta": 0.0, "seed": 0,
                        "lr": 1e-3, **overrides})
    return GRPOTrainer(cfg, model, tok, rows, reward)


def test_dropped_groups_do_not_move_the_policy(tiny):
    """Every group has a failing sample under 'drop': the update must change nothing."""
    def always_one_nan(prompts, completions, **_):
        return [math.nan if i % 4 == 0 else float(len(c)) for i, c in enumerate(completions)]

    trainer = _trainer(tiny, RewardSet({"r": always_one_nan}, on_failure="drop"))
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    trainer.step(0)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters()))


def test_non_finite_loss_skips_the_update_then_stops(tiny, monkeypatch):
    import grpo.llm.algorithms.grpo as trainer_mod

    trainer = _trainer(tiny, RewardSet({"len": lambda p, c, **_: [float(len(x)) for x in c]}), nonfinite_limit=2)
    real = trainer_mod.grpo_loss
    monkeypatch.setattr(trainer_mod, "grpo_loss", lambda *a, **k: (lambda l, m: (l * math.nan, m))(*real(*a, **k)))
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    metrics, _ = trainer.step(0)
    assert metrics["train/skipped_updates"] == 1
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters()))
    with pytest.raises(NonFiniteError, match="2 updates in a row"):
        trainer.step(1)
