"""Config dataclasses <-> command line and YAML.

Every trainer has one dataclass whose fields carry their help text in
``field(metadata={"help": ...})``. :func:`add_dataclass_args` turns it into argparse flags,
:func:`dataclass_from_args` builds the instance from ``--config FILE.yaml`` with the flags
given on the command line on top (flags not given keep the file's or the dataclass's value).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """Return (inner type, is_list) for annotations like ``int | None`` or ``list[str]``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else (str, False)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return (args[0] if args else str), True
    return tp, False


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def _parse_optional(inner):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else inner(text)

    parse.__name__ = getattr(inner, "__name__", "value")
    return parse


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per dataclass field; defaults stay in the dataclass (SUPPRESS here)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp, is_list = _base_type(hints[f.name])
        optional = type(None) in typing.get_args(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text, "dest": f.name}
        if tp is bool:
            kwargs.update(type=_parse_bool, nargs="?", const=True, metavar="BOOL")
        elif is_list:
            kwargs.update(type=tp, nargs="+")
        else:
            kwargs.update(type=_parse_optional(tp) if optional else tp)
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(_flag(f.name), **kwargs)


def load_yaml(path: str | Path) -> dict[str, Any]:
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping of field: value")
    return {k.replace("-", "_"): v for k, v in data.items()}


def dataclass_from_args(cls: type[T], args: argparse.Namespace, **extra: Any) -> T:
    """Build ``cls`` from ``args.config`` (YAML, optional) overridden by the flags given."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    values: dict[str, Any] = {}
    config_path = getattr(args, "config", None)
    if config_path:
        file_values = load_yaml(config_path)
        unknown = sorted(set(file_values) - names)
        if unknown:
            raise ValueError(f"{config_path}: unknown field(s) {unknown} for {cls.__name__}; "
                             f"known: {sorted(names)}")
        values.update(file_values)
    values.update({k: v for k, v in vars(args).items() if k in names})
    values.update({k: v for k, v in extra.items() if k in names})
    return cls(**values)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-safe dict of a config dataclass."""
    return dataclasses.asdict(cfg)


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


def _command_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser that handles ``argv``'s command, following subcommand names."""
    for arg in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and arg in subs[0].choices:
            parser = subs[0].choices[arg]
    return parser


def parse_args_with_config(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; for commands set up with :func:`add_config_option` and given ``--config``, the
    YAML file's values are the defaults under the flags (its keys are checked against the options)."""
    path = _config_path(argv)
    command = _command_parser(parser, argv)
    if path and command.get_default("_config_file_command"):
        values = load_yaml(path)
        actions = {a.dest: a for a in command._actions if a.dest not in ("help", "config", argparse.SUPPRESS)}
        unknown = sorted(set(values) - set(actions))
        if unknown:
            raise ValueError(f"{path}: unknown option(s) {unknown}; known: {sorted(actions)}")
        for name in values:
            actions[name].required = False  # given by the file
        command.set_defaults(**values)
    return parser.parse_args(argv)
