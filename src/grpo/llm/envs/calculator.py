"""Arithmetic word problems answered with the help of a calculator tool (built-in env ``calculator``).

Each reset seed draws a problem from a few templates with random numbers (drawn again until the
answer is not negative); the model may call ``calculator(expression)`` any number of times (each
call a tool turn), then answers in plain text. :meth:`CalculatorEnv.expert` plays it as a scripted
player would (one call, then the result), the demonstrations of ``grpo llm sft``.
The episode ends at the first answer that is not a tool call: reward 1 when its final number (as
the ``numeric`` reward reads it) equals the answer, else 0 (``info["correct"]``).
"""

from __future__ import annotations

import ast
import json
import operator
import random
from typing import Any

from grpo.llm.data.rewards.answer import numeric_answer

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}

# (text with {a} {b} {c}, the expression that answers it); numbers drawn in 2..40
TEMPLATES = (
    ("A shop sells {a} apples in the morning and {b} in the afternoon, at {c} dollars each. How many dollars "
     "does it take in?", "({a} + {b}) * {c}"),
    ("A train has {a} cars with {b} seats each; {c} seats are empty. How many people are seated?",
     "{a} * {b} - {c}"),
    ("Tom had {a} marbles, won {b} more, then gave {c} to each of his 2 sisters. How many are left?",
     "{a} + {b} - 2 * {c}"),
    ("A farm has {a} hens laying {b} eggs a week each. Eggs go in boxes of {c}; how many full boxes a week?",
     "{a} * {b} // {c}"),
    ("A class of {a} pupils and {c} teachers splits into teams of {b}. How many full teams can it make?",
     "({a} + {c}) // {b}"),
)


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression and return its value.

    Args:
        expression: numbers with + - * / // % ** and parentheses, e.g. "(12 + 7) * 3"
    """
    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise ValueError("exponent too large")
            return _OPS[type(node.op)](left, right)
        raise ValueError(f"not arithmetic: {ast.unparse(node)!r}")

    value = ev(ast.parse(expression.strip(), mode="eval").body)
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


class CalculatorEnv:
    """Gymnasium-style text env (``reset``/``step``) with one tool, :func:`calculator`."""

    tools = [calculator]

    def __init__(self) -> None:
        self.answer: int | None = None
        self.expression = ""  # the expression that answers the problem (the expert's call)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[list[dict], dict]:
        rng = random.Random(seed)
        text, expression = TEMPLATES[rng.randrange(len(TEMPLATES))]
        self.answer = -1
        while self.answer < 0:  # numbers drawn again until the story makes sense (no negative marbles or seats)
            a, b, c = (rng.randint(2, 40) for _ in range(3))
            self.expression = expression.format(a=a, b=b, c=c)
            self.answer = int(calculator(self.expression))
        system = "Solve the problem. You may call the calculator tool. End with the final number as your answer."
        return [{"role": "system", "content": system},
                {"role": "user", "content": text.format(a=a, b=b, c=c)}], {"answer": self.answer}

    def step(self, assistant_message: dict) -> tuple[list[dict], float, bool, bool, dict[str, Any]]:
        # graded as the numeric reward grades word problems: the final answer's number (after "the answer
        # is" and the like, else the last one), commas ignored
        correct = bool(numeric_answer([""], [assistant_message.get("content") or ""], answer=[self.answer])[0])
        return [], float(correct), True, False, {"correct": float(correct)}

    def expert(self, messages: list[dict]) -> str:
        """A scripted player's next message (``grpo llm sft`` learns from it): one calculator call with the
        problem's expression, then the tool's result as the answer."""
        if messages[-1]["role"] == "tool":
            return f"The answer is {messages[-1]['content']}."
        call = {"name": "calculator", "arguments": {"expression": self.expression}}
        return f"<tool_call>{json.dumps(call)}</tool_call>"
