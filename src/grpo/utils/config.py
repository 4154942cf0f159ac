"""Typed configuration: one loader for every command's YAML file and flags.

Every trainer has one dataclass whose fields carry their help text in
``field(metadata={"help": ...})``. :func:`add_dataclass_args` turns it into argparse flags,
:func:`dataclass_from_args` builds the instance from ``--config FILE.yaml`` with the flags given on
the command line on top. Plain argparse commands get ``--config`` from :func:`add_config_option`.

A YAML file is read as text (every scalar a string), exactly like a flag, and both go through
:func:`coerce`, which validates with pydantic against the field's type. The rules (docs/configuration.md):

- numbers are converted only when nothing is lost: ``1e-6`` -> 1e-06, ``2e3`` for an int -> 2000,
  ``4.7`` for an int is an error;
- booleans: ``true/false``, ``yes/no``, ``on/off``, ``1/0`` in any case; anything else is an error;
- an optional field takes ``none``, ``null``, ``~`` or an empty value as None;
- a list field takes a YAML list, several flag values, or one value (a list of one);
- an unknown key, or a value that does not fit, is one line naming the key, the value and the type.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import types
import typing
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Collection, TypeVar

import yaml
from pydantic import BeforeValidator, Strict, TypeAdapter, ValidationError

T = TypeVar("T")

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")
NONE_WORDS = ("none", "null", "~", "")


class ConfigError(ValueError):
    """A configuration value or key that does not fit; the message is one line."""


def parse_bool(value: Any) -> bool:
    """The one rule for booleans, for YAML and flags alike.

    >>> [parse_bool(v) for v in ("yes", "OFF", "1", True)]
    [True, False, True, True]
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError("not a boolean")


def _whole(value: Any) -> Any:
    """Text or a float that is exactly a whole number -> int (``"2e3"`` -> 2000); else unchanged."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not an integer")
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return value
        return int(number) if number.is_finite() and number == number.to_integral_value() else value
    return value


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value.strip() if isinstance(value, str) else value


def _none(value: Any) -> Any:
    return None if isinstance(value, str) and value.strip().lower() in NONE_WORDS else value


def _listed(value: Any) -> Any:
    return value if isinstance(value, (list, tuple)) else [value]


def _typed(tp: Any) -> Any:
    """The pydantic type for a dataclass annotation, with the rules above attached."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        inner = [_typed(a) for a in args if a is not type(None)]
        core = inner[0] if len(inner) == 1 else typing.Union[tuple(inner)]
        return Annotated[typing.Optional[core], BeforeValidator(_none)] if type(None) in args else core
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return Annotated[list[_typed(args[0] if args else str)], BeforeValidator(_listed)]
    if tp is bool:
        return Annotated[bool, BeforeValidator(parse_bool)]
    if tp is int:
        return Annotated[int, BeforeValidator(_whole)]
    if tp is float:
        return Annotated[float, BeforeValidator(_number)]
    if tp is str:
        return Annotated[str, Strict()]
    return tp


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(parts) + (" or none" if type(None) in typing.get_args(tp) else "")
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_describe(args[0] if args else str)}"
    return {bool: "a boolean (true/false, yes/no, on/off, 1/0)", int: "an integer (e.g. 8, 2e3)",
            float: "a number (e.g. 0.5, 1e-6)", str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


@functools.lru_cache(maxsize=None)
def _adapter(tp: Any) -> TypeAdapter:
    return TypeAdapter(_typed(tp))


def coerce(key: str, value: Any, tp: Any, choices: Collection[Any] | None = None, where: str = "") -> Any:
    """``value`` (text from YAML or a flag, or a Python value) as type ``tp``; a ConfigError names
    ``where`` (a file, or nothing for a flag), the key, the value and the expected type."""
    try:
        out = _adapter(tp).validate_python(value)
    except ValidationError:
        raise ConfigError(f"{where}{key}: {value!r} is not {_describe(tp)}") from None
    if choices is not None:
        bad = [v for v in (out if isinstance(out, list) else [out]) if v is not None and v not in choices]
        if bad:
            raise ConfigError(f"{where}{key}: {bad[0]!r} is not one of {list(choices)}")
    return out


def fields_of(cls: type) -> dict[str, tuple[Any, Collection[Any] | None]]:
    """name -> (type, choices or None) for the fields a dataclass's ``__init__`` takes."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f.metadata.get("choices")) for f in dataclasses.fields(cls) if f.init}


def _did_you_mean(unknown: list[str], known: Collection[str]) -> str:
    close = [m for name in unknown for m in difflib.get_close_matches(name, list(known), n=1)]
    return f" (did you mean {', '.join(close)}?)" if close else " (see --help for the options)"


def typed_values(cls: type, values: dict[str, Any], where: str = "") -> dict[str, Any]:
    """``values`` coerced to ``cls``'s field types; unknown keys are a ConfigError."""
    known = fields_of(cls)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}unknown option(s) {unknown} for {cls.__name__}{_did_you_mean(unknown, known)}")
    return {k: coerce(k, v, *known[k], where=where) for k, v in values.items()}


def build(cls: type[T], values: dict[str, Any], where: str = "") -> T:
    """``cls(**values)`` with every value coerced first (then ``__post_init__`` checks the ranges)."""
    return cls(**typed_values(cls, values, where))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _flag_type(key: str, tp: Any) -> Any:
    """An argparse ``type=``: one flag token through :func:`coerce` (choices are argparse's)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1 and typing.get_origin(inner[0]) in (list, tuple):
            tp = inner[0]
    if typing.get_origin(tp) in (list, tuple):
        tp = (typing.get_args(tp) or (str,))[0]

    def parse(text: str) -> Any:
        try:
            return coerce(_flag(key), text, tp)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err).partition(": ")[2]) from None

    parse.__name__ = getattr(tp, "__name__", "value")
    return parse


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per dataclass field; defaults stay in the dataclass (SUPPRESS here)."""
    typed = fields_of(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp, choices = typed[f.name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": f.name, "type": _flag_type(f.name, tp),
                                  "help": f"{f.metadata.get('help', '')} (default: {default})"}
        if tp is bool:
            kwargs.update(nargs="?", const=True, metavar="BOOL")
        elif typing.get_origin(tp) in (list, tuple) or list in map(typing.get_origin, typing.get_args(tp)):
            kwargs.update(nargs="+")
        if choices is not None:
            kwargs["choices"] = list(choices) + ([None] if type(None) in typing.get_args(tp) else [])
        parser.add_argument(_flag(f.name), **kwargs)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's mapping, every scalar as text (typed later by :func:`coerce`); keys may use dashes."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=yaml.BaseLoader) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not a readable YAML file: {' '.join(str(err).split())}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; --config takes a YAML file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping of field: value")
    return {k.replace("-", "_"): v for k, v in data.items()}


def file_values(cls: type, path: str | Path | None, drop: Collection[str] = ()) -> dict[str, Any]:
    """The typed values of a YAML file for ``cls`` (keys in ``drop`` left out); {} for no file."""
    if not path:
        return {}
    raw = {k: v for k, v in load_yaml(path).items() if k not in drop}
    return typed_values(cls, raw, f"{path}: ")


def given_values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """``--config`` file values with the flags given on top, for ``cls``'s fields (nothing else)."""
    names = fields_of(cls)
    flags = {k: v for k, v in vars(args).items() if k in names}
    return file_values(cls, getattr(args, "config", None)) | flags


def dataclass_from_args(cls: type[T], args: argparse.Namespace, **extra: Any) -> T:
    """Build ``cls`` from ``args.config`` (YAML, optional) overridden by the flags given."""
    names = fields_of(cls)
    return build(cls, given_values(cls, args) | {k: v for k, v in extra.items() if k in names})


def resume_values(saved: dict[str, Any], given: dict[str, Any], safe: Collection[str],
                  grow: Collection[str] = (), where: str = "the run folder") -> dict[str, Any]:
    """A resumed run's values: the ``saved`` ones, with the ``given`` ones that cannot change the run on
    top (those in ``safe``; those in ``grow`` only upwards). Any other given value that differs from the
    saved one is refused, naming each."""
    bad = [k for k, v in given.items() if k not in safe and k not in grow and (k not in saved or saved[k] != v)]
    bad += [k for k in grow if k in given and k in saved and given[k] < saved[k]]
    if bad:
        changes = ", ".join(f"{_flag(k)} {given[k]!r} (saved: {saved.get(k, 'absent')!r})" for k in bad)
        raise ConfigError(f"--resume continues the run saved in {where} as it was: {changes} would change it; "
                          f"drop {'this' if len(bad) == 1 else 'these'}, or start a new run in another --out")
    return saved | given


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-safe dict of a config dataclass."""
    return dataclasses.asdict(cfg)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``grpo train: error: argument --lr: ... (see --help)``, no usage dump."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config FILE.yaml`` for a plain argparse command: the file's keys (its options' names, with
    dashes or underscores) become the defaults, and flags given on the command line win. (Commands
    built from a dataclass read ``--config`` with :func:`dataclass_from_args` instead.)"""
    parser.add_argument("--config", default=None, metavar="FILE.yaml",
                        help="YAML file of this command's options (names as the flags'); flags given here override it")
    parser.set_defaults(_config_file_command=True)


def _config_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return subs[0].choices if subs else {}


def _command_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser that handles ``argv``'s command, following subcommand names."""
    for arg in argv:
        parser = _subparsers(parser).get(arg, parser)
    return parser


_SCALARS = (int, float)


def _action_type(action: argparse.Action) -> Any:
    """The type a plain argparse option holds: bool for switches, list[...] for nargs '+'/'*'."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return bool
    tp = getattr(action.type, "config_type", None) or (action.type if action.type in _SCALARS else str)
    tp = list[tp] if action.nargs in ("+", "*") else tp
    return tp | None if action.default is None else tp  # an option whose default is None takes none


def type_plain_options(parser: argparse.ArgumentParser) -> None:
    """Give every ``type=int``/``type=float`` option of ``parser`` and its subcommands the typed rules
    (``--episodes 2e3`` is 2000, ``--episodes 4.7`` an error), as for YAML files and dataclass flags."""
    for action in parser._actions:
        if action.type in _SCALARS:
            scalar = action.type
            action.type = _flag_type(action.option_strings[-1].lstrip("-") if action.option_strings else action.dest,
                                     scalar)
            action.type.config_type = scalar
    for sub in _subparsers(parser).values():
        type_plain_options(sub)


def parse_args_with_config(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; for commands set up with :func:`add_config_option` and given ``--config``, the
    YAML file's values are the defaults under the flags (its keys and values are checked and typed)."""
    type_plain_options(parser)
    path = _config_path(argv)
    command = _command_parser(parser, argv)
    if path and command.get_default("_config_file_command"):
        values = load_yaml(path)
        actions = {a.dest: a for a in command._actions if a.dest not in ("help", "config", argparse.SUPPRESS)}
        unknown = sorted(set(values) - set(actions))
        if unknown:
            raise ConfigError(f"{path}: unknown option(s) {unknown}{_did_you_mean(unknown, actions)}")
        typed = {}
        for name, value in values.items():
            action = actions[name]
            typed[name] = coerce(name, value, _action_type(action), action.choices, f"{path}: ")
            if typed[name] is not None and callable(action.type) and not hasattr(action.type, "config_type"):
                try:
                    typed[name] = [action.type(v) for v in typed[name]] if isinstance(typed[name], list) \
                        else action.type(typed[name])
                except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
                    raise ConfigError(f"{path}: {name}: {value!r}: {err}") from None
            action.required = False  # given by the file
        command.set_defaults(**typed)
    return parser.parse_args(argv)
