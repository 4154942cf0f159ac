"""Reward functions: answers (exact, numeric, math-verify), format, length, process steps, sets."""

from __future__ import annotations

import math

import pytest
import torch

from grpo.llm.data.rewards import REWARDS, RewardSet, StepRewards
from grpo.llm.data.rewards.answer import exact_answer, math_answer, numeric_answer
from grpo.llm.data.rewards.fmt import think_answer_format
from grpo.llm.data.rewards.length import length_penalty
from grpo.llm.data.rewards.process import digit_steps


@pytest.mark.parametrize("completion,gold,expected", [
    ("The answer is \\boxed{42}.", "42", 1.0),
    ("\\boxed{\\frac{1}{2}}", "0.5", 1.0),  # equivalent forms
    ("so x = 0.5", "\\frac{1}{2}", 1.0),
    ("We get 41, so \\boxed{41}", "42", 0.0),
    ("<think>6*7</think><answer>42</answer>", "Natalia sold 48/2 = 24 clips... #### 42", 1.0),  # GSM8K gold
    ("", "42", 0.0),  # empty completion
    ("\\boxed{", "42", 0.0),  # malformed LaTeX does not raise
    ("I don't know", "42", 0.0),
])
def test_math_answer_cases(completion, gold, expected):
    assert math_answer(["q"], [completion], answer=[gold]) == [expected]


def test_math_answer_unparseable_gold_is_none():
    assert math_answer(["q"], ["42"], answer=["no answer given"]) == [None]


def test_numeric_and_exact_answers():
    assert numeric_answer(["q"] * 4, ["it is 1,234", "-7", "3.50 dollars", "none"], answer=["1234", "-7", "3.5", "1"]) \
        == [1.0, 1.0, 1.0, 0.0]
    assert exact_answer(["q"] * 3, ["46", "46 ", "<answer>46</answer>"], answer=[46, "46", "46"]) == [1.0, 1.0, 1.0]
    assert exact_answer(["q"] * 2, ["4", "466"], answer=["46", "46"]) == [0.0, 0.0]


def test_format_reward_accepts_only_the_full_pattern():
    good = "<think>\nadd the tens\n</think>\n<answer>46</answer>"
    bad = ["<answer>46</answer>", "<think>x</think>", "46", "<think>x</think><answer>46</answer> trailing",
           "<think>x<answer>46</answer>", ""]
    assert think_answer_format(["q"] * (1 + len(bad)), [good] + bad) == [1.0] + [0.0] * len(bad)


def test_length_penalty_soft_overlong():
    assert length_penalty(["q"] * 4, ["x"] * 4, completion_lengths=[0, 192, 224, 256], max_new_tokens=256) \
        == [0.0, 0.0, -0.5, -1.0]


def test_digit_steps_counts_missing_and_extra_digits_as_wrong():
    out = digit_steps(["q"] * 3, ["46", "4", "467"], answer=["46"] * 3)
    assert out[0] == StepRewards([1.0, 1.0], [1, 2])
    assert out[1] == StepRewards([1.0, 0.0], [1, 1])
    assert out[2] == StepRewards([1.0, 1.0, 0.0], [1, 2, 3])


def test_reward_set_weights_none_and_logging():
    def sometimes(prompts, completions, **_):
        return [None, 1.0]

    rs = RewardSet.from_specs(["exact:2"], extra={"custom": sometimes})
    scored = rs(["1+1=", "1+1="], ["2", "3"], answer=["2", "2"])
    assert scored.names == ["custom", "exact"]
    assert math.isnan(scored.per_fn[0, 0]) and scored.per_fn[1, 0] == 1.0
    assert scored.total.tolist() == [2.0, 1.0]  # None counts 0; exact weighted 2
    assert scored.accuracy.tolist() == [1.0, 0.0]


def test_reward_set_errors():
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        RewardSet.from_specs(["nope"])
    with pytest.raises(ValueError, match="weight after ':' must be a number"):
        RewardSet.from_specs(["exact:high"])
    with pytest.raises(ValueError, match="needs column"):
        RewardSet.from_specs(["math"]).check_columns(["question"])
    bad = RewardSet({"short": lambda prompts, completions, **_: [1.0]})
    with pytest.raises(ValueError, match="returned 1 values for 2"):
        bad(["a", "b"], ["x", "y"])


def test_process_rewards_give_process_advantages(random_tiny):
    """A step reward ends at a token; tokens before it collect it (DeepSeekMath 4.1.3)."""
    from grpo.llm.config import GRPOConfig
    from grpo.llm.rollout.generation import Rollout
    from grpo.llm.algorithms.grpo import GRPOTrainer
    from grpo.llm.rollout.batch import Batch

    model, tok = random_tiny
    rows = [{"prompt": "1+1=", "answer": "46"}]
    texts = ["46", "45"]
    ids = tok(texts, add_special_tokens=False).input_ids
    comp = torch.tensor([i + [tok.eos_token_id] for i in ids])  # [2, 3]
    roll = Rollout(torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1, dtype=torch.long), comp,
                   torch.ones(2, 3, dtype=torch.long), torch.tensor([False, False]), texts)
    rs = RewardSet.from_specs(["digits"])
    scored = rs(["1+1="] * 2, texts, answer=["46", "46"])
    cfg = GRPOConfig(model="x", group_size=2, prompts_per_step=1)
    tr = GRPOTrainer(cfg, model, tok, rows, rs)
    adv = tr.advantages(Batch(rows, ["1+1="], roll, scored, 0.0, 0.0))  # [2, 3]
    # step rewards of the group [1, 1, 1, 0]: mean 0.75, std 0.5 -> +0.5 (right), -1.5 (wrong)
    hi, lo = 0.25 / (0.5 + 1e-4), -0.75 / (0.5 + 1e-4)
    torch.testing.assert_close(adv, torch.tensor([[2 * hi, hi, 0.0], [hi + lo, lo, 0.0]]))


def test_registry_lists_builtins():
    assert {"exact", "numeric", "math", "format", "length", "digits"} <= set(REWARDS.names())
