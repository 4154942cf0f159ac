"""Test cases of the ``code`` reward: parsed from a task row, compared by value (issue 11).

A test case is a call and the value it must return. The call's inputs go to the sandbox; the
expected value stays in the trainer, which compares the plain JSON data the sandbox sent back
(:func:`same_value`). Nothing the solution defines is ever called here.

A row's ``tests`` is a list of test cases, or one string (assert lines, or JSON text of that list):

- ``"assert add(2, 3) == 5"``: MBPP's form. The call's arguments and the expected value must be
  Python literals; a string may hold several such asserts, one per statement.
- ``{"input": [2, 3], "output": 5}``: positional arguments and the expected value; the function is
  the row's ``entry_point``.

Values are JSON data: None, bool, int, float, str, list, dict with str keys. Tuples become lists
(so a solution may return either), as in JSON.
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass
from typing import Any

_FORMS = ("'assert NAME(ARGS) == EXPECTED' with literal arguments and value, "
          "or {\"input\": [ARGS], \"output\": EXPECTED}")


@dataclass(frozen=True)
class TestCase:
    """``fn(*args)`` must return ``expected`` (both JSON data)."""

    __test__ = False  # not a pytest test class

    fn: str
    args: list
    expected: Any


def json_value(x: Any, what: str = "value") -> Any:
    """``x`` as JSON data (tuples become lists); ValueError naming ``what`` if it is not data.

    >>> json_value((1, [2.5, "a"], {"k": None}))
    [1, [2.5, 'a'], {'k': None}]
    >>> json_value({1, 2}, "expected value")
    Traceback (most recent call last):
    ValueError: expected value {1, 2} is a set, not JSON data (None, bool, int, float, str, list, dict with str keys)
    """
    t = type(x)
    if x is None or t in (bool, int, float, str):
        return x
    if t in (list, tuple):
        return [json_value(v, what) for v in x]
    if t is dict and all(type(k) is str for k in x):
        return {k: json_value(v, what) for k, v in x.items()}
    raise ValueError(f"{what} {x!r} is a {t.__name__}, not JSON data "
                     "(None, bool, int, float, str, list, dict with str keys)")


def same_value(got: Any, want: Any) -> bool:
    """Equality of two JSON values: bools are not numbers; ints and floats compare as numbers,
    floats within a relative 1e-9 (NaN never matches); lists and dicts element by element.

    >>> same_value([1, 2.0, {"a": "x"}], [1.0, 2, {"a": "x"}]), same_value(0.1 + 0.2, 0.3)
    (True, True)
    >>> same_value(True, 1), same_value([1, 2], [1, 2, 3]), same_value(None, 0), same_value("5", 5)
    (False, False, False, False)
    """
    tg, tw = type(got), type(want)
    if tg is bool or tw is bool:
        return tg is tw and got == want
    if tg in (int, float) and tw in (int, float):
        if tg is int and tw is int:
            return got == want
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=0.0)
    if tg is not tw:
        return False
    if tg is list:
        return len(got) == len(want) and all(same_value(g, w) for g, w in zip(got, want))
    if tg is dict:
        return got.keys() == want.keys() and all(same_value(got[k], want[k]) for k in want)
    return got == want  # str, None


def _literal(node: ast.expr, what: str) -> Any:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"{what} {ast.unparse(node)!r} is not a Python literal") from None
    return json_value(value, what)


def _from_assert(stmt: ast.stmt, source: str) -> TestCase:
    bad = ValueError(f"test {source!r}: not of the form {_FORMS}")
    if not (isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Compare)
            and len(stmt.test.ops) == 1 and isinstance(stmt.test.ops[0], ast.Eq)):
        raise bad
    left, right = stmt.test.left, stmt.test.comparators[0]
    call, expected = (left, right) if isinstance(left, ast.Call) else (right, left)
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and not call.keywords
            and not any(isinstance(a, ast.Starred) for a in call.args)):
        raise bad
    args = [_literal(a, f"test {source!r}: argument") for a in call.args]
    return TestCase(call.func.id, args, _literal(expected, f"test {source!r}: expected value"))


def _from_asserts(text: str) -> list[TestCase]:
    try:
        tree = ast.parse(text.strip())
    except SyntaxError as err:
        raise ValueError(f"test {text!r}: not valid Python ({err.msg}); use {_FORMS}") from None
    return [_from_assert(s, ast.get_source_segment(text.strip(), s) or text) for s in tree.body]


def _from_dict(test: dict, entry_point: str | None) -> TestCase:
    if set(test) != {"input", "output"} or type(test["input"]) not in (list, tuple):
        raise ValueError(f"test {test!r}: not of the form {_FORMS}")
    if not entry_point:
        raise ValueError(f"test {test!r}: an input/output test needs the row's 'entry_point' (the function name)")
    return TestCase(entry_point, json_value(test["input"], "input"), json_value(test["output"], "output"))


def parse_tests(tests: Any, entry_point: str | None = None) -> list[TestCase]:
    """A row's ``tests`` as test cases; ValueError naming the test and the accepted forms.

    >>> parse_tests("assert add(2, 3) == 5\\nassert add(-1, (1,)) == [0]")
    [TestCase(fn='add', args=[2, 3], expected=5), TestCase(fn='add', args=[-1, [1]], expected=[0])]
    >>> parse_tests('[{"input": ["ab"], "output": "ba"}]', entry_point="rev")
    [TestCase(fn='rev', args=['ab'], expected='ba')]
    """
    if isinstance(tests, str):
        if tests.lstrip().startswith("["):
            try:
                tests = json.loads(tests)
            except ValueError as err:
                raise ValueError(f"tests {tests[:80]!r}: not valid JSON ({err})") from None
        else:
            return _from_asserts(tests)
    if not isinstance(tests, (list, tuple)):
        raise ValueError(f"tests {tests!r}: expected a list of tests or a string; use {_FORMS}")
    cases: list[TestCase] = []
    for test in tests:
        if isinstance(test, str):
            cases += _from_asserts(test)
        elif isinstance(test, dict):
            cases.append(_from_dict(test, entry_point))
        else:
            raise ValueError(f"test {test!r}: not of the form {_FORMS}")
    return cases
