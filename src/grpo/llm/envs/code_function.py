"""Write a Python function, graded by tests run in the sandbox (built-in env ``code-function``).

Each reset seed picks a problem; the model answers with code (a ```python block or bare code). Its
function runs on the tests' inputs in :mod:`grpo.llm.infra.sandbox` and the values are compared in
the trainer (:func:`grpo.llm.data.rewards.execution.run_tests`). All tests pass: reward 1, done.
Otherwise the failing tests go back as feedback and the model tries again, up to ``attempts``
answers; the last one's share of passed tests is the reward. A ``run_python`` tool runs scratch
code in the sandbox and returns its output.
"""

from __future__ import annotations

import random
from typing import Any

from grpo.llm.data.rewards.code_tests import parse_tests
from grpo.llm.data.rewards.execution import extract_code, run_tests
from grpo.llm.infra.sandbox import run_untrusted

# (prompt, tests as MBPP-style asserts)
PROBLEMS = (
    ("Write a function add(a, b) that returns the sum of two numbers.",
     "assert add(2, 3) == 5\nassert add(-1, 1) == 0\nassert add(10, 32) == 42"),
    ("Write a function reverse(s) that returns the string s reversed.",
     "assert reverse('abc') == 'cba'\nassert reverse('') == ''\nassert reverse('ab') == 'ba'"),
    ("Write a function is_even(n) that returns True when n is even, else False.",
     "assert is_even(2) == True\nassert is_even(7) == False\nassert is_even(0) == True"),
    ("Write a function maximum(xs) that returns the largest number of a non-empty list.",
     "assert maximum([1, 5, 3]) == 5\nassert maximum([-2, -9]) == -2\nassert maximum([4]) == 4"),
    ("Write a function count_vowels(s) that returns how many of the letters of s are vowels (aeiou).",
     "assert count_vowels('hello') == 2\nassert count_vowels('xyz') == 0\nassert count_vowels('aeiou') == 5"),
    ("Write a function factorial(n) that returns n! for n >= 0.",
     "assert factorial(0) == 1\nassert factorial(5) == 120\nassert factorial(3) == 6"),
)


def run_python(code: str) -> str:
    """Run a Python program in a sandbox and return what it printed (and any error).

    Args:
        code: the program's source
    """
    result = run_untrusted(code, timeout_s=5.0, memory_mb=256, max_output_bytes=4096)
    out = result.stdout + (f"\n{result.stderr}" if result.stderr else "")
    return (out.strip() or "(no output)") + (f"\n[{result.killed_reason}]" if result.killed_reason else "")


class CodeFunctionEnv:
    """Gymnasium-style text env (``reset``/``step``); the tool :func:`run_python` runs in the sandbox."""

    tools = [run_python]

    def __init__(self, attempts: int = 3):
        self.attempts, self.tries, self.tests = attempts, 0, []

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[list[dict], dict]:
        prompt, tests = PROBLEMS[random.Random(seed).randrange(len(PROBLEMS))]
        self.tries, self.tests = 0, parse_tests(tests)
        system = "Answer with the function in a ```python block. Failing tests are shown; then fix the code."
        return [{"role": "system", "content": system}, {"role": "user", "content": prompt}], {}

    def step(self, assistant_message: dict) -> tuple[list[dict], float, bool, bool, dict[str, Any]]:
        self.tries += 1
        run = run_tests(extract_code(assistant_message.get("content") or ""), self.tests, timeout_s=5.0)
        info = {"passed_frac": run.score, "solved": float(all(run.passed)), "attempts": float(self.tries)}
        if all(run.passed) or self.tries >= self.attempts:
            return [], run.score, True, False, info
        failing = [f"{t.fn}({', '.join(map(repr, t.args))}): {o}"
                   for t, o, ok in zip(self.tests, run.outcomes, run.passed) if not ok]
        return [{"role": "user", "content": "Some tests failed:\n" + "\n".join(failing[:5])}], 0.0, False, False, info
