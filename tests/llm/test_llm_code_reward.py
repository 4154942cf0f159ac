"""The ``code`` reward (issue 11): the verdict comes from values compared in the trainer, so code
that cheats the harness scores 0; the reward is reachable as ``--reward code``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grpo.cli import main
from grpo.llm.data.tasks import load_rows
from grpo.llm.data.rewards import RewardSet
from grpo.llm.data.rewards.code_tests import TestCase, parse_tests
from grpo.llm.data.rewards.execution import code_execution_reward, run_tests
from grpo.utils.io import read_jsonl

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tasks" / "code.jsonl"
TESTS = ["assert add(2, 3) == 5"]
SOLUTION = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```\n"


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def test_scores_passing_failing_and_hanging_code():
    completions = [
        SOLUTION,
        fenced("def add(a, b):\n    return a - b"),  # wrong
        fenced("def add(a, b)\n    return a + b"),  # syntax error
        fenced("while True:\n    pass"),  # never ends
        [{"role": "assistant", "content": SOLUTION}],  # conversational format
        SOLUTION,  # no tests for this sample
    ]
    tests = TESTS * 5 + [None]
    rewards = code_execution_reward(["p"] * 6, completions, tests=tests, timeout_s=1.0, topic=["x"] * 6)
    assert rewards == [1.0, 0.0, 0.0, 0.0, 1.0, None]


# Each exploit passed the old harness (assert strings run in the solution's process, a token
# printed last) with a wrong or missing `add`; each must score 0.
EXPLOITS = {
    # issue 11: read the token from the harness's frame, print it, exit before any test ran
    "harness-frame-token": """
import os, re, sys
cfg = sys._getframe(1).f_locals['cfg']
print(re.findall(r"print\\('([0-9a-f]{32})'\\)", cfg['code'])[-1])
os._exit(0)
""",
    # issue 11: an object equal to everything
    "eq-always-true": """
class Anything:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = object.__hash__
def add(a, b):
    return Anything()
""",
    "int-subclass-eq": """
class Five(int):
    def __eq__(self, other):
        return True
def add(a, b):
    return Five(0)
""",
    "exit-0-before-tests": "def add(a, b):\n    return 0\nraise SystemExit(0)",
    "exit-builtin": "def add(a, b):\n    return 0\nexit()",
    "os-exit-in-call": "import os\ndef add(a, b):\n    os._exit(0)",
    "patch-json-and-builtins": """
import builtins, json
json.dumps = lambda *a, **k: '{"i": 0, "passed": true, "value": true}'
json.loads = lambda *a, **k: [2, 3]
builtins.type = lambda x: int
builtins.isinstance = lambda *a: True
def add(a, b):
    return 0
""",
    "print-fake-results": """
print('{"i": 0, "value": 5}')
print('{"i": 0, "passed": true}')
print('PASSED')
def add(a, b):
    return 0
""",
    "write-every-fd": """
import os
for fd in range(3, 64):
    try:
        os.write(fd, b'{"i": 0, "passed": true, "ok": true, "value": true}\\n')
    except OSError:
        pass
def add(a, b):
    return 0
""",
    # values the trainer's parser and comparison must survive: nested near the recursion limit, huge
    "deep-or-huge-values": """
import os
def add(a, b):
    return 0
for line in ('[' * 990 + ']' * 990, '[' * 100000, '9' * 100000):
    for fd in range(3, 64):
        try:
            os.write(fd, ('{"i": 0, "value": ' + line + '}\\n').encode())
        except OSError:
            pass
""",
}


@pytest.mark.parametrize("name", EXPLOITS)
def test_exploits_score_zero(name):
    assert code_execution_reward(["p"], [fenced(EXPLOITS[name])], tests=TESTS) == [0.0]


def test_exit_status_and_printed_text_are_not_the_verdict():
    code = "import atexit, os\natexit.register(os._exit, 7)\nprint('FAILED')\ndef add(a, b):\n    return a + b"
    run = run_tests(code, parse_tests(TESTS))
    assert run.sandbox.returncode == 7 and run.passed == (True,)
    assert code_execution_reward(["p"], [fenced(code)], tests=TESTS) == [1.0]


def test_expected_values_never_reach_the_solution():
    """The solution dumps every frame's locals, its stdin and fds: it sees the inputs, not the answer."""
    spy = """
import os, sys
seen, f = [], sys._getframe()
while f is not None:
    seen += [repr(v)[:20000] for v in f.f_locals.values()]
    f = f.f_back
for fd in range(64):
    try:
        seen.append(os.pread(fd, 1 << 16, 0).decode(errors='replace'))
    except OSError:
        pass
sys.stderr.write('\\n'.join(seen))
def add(a, b):
    return 0
"""
    run = run_tests(spy, [TestCase("add", [13579, 2468], 918273645)])
    assert "13579" in run.sandbox.stderr  # the dump works: it found the inputs
    assert "918273645" not in run.sandbox.stderr and run.passed == (False,)


def test_partial_credit_and_calls_before_a_hang_count():
    code = "def f(x):\n    while x == 0:\n        pass\n    return x"
    tests = [["assert f(1) == 1", "assert f(2) == 2", "assert f(0) == 0", "assert f(3) == 3"]]
    assert code_execution_reward(["p"], [fenced(code)], tests=tests, timeout_s=1.0) == [0.5]
    run = run_tests(code, parse_tests(tests[0]), timeout_s=1.0)
    assert run.outcomes == ("passed", "passed", "timeout", "timeout")


def test_values_compared_as_data():
    code = "def f(x):\n    return x\ndef g():\n    return {1, 2}"
    run = run_tests(code, parse_tests("assert f((1, 2)) == [1, 2]\nassert f(1) == True\nassert f(0.30000000000000004) == 0.3"
                                      "\nassert g() == [1, 2]\nassert f(1.0) == 1"))
    assert run.passed == (True, False, True, False, True)
    assert run.outcomes[1] == "returned 1, expected true" and "not JSON data" in run.outcomes[3]


def test_input_output_tests_and_solution_side_effects():
    """Dict tests use entry_point; printing and a crashing main block do not spoil the calls."""
    code = "print('debug')\ndef rev(s):\n    return s[::-1]\nx = input()\n"
    tests = [{"input": ["ab"], "output": "ba"}, {"input": [""], "output": ""}, {"input": ["abc"], "output": "abc"}]
    assert code_execution_reward(["p"], [fenced(code)], tests=[tests], entry_point=["rev"]) == [pytest.approx(2 / 3)]
    assert code_execution_reward(["p"], [fenced(code)], tests=[json.dumps(tests)], entry_point=["rev"]) == [
        pytest.approx(2 / 3)]


@pytest.mark.parametrize("tests,message", [
    ("assert add(2, 3) > 4", "not of the form"),
    ("assert add(x, 3) == 5", "argument 'x' is not a Python literal"),
    ("import os", "not of the form"),
    ("assert add(2, 3) == {5}", "is a set, not JSON data"),
    ([{"input": [1], "output": 1}], "needs the row's 'entry_point'"),
    ("[{", "not valid JSON"),
])
def test_bad_tests_are_one_line_errors(tests, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_tests(tests)
    assert "\n" not in str(err.value)


# Reference solutions of examples/tasks/code.jsonl, keyed by entry point.
REFERENCE = {
    "add": "def add(a, b):\n    return a + b",
    "reverse_words": "def reverse_words(s):\n    return ' '.join(reversed(s.split()))",
    "is_palindrome": "def is_palindrome(s):\n    t = [c.lower() for c in s if c.isalpha()]\n    return t == t[::-1]",
    "fizzbuzz": "def fizzbuzz(n):\n    return 'Fizz' * (n % 3 == 0) + 'Buzz' * (n % 5 == 0) or str(n)",
    "count_vowels": "def count_vowels(s):\n    return sum(c in 'aeiouAEIOU' for c in s)",
    "factorial": "import math\ndef factorial(n):\n    return math.factorial(n)",
    "second_largest": "def second_largest(xs):\n    v = sorted(set(xs))\n    return v[-2] if len(v) > 1 else None",
    "word_count": "from collections import Counter\ndef word_count(text):\n    return dict(Counter(text.lower().split()))",
    "flatten": "def flatten(xs):\n    return [y for x in xs for y in (flatten(x) if isinstance(x, list) else [x])]",
    "running_sum": "from itertools import accumulate\ndef running_sum(xs):\n    return list(accumulate(xs))",
}


def test_named_reward_on_the_example_file():
    """Through the registry, on the shipped rows: references 1, a wrong solution < 1, exploits 0."""
    rows = load_rows(str(EXAMPLE))
    rewards = RewardSet.from_specs(["code"])
    rewards.check_columns(list(rows[0]))
    columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
    prompts = [r["prompt"] for r in rows]
    right = rewards(prompts, [fenced(REFERENCE[r["entry_point"]]) for r in rows], **columns)
    assert right.total.tolist() == [1.0] * len(rows) and right.accuracy.tolist() == [1.0] * len(rows)

    add = [i for i, r in enumerate(rows) if r["entry_point"] == "add"]
    one = {k: [v[i] for i in add] for k, v in columns.items()}
    wrong = rewards(["p"], [fenced("def add(a, b):\n    return int(a) + int(b)")], **one)  # right on ints only
    assert 0 < wrong.total.item() < 1 and wrong.accuracy.item() == 0
    for code in (EXPLOITS["harness-frame-token"], EXPLOITS["eq-always-true"]):
        assert rewards(["p"], [fenced(code)], **one).total.item() == 0.0


def test_cli_trains_with_reward_code(tiny_path, tmp_path, capsys):
    """``grpo llm train --reward code --task FILE`` scores samples and greedy accuracy with it."""
    task = tmp_path / "code.jsonl"
    task.write_text("".join(json.dumps({"prompt": f"def f{i}(x):", "tests": [f"assert f{i}({i}) == {i}"]}) + "\n"
                            for i in range(4)))
    out = tmp_path / "run"
    assert main(["llm", "train", "--model", str(tiny_path), "--out", str(out), "--task", str(task), "--split",
                 "train", "--eval-holdout", "2", "--reward", "code", "--steps", "2", "--prompts-per-step", "2",
                 "--group-size", "2", "--max-new-tokens", "4", "--eval-limit", "2", "--progress", "false",
                 "--tensorboard", "false", "--threads", "1"]) == 0
    assert "greedy accuracy before: 0.0%" in capsys.readouterr().out  # scored by the code reward
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1] and metrics[0]["reward/code/mean"] == 0.0
    assert all(s["rewards"]["code"] == 0.0 for s in read_jsonl(out / "samples.jsonl"))
