"""Transcripts: a user's own conversations laid out token for token as the rollout lays out an episode
(the data of ``grpo llm sft --data FILE``).

A transcript is a list of chat messages in the OpenAI/TRL form (system, user, assistant, tool), an
assistant message holding text ``content`` and/or structured ``tool_calls``. Each assistant message is
the text the model should learn to write: its content, then each call in the Hermes ``<tool_call>``
JSON the rollout parses (:func:`assistant_text`), encoded and closed with the end-of-turn token. Every
other message is context: the template's tokens between two assistant turns are exactly those the
rollout inserts after an environment's or a tool's reply (:class:`ChatTokens`), so a model trained here
meets in GRPO the layout it learnt.
"""

from __future__ import annotations

import json
from typing import Any

from grpo.llm.envs.tools import ParsedTurn, assistant_message, parser_for
from grpo.llm.rollout.chat_tokens import ChatTokens, Message
from grpo.llm.rollout.episodes import Episode

ROLES = ("system", "user", "assistant", "tool")


def assistant_text(msg: Message) -> str:
    """What the model writes for an assistant message: its content, then its structured tool calls in
    the Hermes format (arguments given as a JSON string, as OpenAI does, are read first).

    >>> assistant_text({"role": "assistant", "content": "The answer is 4."})
    'The answer is 4.'
    >>> assistant_text({"role": "assistant", "content": None, "tool_calls": [
    ...     {"type": "function", "function": {"name": "calculator", "arguments": '{"expression": "2 + 2"}'}}]})
    '<tool_call>{"name": "calculator", "arguments": {"expression": "2 + 2"}}</tool_call>'
    """
    text = msg.get("content") or ""
    for call in msg.get("tool_calls") or []:
        fn = call.get("function", call)
        args = fn.get("arguments") or {}
        args = json.loads(args) if isinstance(args, str) else args
        text += "<tool_call>" + json.dumps({"name": fn["name"], "arguments": args}) + "</tool_call>"
    return text


def check_transcript(messages: Any, what: str) -> list[Message]:
    """``messages`` as a transcript: a list of messages with a known role, str content (an assistant's may
    be empty when it has tool calls), and at least one assistant message after an opening one; a
    ValueError naming ``what`` otherwise."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{what}: 'messages' is {messages!r:.80}, not a non-empty list of chat messages")
    for m in messages:
        ok = isinstance(m, dict) and m.get("role") in ROLES and (
            isinstance(m.get("content"), str) or (m.get("role") == "assistant" and m.get("tool_calls")))
        if not ok:
            raise ValueError(f"{what}: the message {m!r:.120} is not {{\"role\": {'|'.join(ROLES)}, \"content\": str}} "
                             "(an assistant message may have tool_calls instead)")
    first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), None)
    if first is None:
        raise ValueError(f"{what}: no assistant message, so nothing to learn")
    if first == 0:
        raise ValueError(f"{what}: starts with an assistant message; a transcript opens with a system or user one")
    return messages


def transcript_episode(tokenizer: Any, messages: list[Message], tools: list[dict] | None, eos_id: int) -> Episode:
    """The token trajectory of one transcript: ``trained`` true on each assistant message's tokens and its
    end-of-turn token ``eos_id``; ``tools``: JSON schemas handed to the chat template (or described in the
    system message when the template ignores them), as for an environment's tools."""
    chat, parse = ChatTokens(tokenizer, tools), parser_for(tokenizer)
    first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
    opening = chat.opening(messages[:first])
    ids, text = chat.first_prompt(opening)
    e = Episode(seed=-1, env=None, ids=ids, prompt_len=len(ids), messages=list(opening), prompted=text)
    i, turn = first, 0
    while i < len(messages):
        text = assistant_text(messages[i])
        e.add(chat.encode(text) + [eos_id], trained=True, turn=turn)
        e.rewards.append(0.0)
        parsed = parse(text) if tools else ParsedTurn(text)  # the history holds it as the rollout would
        msg = assistant_message(parsed) if parsed.wants_tools else {"role": "assistant", "content": text}
        j = next((k for k in range(i + 1, len(messages)) if messages[k]["role"] == "assistant"), len(messages))
        history, new = list(e.messages), messages[i + 1:j]
        e.messages += [msg] + new
        if j < len(messages):  # the replies before the next assistant turn: context
            reply, e.prompted = chat.reply(history, msg, new, eos_id, e.prompted)
            e.add(reply, trained=False, turn=turn)
        i, turn = j, turn + 1
    e.stop, e.terminated = "terminated", True
    return e


def read_transcripts(path: str) -> list[tuple[list[Message], list[dict] | None]]:
    """(messages, tool schemas or None) of each line of a JSONL file ``{"messages": [...], "tools": [...]}``
    (``tools`` optional); one-line errors naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            what = f"--data {path} line {n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{what}: not JSON ({err.msg})") from None
            if not isinstance(row, dict) or "messages" not in row:
                raise ValueError(f"{what}: expected an object with 'messages' (and optional 'tools')")
            tools = row.get("tools") or None
            if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
                raise ValueError(f"{what}: 'tools' must be a list of JSON schemas (objects)")
            rows.append((check_transcript(row["messages"], what), tools))
    if not rows:
        raise ValueError(f"--data {path}: no transcripts in the file")
    return rows
