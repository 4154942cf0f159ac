"""The ``grpo`` command: ``train``/``eval`` (classic control), ``compare`` (experiments), ``llm``.

Each area registers its own subcommands, so this file stays a table of contents. Heavy imports
(torch, gymnasium, transformers) happen inside the handlers, so ``grpo --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys

from grpo import __version__
from grpo.errors import GrpoError


def build_parser() -> argparse.ArgumentParser:
    from grpo.control import cli as control_cli
    from grpo.experiments import cli as experiments_cli
    from grpo.llm import cli as llm_cli
    from grpo.utils.config import ArgumentParser

    parser = ArgumentParser(
        prog="grpo",
        description="GRPO (DeepSeekMath, arXiv 2402.03300) and PPO for gymnasium and Hugging Face models.",
    )
    parser.add_argument("--version", action="version", version=f"grpo-lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    control_cli.register(sub)
    experiments_cli.register(sub)
    llm_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from grpo.utils.config import parse_args_with_config

    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # every command takes --config FILE.yaml; flags override it
        args = parse_args_with_config(parser, argv)
    except (ValueError, FileNotFoundError) as err:
        print(f"grpo: error: {err}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileExistsError, FileNotFoundError, NotADirectoryError, PermissionError, GrpoError) as err:
        # Bad input is reported in one line, without a traceback.
        print(f"grpo {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
