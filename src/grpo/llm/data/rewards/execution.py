"""The ``code`` reward: the fraction of a row's tests that the completion's function passes.

Each completion's code runs in :mod:`grpo.llm.infra.sandbox` under ``_code_harness.py``, which receives
only the solution and the test *inputs* and sends back what each call returned, as JSON. The
expected values, and so the verdict, stay in the trainer: the comparison (:func:`same_value`)
runs here on plain data, never calling an object the solution made. A solution that reads the
harness's frames, patches ``json`` or builtins, prints fake results, exits early with status 0 or
returns an object whose ``__eq__`` always says True gets no credit for it (issue 11): exit status
and printed text are not the verdict, only values equal to the expected ones are.

Limits (see :mod:`grpo.llm.infra.sandbox`): the sandbox does not hide readable files, so the program
can read a task file its uid may read (keep it 0600 when the trainer runs as root, so that the
sandbox's own uid cannot). ``timeout_s`` is for all of a completion's calls together; the calls
that returned before a timeout still count.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from grpo.llm.data.rewards.base import register
from grpo.llm.data.rewards.code_tests import TestCase, parse_tests, same_value
from grpo.llm.infra.sandbox import SandboxResult, run_untrusted

_HARNESS = (Path(__file__).parent / "_code_harness.py").read_text()
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def extract_code(completion: str | Sequence[Mapping[str, Any]]) -> str:
    """The program in a completion: its last ```python block, else its last unlabelled block,
    else the whole text. Conversational completions use the last message's content.

    >>> extract_code("Here:\\n```python\\nprint(1)\\n```\\nDone.")
    'print(1)\\n'
    >>> extract_code("x = 1")
    'x = 1'
    >>> extract_code([{"role": "assistant", "content": "```py\\ny = 2\\n```"}])
    'y = 2\\n'
    """
    text = completion if isinstance(completion, str) else completion[-1]["content"]
    blocks = _FENCE.findall(text)
    chosen = [b for lang, b in blocks if lang.lower() in ("python", "py", "python3")]
    chosen = chosen or [b for lang, b in blocks if not lang]
    return chosen[-1] if chosen else text


@dataclass(frozen=True)
class TestRun:
    """One solution against its tests: ``passed`` and a one-line ``outcome`` per test."""

    __test__ = False  # not a pytest test class

    passed: tuple[bool, ...]
    outcomes: tuple[str, ...]
    sandbox: SandboxResult

    @property
    def score(self) -> float:
        return sum(self.passed) / len(self.passed) if self.passed else 0.0


def _returned(stdout: str, n: int) -> dict[int, dict]:
    """Per call index, the first well-formed line the sandbox sent for it (plain JSON data)."""
    found: dict[int, dict] = {}
    for line in stdout.splitlines():
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if type(item) is dict and type(item.get("i")) is int and 0 <= item["i"] < n:
            found.setdefault(item["i"], item)
    return found


def run_tests(code: str, tests: Sequence[TestCase], *, timeout_s: float = 5.0, memory_mb: int = 512,
              max_output_bytes: int = 2**20) -> TestRun:
    """Run ``code``'s functions on the tests' inputs in the sandbox; compare the values here.

    >>> run_tests("def add(a, b):\\n    return a + b", [TestCase("add", [2, 3], 5)]).passed
    (True,)
    """
    job = {"solution": code, "calls": [[t.fn, json.dumps(t.args)] for t in tests]}
    result = run_untrusted(_HARNESS, stdin=json.dumps(job), timeout_s=timeout_s, memory_mb=memory_mb,
                           max_output_bytes=max_output_bytes)
    returned = _returned(result.stdout, len(tests))
    passed, outcomes = [], []
    for i, test in enumerate(tests):
        item = returned.get(i, {})
        try:
            ok = "value" in item and same_value(item["value"], test.expected)
            outcome = "passed" if ok else (
                f"returned {json.dumps(item['value'])[:200]}, expected {json.dumps(test.expected)[:200]}"
                if "value" in item else str(item.get("error", result.killed_reason or "no result"))[:300])
        except RecursionError:  # a value nested deeper than this thread's stack allows
            ok, outcome = False, "returned a value nested too deeply to compare"
        passed.append(ok)
        outcomes.append(outcome)
    return TestRun(tuple(passed), tuple(outcomes), result)


@register("code", accuracy=True, columns=("tests",))
def code_execution_reward(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    tests: Sequence[Any] | None = None,
    entry_point: Sequence[str | None] | None = None,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    workers: int | None = None,
    **columns: Any,
) -> list[float | None]:
    """Fraction of the row's ``tests`` (see :mod:`grpo.llm.data.rewards.code_tests`) that the
    completion's code passes in the sandbox; None for a sample without tests. Accuracy counts a
    completion right when it passes all of them.

    >>> code_execution_reward(["add"], ["```python\\ndef add(a, b):\\n    return a + b\\n```"],
    ...                       tests=[["assert add(2, 3) == 5", "assert add(1, 1) == 3"]])
    [0.5]
    """
    N = len(completions)
    tests = list(tests) if tests is not None else [None] * N
    entry_point = list(entry_point) if entry_point is not None else [None] * N
    if len(tests) != N or len(entry_point) != N:
        raise ValueError(f"got {len(tests)} tests and {len(entry_point)} entry points for {N} completions")
    cases = [parse_tests(t, e) if t else None for t, e in zip(tests, entry_point)]  # bad rows fail first

    def score(completion: Any, case: list[TestCase] | None) -> float | None:
        if not case:
            return None
        return run_tests(extract_code(completion), case, timeout_s=timeout_s, memory_mb=memory_mb).score

    n_workers = workers or min(N, os.cpu_count() or 1) or 1
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        return list(pool.map(score, completions, cases))
