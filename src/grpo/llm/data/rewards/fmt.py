"""Format reward: reasoning in ``<think>...</think>``, then the answer in ``<answer>...</answer>``."""

from __future__ import annotations

import re
from typing import Any

from grpo.llm.data.rewards.base import register

_FORMAT = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.S)


@register("format")
def think_answer_format(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
    """1.0 when the whole completion is ``<think>...</think><answer>...</answer>``.

    >>> think_answer_format(["q"] * 3, ["<think>2+2</think> <answer>4</answer>", "<answer>4</answer>",
    ...                                 "<think>a</think><answer>4</answer> more"])
    [1.0, 0.0, 0.0]
    """
    return [float(bool(_FORMAT.match(c))) for c in completions]
