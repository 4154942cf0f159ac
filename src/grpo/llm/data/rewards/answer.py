"""Rewards that check a final answer against the ``answer`` column: 1.0 right, 0.0 wrong."""

from __future__ import annotations

import re
import threading
from typing import Any

from grpo.llm.data.rewards.base import register

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
# "The answer is 12", "Answer: $12", "#### 12", "\\boxed{12}": a number right after such a marker
_MARKER = re.compile(r"answer\s*(?:is|was|=)?\s*:?|####|\\boxed\{", re.I)
_LEADING_NUMBER = re.compile(r"[\s*$\\(]*(-?\d[\d,]*(?:\.\d+)?)")
_OPERATOR_NEXT = re.compile(r"\s*[-+*/×÷=]")


def _final_text(completion: str) -> str:
    """The part holding the answer: inside ``<answer>...</answer>`` when present."""
    m = _ANSWER_TAG.search(completion)
    return m.group(1) if m else completion


def final_number(text: str) -> str | None:
    """The answer's number: the last one right after an answer marker ("answer is", "Answer:", "####",
    ``\\boxed{``) that does not start a sum ("answer: 5 + 7 = 12" reads on), else the last number.

    >>> final_number("The answer is 12. Tom had 5 apples."), final_number("5 + 7 = 12 apples")
    ('12', '12')
    >>> final_number("**Answer:** $1,200"), final_number("Answer: 5 + 7 = 12"), final_number("none")
    ('1,200', '12', None)
    """
    for marker in reversed(list(_MARKER.finditer(text))):
        number = _LEADING_NUMBER.match(text, marker.end())
        if number and not _OPERATOR_NEXT.match(text, number.end()):
            return number.group(1)
    found = _NUMBER.findall(text)
    return found[-1] if found else None


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
    """1.0 when the completion's final number (:func:`final_number`: after "the answer is" and the
    like, else the last one) equals the gold number (commas ignored, ``12.0`` equals ``12``).

    >>> numeric_answer(["q"], ["so the total is 1,234."], answer=["1234"])
    [1.0]
    >>> numeric_answer(["q"] * 3, ["The answer is 12. (5 + 7)", "$12.0", "12.5"], answer=["12"] * 3)
    [1.0, 1.0, 0.0]
    >>> numeric_answer(["q"], ["no number"], answer=["7"]), numeric_answer(["q"], ["7"], answer=["n/a"])
    ([0.0], [None])
    """
    out: list[float | None] = []
    for c, a in zip(completions, answer):
        gold = _to_number(_gold_text(a))
        found = final_number(_final_text(c))
        pred = _to_number(found) if found else None
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
