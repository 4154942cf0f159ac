"""The text-environment protocol (gymnasium style) and the checks of what an environment returns.

An environment opens an episode with ``reset(seed, options) -> (messages, info)`` and answers each
assistant message with ``step(assistant_message) -> (messages, reward, terminated, truncated,
info)``. Messages are chat messages ``{"role": "system" | "user" | "tool", "content": str}``; the
assistant message is ``{"role": "assistant", "content": str}`` plus ``"tool_calls"`` when the model
called tools. An optional attribute ``tools`` lists typed Python functions the model may call
(:mod:`grpo.llm.envs.tools`); the rollout runs those calls itself, so ``step`` sees only the
assistant's other turns. An optional ``expert(messages) -> str`` plays the assistant's next turn as a
scripted player would: the demonstrations of ``grpo llm sft`` (:mod:`grpo.llm.rollout.demonstrations`). A group of GRPO is G episodes reset with the same seed.

Whatever an environment returns is checked here; a bad value is an :class:`EnvError` naming the
environment, the episode's seed and the turn (the trainer's ``env_failure`` policy decides what
happens next).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from grpo.llm.envs import ENVS
from grpo.utils.imports import import_module, load_attr, split_ref

ENV_ROLES = ("system", "user", "tool")
Message = dict[str, Any]


@runtime_checkable
class TextEnv(Protocol):
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[list[Message], dict]: ...

    def step(self, assistant_message: Message) -> tuple[list[Message], float, bool, bool, dict]: ...


class EnvError(ValueError):
    """An environment raised or returned something outside the protocol, in one line."""


def where(env_name: str, seed: int | None, turn: int | None = None) -> str:
    return f"env {env_name!r} (episode seed {seed}" + (f", turn {turn})" if turn is not None else ")")


def check_messages(messages: Any, what: str) -> list[Message]:
    """``messages`` as a list of env chat messages; EnvError naming ``what`` otherwise.

    >>> check_messages([{"role": "user", "content": "hi"}], "env 'x'")
    [{'role': 'user', 'content': 'hi'}]
    >>> check_messages("hi", "env 'x'")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    grpo.llm.envs.base.EnvError: env 'x' returned 'hi' (str), not a list of messages {"role": "user"|...}
    """
    form = '{"role": "user"|"system"|"tool", "content": str}'
    if isinstance(messages, tuple):
        messages = list(messages)
    if not isinstance(messages, list):
        raise EnvError(f"{what} returned {messages!r:.80} ({type(messages).__name__}), not a list of messages {form}")
    for m in messages:
        if not (isinstance(m, dict) and m.get("role") in ENV_ROLES and isinstance(m.get("content"), str)):
            raise EnvError(f"{what} returned the message {m!r:.120}, not a message {form}")
    return messages


def check_step(result: Any, what: str) -> tuple[list[Message], float, bool, bool, dict]:
    """A ``step`` result checked: five values, messages, a finite reward, two booleans, a dict."""
    if not (isinstance(result, tuple) and len(result) == 5):
        raise EnvError(f"{what}: step returned {result!r:.120}; "
                       "expected (messages, reward, terminated, truncated, info)")
    messages, reward, terminated, truncated, info = result
    messages = check_messages(messages, what)
    try:
        reward = float(reward)
    except (TypeError, ValueError):
        raise EnvError(f"{what}: step returned the reward {reward!r:.80}, not a number") from None
    if not math.isfinite(reward):
        raise EnvError(f"{what}: step returned the reward {reward}, not a finite number")
    for name, flag in (("terminated", terminated), ("truncated", truncated)):
        if not isinstance(flag, (bool, np.bool_)):
            raise EnvError(f"{what}: step returned {name}={flag!r:.40}, not a bool")
    if info is not None and not isinstance(info, dict):
        raise EnvError(f"{what}: step returned the info {info!r:.80}, not a dict")
    return messages, reward, bool(terminated), bool(truncated), dict(info or {})


def env_factory(spec: str) -> tuple[str, Callable[[], Any]]:
    """(name, a function that makes a new environment) for ``--env``: a built-in name, a class as
    ``module:Class``, or a gymnasium id (``module:EnvId`` imports the module, which registers it)."""
    if spec in ENVS:
        cls = load_attr(ENVS[spec], f"env {spec!r}")
        return spec, cls
    if ":" in spec:
        module, name = split_ref(spec, "env")
        mod = import_module(module, f"env {spec!r}")
        if callable(getattr(mod, name, None)):
            return spec, getattr(mod, name)
        spec = name  # gymnasium's convention: importing the module registered the id
    import gymnasium

    if spec not in gymnasium.registry:
        raise ValueError(f"env {spec!r}: not a built-in environment ({', '.join(sorted(ENVS))}), a MODULE:CLASS, "
                         "or a registered gymnasium id")
    return spec, lambda: gymnasium.make(spec, disable_env_checker=True)


def env_tools(env: Any) -> list[Callable]:
    """The environment's tools (its own, or under gymnasium wrappers the inner env's); [] when none."""
    tools = getattr(env, "tools", None)
    if tools is None:
        tools = getattr(getattr(env, "unwrapped", None), "tools", None)
    return list(tools or [])
