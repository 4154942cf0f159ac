"""Tool calling: JSON schemas of typed Python functions, calls parsed in the chat template's own
format, and their execution within a time limit, each result (or error) a ``{"role": "tool"}`` message.

A tool is a plain function with type hints and a Google-style docstring (``Args:``); its schema is
transformers' ``get_json_schema`` and goes to ``apply_chat_template(tools=...)``. The model calls it
in the template's format: Hermes/Qwen write ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
(the default). Nothing the model writes can crash the run: a malformed call, an unknown tool, bad
arguments, a tool that raises or runs past ``timeout_s`` each come back as an error message for the
model to read. A tool that hangs keeps its thread (Python cannot kill one); tools that run code should
run it in :mod:`grpo.llm.infra.sandbox`, which kills the program at its own limit.
"""

from __future__ import annotations

import inspect
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from grpo.core import Registry

Message = dict[str, Any]


def tool_schemas(tools: list[Callable]) -> list[dict]:
    """The JSON schema of each tool, from its signature and docstring (transformers' ``get_json_schema``)."""
    from transformers.utils import get_json_schema

    out = []
    for fn in tools:
        try:
            out.append(get_json_schema(fn))
        except Exception as err:  # noqa: BLE001 - transformers raises its own error types
            raise ValueError(f"tool {getattr(fn, '__name__', fn)!r}: no JSON schema from its signature and "
                             f"docstring ({err}); give every argument a type hint and an 'Args:' line") from None
    return out


@dataclass
class ParsedTurn:
    """An assistant turn split into its text and tool calls; ``errors`` holds one line per malformed call."""

    content: str
    calls: list[dict] = field(default_factory=list)  # {"name": str, "arguments": dict}
    errors: list[str] = field(default_factory=list)

    @property
    def wants_tools(self) -> bool:
        return bool(self.calls or self.errors)


# Tool-call formats, by name; each maps the assistant's text -> ParsedTurn.
TOOL_CALL_PARSERS: Registry = Registry("tool-call format")
_HERMES = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)


@TOOL_CALL_PARSERS.register("hermes")
def parse_hermes(text: str) -> ParsedTurn:
    """Hermes/Qwen calls: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, several allowed.

    >>> parse_hermes('Let me add. <tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>')
    ParsedTurn(content='Let me add.', calls=[{'name': 'add', 'arguments': {'a': 1}}], errors=[])
    >>> parse_hermes('<tool_call>{"name": "add", "arguments": </tool_call>').errors
    ['malformed tool call, not JSON (Expecting value at char 28): {"name": "add", "arguments":']
    """
    start = text.find("<tool_call>")
    turn = ParsedTurn(text if start < 0 else text[:start].strip())
    for body in _HERMES.findall(text):
        body = body.strip()
        try:
            call = json.loads(body)
        except ValueError as err:
            msg = getattr(err, "msg", str(err))
            turn.errors.append(f"malformed tool call, not JSON ({msg} at char {getattr(err, 'pos', '?')}): {body[:200]}")
            continue
        if not (isinstance(call, dict) and isinstance(call.get("name"), str)):
            turn.errors.append(f"malformed tool call, expected {{\"name\": str, \"arguments\": object}}: {body[:200]}")
            continue
        args = call.get("arguments", {})
        if isinstance(args, str):  # some models write the arguments as a JSON string
            try:
                args = json.loads(args)
            except ValueError:
                pass
        if not isinstance(args, dict):
            turn.errors.append(f"tool call {call['name']!r}: arguments {args!r:.100} are not a JSON object")
            continue
        turn.calls.append({"name": call["name"], "arguments": args})
    return turn


def parser_for(tokenizer: Any) -> Callable[[str], ParsedTurn]:
    """The tool-call parser matching the tokenizer's chat template (Hermes/Qwen by default)."""
    return TOOL_CALL_PARSERS.get("hermes")  # the one format registered; others key off the template's markers


def assistant_message(turn: ParsedTurn) -> Message:
    """The assistant message for the history: text plus calls in the chat-template ``tool_calls`` form."""
    msg: Message = {"role": "assistant", "content": turn.content}
    if turn.calls:
        msg["tool_calls"] = [{"type": "function", "function": c} for c in turn.calls]
    return msg


def _call_with_timeout(fn: Callable, args: dict, timeout_s: float | None) -> tuple[bool, Any]:
    """(finished, value or exception); a call still running after ``timeout_s`` is left to its daemon thread."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(**args)
        except BaseException as err:  # noqa: BLE001 - the tool's error goes back to the model
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True, name=f"tool-{getattr(fn, '__name__', 'fn')}")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return False, None
    return True, box.get("error", box.get("value"))


def run_tool_calls(turn: ParsedTurn, tools: list[Callable], timeout_s: float | None) -> tuple[list[Message], int]:
    """One tool message per call (and per malformed call, in order of the errors first); returns
    (messages, number of errors). Results are sent as text (JSON for non-strings)."""
    by_name = {fn.__name__: fn for fn in tools}
    out = [{"role": "tool", "content": f"error: {e}"} for e in turn.errors]
    errors = len(turn.errors)
    for call in turn.calls:
        name, args, fn = call["name"], call["arguments"], by_name.get(call["name"])
        if fn is None:
            text = f"error: unknown tool {name!r}; available: {', '.join(sorted(by_name)) or 'none'}"
        else:
            try:
                inspect.signature(fn).bind(**args)
            except TypeError as err:
                text = f"error: bad arguments for {name}: {err}"
            else:
                done, value = _call_with_timeout(fn, args, timeout_s)
                if not done:
                    text = f"error: tool {name!r} did not finish within {timeout_s} s"
                elif isinstance(value, BaseException):
                    text = f"error: {name} raised {type(value).__name__}: {value}"
                else:
                    text = value if isinstance(value, str) else json.dumps(value, default=str)
        errors += text.startswith("error: ")
        out.append({"role": "tool", "name": name, "content": text})
    return out, errors
