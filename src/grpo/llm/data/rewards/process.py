"""A built-in process reward: each answer digit is a step, rewarded when it is right."""

from __future__ import annotations

from typing import Any

from grpo.llm.data.rewards.answer import _gold_text
from grpo.llm.data.rewards.base import StepRewards, register


@register("digits", columns=("answer",))
def digit_steps(prompts: list[str], completions: list[str], answer: list[Any], **_: Any) -> list[StepRewards]:
    """Process supervision for arithmetic: step i is the i-th digit of the gold answer; reward 1
    when the completion has the same character there, else 0. Digits the completion misses are
    wrong steps ending at its last character, so stopping early is not a way to avoid them; extra
    characters are wrong steps too.

    >>> digit_steps(["1+1="], ["23"], answer=["24"])[0]
    StepRewards(rewards=[1.0, 0.0], ends=[1, 2])
    >>> digit_steps(["1+1="], ["2"], answer=["24"])[0]
    StepRewards(rewards=[1.0, 0.0], ends=[1, 1])
    """
    out = []
    for c, a in zip(completions, answer):
        gold, text = _gold_text(a), c.strip()
        n = max(len(gold), len(text), 1)
        rewards = [float(i < len(text) and i < len(gold) and text[i] == gold[i]) for i in range(n)]
        out.append(StepRewards(rewards, [max(1, min(i + 1, len(text))) for i in range(n)]))
    return out
