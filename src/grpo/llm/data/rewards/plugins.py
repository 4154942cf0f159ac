"""Rewards of one's own from the command line: ``--reward my_pkg.rewards:exact_json[:WEIGHT]``.

A spec is a built-in ``NAME[:WEIGHT]`` when what follows its first ``:`` is a number (or
nothing), else ``MODULE:FUNCTION[:WEIGHT]``: a function name is never a number, so
``format:0.5``, ``my_rewards:exact`` and ``my_rewards:exact:0.5`` read one way each. The
function is imported and its signature checked against the reward protocol
(:class:`grpo.llm.data.rewards.base.RewardFn`) at start-up, before any model is loaded. It is logged
under its own name (``reward/exact_json/mean``); a function with ``fn.accuracy = True`` is counted
as the accuracy check, and the named parameters it requires (``answer``) as the columns it needs.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from grpo.llm.data.rewards.base import REWARDS, RewardSet, parse_reward_spec, reward_weight
from grpo.utils.imports import load_attr

ALWAYS_PASSED = ("completion_lengths", "max_new_tokens")  # keywords every call gets, besides the data's columns
PROTOCOL = "fn(prompts, completions, **columns) -> list of float | None | StepRewards, one per completion"


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def is_plugin_spec(spec: str) -> bool:
    """True for ``MODULE:FUNCTION[:WEIGHT]``, False for a built-in ``NAME[:WEIGHT]``.

    >>> [is_plugin_spec(s) for s in ("exact", "format:0.5", "my.rewards:fn", "rw:fn:2")]
    [False, False, True, True]
    """
    _, sep, rest = spec.partition(":")
    return bool(sep) and not _is_number(rest) and rest != ""


def parse_plugin_spec(spec: str) -> tuple[str, float]:
    """``"mod:fn[:WEIGHT]"`` -> (``"mod:fn"``, weight).

    >>> parse_plugin_spec("my_pkg.rewards:exact_json:0.5")
    ('my_pkg.rewards:exact_json', 0.5)
    >>> parse_plugin_spec("my_pkg.rewards:exact_json")
    ('my_pkg.rewards:exact_json', 1.0)
    """
    module, _, rest = spec.partition(":")
    name, sep, weight = rest.partition(":")
    if sep and not _is_number(weight):
        raise ValueError(f"--reward {spec!r}: expected MODULE:FUNCTION[:WEIGHT] with a number as WEIGHT")
    return f"{module}:{name}", reward_weight(spec, weight)


def parse_spec(spec: str) -> tuple[str, float]:
    """(``NAME`` or ``MODULE:FUNCTION``, weight) of either form of spec; no import is done.

    >>> parse_spec("format:0.5"), parse_spec("my.rewards:fn:2")
    (('format', 0.5), ('my.rewards:fn', 2.0))
    """
    return parse_plugin_spec(spec) if is_plugin_spec(spec) else parse_reward_spec(spec)


def check_reward_fn(fn: Any, ref: str) -> None:
    """ValueError in one line when ``fn`` cannot be called as a reward function."""
    if not callable(fn):
        raise ValueError(f"--reward {ref}: {type(fn).__name__} is not callable; expected {PROTOCOL}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin without a signature: trust it, RewardSet checks what it returns
    params = list(sig.parameters.values())
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        raise ValueError(f"--reward {ref}{sig} takes no **kwargs: the dataset columns (answer, ..., "
                         f"completion_lengths, max_new_tokens) are passed as keywords; expected {PROTOCOL}")
    try:
        named = {p.name: [None] for p in params[2:] if p.default is p.empty
                 and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}  # columns it names (answer, ...)
        sig.bind(["prompt"], ["completion"], **{"completion_lengths": [1], "max_new_tokens": 1, **named})
    except TypeError as err:
        raise ValueError(f"--reward {ref}{sig} cannot be called as fn(prompts, completions, **columns) "
                         f"({err}); expected {PROTOCOL}") from None
    if sig.return_annotation in (float, int, bool, str, "float", "int", "bool", "str"):
        raise ValueError(f"--reward {ref}{sig} returns one value; a reward function returns a list, "
                         f"one per completion: {PROTOCOL}")


class PluginReward:
    """A user's reward function with the attributes :class:`RewardSet` reads (``columns``,
    ``accuracy``): the named parameters it requires after the first two are columns it needs."""

    def __init__(self, fn: Callable, ref: str):
        self.fn, self.ref, self.__name__ = fn, ref, getattr(fn, "__name__", ref)
        self.accuracy = bool(getattr(fn, "accuracy", False))
        try:
            params = list(inspect.signature(fn).parameters.values())[2:]
        except (TypeError, ValueError):
            params = []
        needed = tuple(p.name for p in params if p.default is p.empty and p.name not in ALWAYS_PASSED
                       and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        self.columns = tuple(getattr(fn, "columns", ())) or needed

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[Any]:
        return self.fn(prompts, completions, **columns)


def load_reward(ref: str) -> PluginReward:
    """Import ``"module:function"`` and check it fits the reward protocol."""
    fn = load_attr(ref, "--reward")
    check_reward_fn(fn, ref)
    return PluginReward(fn, ref)


def resolve_reward(spec: str) -> tuple[str, Callable, float]:
    """(name in the logs, function, weight) of a built-in or plugin spec."""
    ref, weight = parse_spec(spec)
    if is_plugin_spec(spec):
        return ref.rpartition(":")[2], load_reward(ref), weight
    return ref, REWARDS.get(ref), weight


def reward_set(specs: list[str], extra: dict[str, Callable] | None = None, **options: Any) -> RewardSet:
    """:meth:`RewardSet.from_specs` that also takes ``module:function`` specs."""
    fns, weights = dict(extra or {}), {}
    for spec in specs:
        name, fn, weight = resolve_reward(spec)
        if name in fns and (is_plugin_spec(spec) or isinstance(fns[name], PluginReward)):
            raise ValueError(f"--reward {spec!r}: a reward named {name!r} is already given; each name once")
        fns[name], weights[name] = fn, weight
    if not fns:
        raise ValueError(f"no reward function given (use --reward NAME[:WEIGHT] or MODULE:FUNCTION[:WEIGHT]; "
                         f"built-in: {REWARDS.names()})")
    return RewardSet(fns, weights, **options)


def answer_check(spec: str) -> Callable:
    """The function ``grpo llm eval --reward`` counts right answers with (score >= 1): a built-in
    that checks answers (exact, numeric, math), or any ``module:function``."""
    if is_plugin_spec(spec):
        return load_reward(parse_plugin_spec(spec)[0])
    check = REWARDS.get(spec)
    if not getattr(check, "accuracy", False):
        raise ValueError(f"reward {spec!r} does not check answers; use one of exact, numeric, math, "
                         "or MODULE:FUNCTION")
    return check


def check_reward_specs(specs: list[str] | None) -> None:
    """At start-up, before a folder is made or a model loaded: every ``module:function`` imports
    and fits the protocol, every built-in name exists."""
    for spec in specs or []:
        resolve_reward(spec)
