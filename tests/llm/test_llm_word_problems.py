"""The built-in chat task ``word-problems`` (issue 13) and the ``numeric`` reward that scores it."""

from __future__ import annotations

import re

import pytest

from grpo.llm.data import word_problems as wp
from grpo.llm.data.rewards import REWARDS
from grpo.llm.data.sources import SplitNotFound
from grpo.llm.data.tasks import default_rewards, load_rows


def _text(row) -> str:
    return row["prompt"][-1]["content"]


def _solve(text: str) -> int:
    """An independent reading of each template's question."""
    n = [int(x) for x in re.findall(r"\d+", text)]
    if "equally among" in text:
        return n[0] // n[1]
    if "already had" in text:
        return n[0] * n[1] + n[2]
    if "and then gives" in text:
        return n[0] + n[1] - n[2]
    if "in each" in text:
        return n[0] * n[1]
    if "gave" in text:
        return n[0] - n[1]
    return n[0] + n[1]


def test_rows_are_chat_messages_with_right_whole_answers():
    test = load_rows("word-problems", "test")
    assert len(test) == wp.TEST_SIZE == 500
    for row in test:
        assert [m["role"] for m in row["prompt"]] == ["system", "user"] and row["prompt"][0]["content"] == wp.SYSTEM
        assert row["answer"] == str(_solve(_text(row))) and int(row["answer"]) >= 0
    kinds = {t.split(".")[0].split()[1] for t in map(_text, test)}  # has/had/shares/buys: several templates
    assert {"has", "had", "shares", "buys"} <= kinds
    assert len({r["prompt"][-1]["content"].split()[0] for r in test}) >= 20  # varied names


def test_splits_are_deterministic_and_disjoint_by_text():
    train, test = load_rows("word-problems", "train"), load_rows("word-problems", "test")
    assert len(train) == wp.TRAIN_SIZE and train == load_rows("word-problems", "train")
    texts_train, texts_test = [_text(r) for r in train], [_text(r) for r in test]
    assert len(set(texts_train)) == len(train) and len(set(texts_test)) == len(test)  # no repeats
    assert not set(texts_train) & set(texts_test)
    with pytest.raises(SplitNotFound, match="train and test"):
        load_rows("word-problems", "validation")


def test_the_exclusion_removes_problems_a_seed_would_draw():
    """Same seed, its own problems excluded: none of them comes back (the split disjointness does
    not rest on the two seeds happening to differ)."""
    first = wp._problems(1, 60, set())
    again = wp._problems(1, 60, {t for t, _ in first})
    assert len(again) == 60 and not {t for t, _ in first} & {t for t, _ in again}


def test_default_reward_is_numeric_and_reads_the_final_answer():
    assert default_rewards("word-problems") == ("numeric",)
    numeric = REWARDS.get("numeric")
    right = ["12", "12.0", "$12", "The answer is 12.", "12 apples", "Tom has 5 + 7 = 12 apples.",
             "The answer is 12. Tom had 5 apples and got 7 more.", "**Answer:** 12", "Answer: 5 + 7 = 12",
             "5 + 7 = 12\n#### 12", "so \\boxed{12}", "The answer is: $12.00"]
    wrong = ["13", "12.5", "", "twelve", "Tom has 5 apples and gets 7 more.", "The answer is 13. 12 was close.",
             "5 + 7 = 11", "-12"]
    scores = numeric(["q"] * (len(right) + len(wrong)), right + wrong, answer=["12"] * (len(right) + len(wrong)))
    assert scores == [1.0] * len(right) + [0.0] * len(wrong)
    assert numeric(["q"], ["In total 1,200 stamps."], answer=["1200"]) == [1.0]
