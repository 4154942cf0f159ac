"""Tool calling (issue 14): schemas from typed functions, Hermes calls parsed, every failure a tool message."""

from __future__ import annotations

import time

import pytest

from grpo.llm.envs.tools import ParsedTurn, parse_hermes, run_tool_calls, tool_schemas


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first
        b: the second
    """
    return a + b


def explode(x: str) -> str:
    """Always fails.

    Args:
        x: ignored
    """
    raise ZeroDivisionError("nope")


def hang(x: str) -> str:
    """Sleeps past any time limit.

    Args:
        x: ignored
    """
    time.sleep(3)
    return "late"


def test_schema_from_signature_and_docstring():
    (schema,) = tool_schemas([add])
    fn = schema["function"]
    assert fn["name"] == "add" and fn["description"] == "Add two integers."
    assert fn["parameters"]["properties"]["a"] == {"type": "integer", "description": "the first"}
    assert fn["parameters"]["required"] == ["a", "b"]


def test_schema_refuses_untyped_function_in_one_line():
    def untyped(x):
        return x

    with pytest.raises(ValueError, match="tool 'untyped': no JSON schema") as err:
        tool_schemas([untyped])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text, calls, n_errors", [
    ('ok <tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>', [("add", {"a": 1, "b": 2})], 0),
    ('<tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"}</tool_call>', [("add", {"a": 1})], 0),  # string args
    ('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call><tool_call>{"name": "add"}</tool_call>',
     [("add", {"a": 1}), ("add", {})], 0),
    ('<tool_call>{"name": "add", "arguments": {"a": 1,</tool_call>', [], 1),  # not JSON
    ('<tool_call>{"name": "add", "arguments": {"a": 1}}', [("add", {"a": 1})], 0),  # unclosed at the end
    ('<tool_call>[1, 2]</tool_call>', [], 1),  # not an object
    ('<tool_call>{"arguments": {}}</tool_call>', [], 1),  # no name
    ('<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>', [], 1),  # arguments not an object
    ('<tool_call></tool_call>', [], 1),
    ("no call at all", [], 0),
])
def test_parse_hermes(text, calls, n_errors):
    turn = parse_hermes(text)
    assert [(c["name"], c["arguments"]) for c in turn.calls] == calls
    assert len(turn.errors) == n_errors
    assert turn.wants_tools == bool(calls or n_errors)


def test_every_bad_call_becomes_an_error_message():
    turn = ParsedTurn("", [{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "sub", "arguments": {}},
                           {"name": "add", "arguments": {"a": 1, "c": 2}}, {"name": "explode", "arguments": {"x": "1"}},
                           {"name": "hang", "arguments": {"x": "1"}}], ["malformed tool call, not JSON"])
    t0 = time.monotonic()
    msgs, errors = run_tool_calls(turn, [add, explode, hang], timeout_s=0.3)
    assert time.monotonic() - t0 < 2.5  # the hanging tool did not hold the rollout
    texts = [m["content"] for m in msgs]
    assert all(m["role"] == "tool" for m in msgs) and errors == 5
    assert texts[0] == "error: malformed tool call, not JSON"
    assert texts[1] == "3"
    assert texts[2].startswith("error: unknown tool 'sub'; available: add, explode, hang")
    assert texts[3].startswith("error: bad arguments for add:")
    assert texts[4] == "error: explode raised ZeroDivisionError: nope"
    assert texts[5] == "error: tool 'hang' did not finish within 0.3 s"
