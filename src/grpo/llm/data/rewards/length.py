"""Length penalty: DAPO's soft overlong punishment (arXiv 2503.14476, eq. 13)."""

from __future__ import annotations

from typing import Any

from grpo.llm.data.rewards.base import register


@register("length")
def length_penalty(prompts: list[str], completions: list[str], completion_lengths: list[int],
                   max_new_tokens: int, **_: Any) -> list[float]:
    """0 up to 3/4 of ``max_new_tokens``, then falls linearly to -1 at the limit.

    >>> length_penalty(["q"] * 3, ["a", "b", "c"], completion_lengths=[10, 35, 40], max_new_tokens=40)
    [0.0, -0.5, -1.0]
    """
    buffer = max(1, max_new_tokens // 4)
    start = max_new_tokens - buffer
    return [0.0 - min(1.0, max(0, n - start) / buffer) for n in completion_lengths]
