"""Rewards that check a final answer against the ``answer`` column: 1.0 right, 0.0 wrong."""

from __future__ import annotations

import re
import threading
from typing import Any

from grpo.llm.data.rewards.base import register

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)


def _final_text(completion: str) -> str:
    """The part holding the answer: inside ``<answer>...</answer>`` when present."""
    m = _ANSWER_TAG.search(completion)
    return m.group(1) if m else completion


def _gold_text(answer: Any) -> str:
    """Gold answer as text; GSM8K-style ``... #### 72`` keeps what follows ``####``."""
    text = str(answer)
    return text.split("####")[-1].strip() if "####" in text else text.strip()


def _to_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


@register("exact", accuracy=True, columns=("answer",))
def exact_answer(prompts: list[str], completions: list[str], answer: list[Any], **_: Any) -> list[float]:
    """1.0 when the (stripped) answer text equals the gold answer.

    >>> exact_answer(["1+1="], ["2"], answer=["2"]), exact_answer(["1+1="], [" 2 \\n"], answer=[2])
    ([1.0], [1.0])
    >>> exact_answer(["1+1="], ["22"], answer=["2"])
    [0.0]
    """
    return [float(_final_text(c).strip() == _gold_text(a)) for c, a in zip(completions, answer)]


@register("numeric", accuracy=True, columns=("answer",))
def numeric_answer(prompts: list[str], completions: list[str], answer: list[Any], **_: Any) -> list[float | None]:
    """1.0 when the last number in the completion equals the gold number (commas ignored).

    >>> numeric_answer(["q"], ["so the total is 1,234."], answer=["1234"])
    [1.0]
    >>> numeric_answer(["q"], ["no number"], answer=["7"]), numeric_answer(["q"], ["7"], answer=["n/a"])
    ([0.0], [None])
    """
    out: list[float | None] = []
    for c, a in zip(completions, answer):
        gold = _to_number(_gold_text(a))
        found = _NUMBER.findall(_final_text(c))
        pred = _to_number(found[-1]) if found else None
        out.append(None if gold is None else float(pred is not None and abs(pred - gold) < 1e-9))
    return out


def _verify(gold: str, completion: str) -> float | None:
    from math_verify import parse, verify

    # math-verify's timeouts use signals, which exist only in the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold_parsed = parse(gold, parsing_timeout=timeout)
    if not gold_parsed:
        return None
    pred = parse(completion, parsing_timeout=timeout)
    return float(bool(pred) and verify(gold_parsed, pred, timeout_seconds=timeout))


@register("math", accuracy=True, columns=("answer",))
def math_answer(prompts: list[str], completions: list[str], answer: list[Any], **_: Any) -> list[float | None]:
    """Math-Verify equivalence of the completion's answer (``\\boxed{}`` first, else the last
    expression) with the gold answer; None when the gold answer cannot be parsed.

    >>> math_answer(["q", "q", "q"], ["so \\\\boxed{\\\\frac{1}{2}}", "0.5", "I give up"], answer=["1/2"] * 3)
    [1.0, 1.0, 0.0]
    """
    return [_verify(_gold_text(a), _final_text(c)) for c, a in zip(completions, answer)]
