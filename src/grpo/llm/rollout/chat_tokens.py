"""Token-exact multi-turn trajectories: the model's sampled tokens are never decoded and encoded again.

A trajectory is the first prompt's tokens, then per turn the tokens the model sampled (kept as
sampled, EOS included) and the tokens the environment's reply adds. Those are the *text difference*
between two renderings of the chat template: ``render(history + [assistant] + new, generation
prompt)`` minus ``render(history + [assistant])``, encoded on its own, plus whatever the template
writes after the assistant's end-of-turn token (Qwen's newline after ``<|im_end|>``), which the model
did not sample. Re-encoding the assistant's text instead could give other ids (``"a" "b"`` sampled,
``"ab"`` re-encoded) and train the model on tokens it never produced (the drift that TRL, verl and
SkyRL users report).
"""

from __future__ import annotations

import json
import os
from typing import Any

Message = dict[str, Any]


def tool_note(schemas: list[dict]) -> str:
    """The tools described in Hermes' words, for templates that do not render ``tools=``."""
    lines = "\n".join(json.dumps(s) for s in schemas)
    return (f"You may call these tools:\n<tools>\n{lines}\n</tools>\nTo call one, write <tool_call>{{\"name\": "
            "NAME, \"arguments\": {...}}</tool_call>; its result comes back in a tool message.")


def _common_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


class ChatTokens:
    """Renders messages with the tokenizer's chat template (and the env's tool schemas) into ids."""

    def __init__(self, tokenizer: Any, tools: list[dict] | None = None):
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("multi-turn training needs a tokenizer with a chat template; set tokenizer.chat_template "
                             "(a Jinja string) in the model folder's tokenizer_config.json")
        self.tok, self.tools = tokenizer, tools or None
        probe = [{"role": "user", "content": "x"}]
        # A template that ignores tools= (SmolLM2's, say) would leave the model unaware of them: then they are
        # described in the system message, in the Hermes format the parser reads.
        self.tool_note = tool_note(self.tools) if self.tools and self.render(probe, True) == \
            tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True) else None

    def opening(self, messages: list[Message]) -> list[Message]:
        """The episode's opening messages, with the tools described when the template does not do it."""
        if not self.tool_note:
            return messages
        if messages[0]["role"] == "system":
            return [{"role": "system", "content": messages[0]["content"] + "\n\n" + self.tool_note}] + messages[1:]
        return [{"role": "system", "content": self.tool_note}] + messages

    def render(self, messages: list[Message], generation_prompt: bool) -> str:
        return self.tok.apply_chat_template(messages, tools=self.tools, tokenize=False,
                                            add_generation_prompt=generation_prompt)

    def encode(self, text: str) -> list[int]:
        # The template writes any BOS itself: no special tokens added (as the single-turn prompts).
        return self.tok(text, add_special_tokens=False).input_ids

    def first_prompt(self, messages: list[Message]) -> tuple[list[int], str]:
        """Ids of the episode's opening messages plus the generation prompt, and that text."""
        text = self.render(messages, True)
        return self.encode(text), text

    def reply(self, history: list[Message], assistant: Message, new: list[Message], last_sampled: int,
              prompted: str) -> tuple[list[int], str]:
        """Ids that follow the sampled turn (which ended with the token ``last_sampled``): the rest of the
        assistant turn as the template writes it, ``new`` messages and the next generation prompt; and the
        text of the conversation with that prompt. ``prompted``: that text before the turn (``history``'s)."""
        closed = self.render(history + [assistant], False)
        full = self.render(history + [assistant] + new, True)
        if not full.startswith(closed):
            at = _common_prefix(closed, full)
            raise ValueError(f"the chat template renders earlier turns differently once new messages follow "
                             f"(they differ at {closed[at:at + 40]!r} vs {full[at:at + 40]!r}); multi-turn needs a "
                             "template whose rendering of a conversation extends it, not rewrites it")
        return self.encode(self._after_end(prompted, closed, last_sampled) + full[len(closed):]), full

    def _after_end(self, prompted: str, closed: str, last_sampled: int) -> str:
        """Template text after the end-of-turn token inside the closed assistant turn ("" if absent)."""
        end = self.tok.decode([last_sampled], skip_special_tokens=False)
        turn_start = _common_prefix(prompted, closed)
        k = closed.rfind(end) if end else -1
        return closed[k + len(end):] if k >= turn_start else ""
