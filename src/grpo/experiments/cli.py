"""``grpo compare``: GRPO vs PPO (and the article's naive variant) under one protocol."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from grpo.experiments.compare import (ALGOS, DEFAULT_ALGOS, DEFAULT_ENVS, DEFAULT_SEEDS, DEFAULT_TOTAL_STEPS,
                                      available_cpus)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's subcommands to the ``grpo`` parser."""
    p = sub.add_parser(
        "compare", help="compare GRPO, PPO and naive-grpo over seeds: curves, table, summary",
        description="Train every algorithm on every env for every seed (one process per run, --jobs at a "
                    "time), evaluate under the protocol (greedy policy every 5,000 env steps, 20 episodes), "
                    "then write curves (PNG, SVG), a table (Markdown, CSV, printed) and summary.json. "
                    "With no flags: GRPO vs PPO on CartPole-v1, 3 seeds, 50k env steps each.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--env", nargs="+", default=list(DEFAULT_ENVS), help="gymnasium environment id(s)")
    p.add_argument("--algos", nargs="+", default=list(DEFAULT_ALGOS), choices=ALGOS, metavar="ALGO",
                   help=f"algorithms among {', '.join(ALGOS)}")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="number of seeds (seeds --seed0 ..)")
    p.add_argument("--seed0", type=int, default=0, help="first seed")
    p.add_argument("--total-steps", type=int, default=DEFAULT_TOTAL_STEPS, help="env steps per run")
    p.add_argument("--eval-every", type=int, default=5_000,
                   help="evaluate every this many env steps (the protocol's 5,000; smaller only for quick looks)")
    p.add_argument("--group-sizes", type=int, nargs="+", default=[], metavar="G",
                   help="sweep GRPO's group size: one GRPO variant per G, plus a group_sweep plot")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="ALGO.FIELD=VALUE",
                   help="override a hyperparameter of one algorithm, e.g. grpo.lr=0.001 (repeatable)")
    p.add_argument("--jobs", type=int, default=available_cpus(), help="runs in parallel (one process each)")
    p.add_argument("--out", default=None, help="output folder (default: runs/compare-<time>)")
    p.add_argument("--resume", action="store_true", help="reuse the finished runs in --out, run the rest")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--video", nargs="?", const="gif", default=None, choices=("gif", "mp4"),
                   help="also write a short clip of each algorithm's best seed per env to videos/ "
                        "(gif when no format is given; pip install 'grpo-lab[video]')")
    from grpo.utils.config import add_config_option

    add_config_option(p)
    p.set_defaults(func=run_compare)
    from grpo.experiments import runplot

    runplot.register(sub)


def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["grpo.lr=1e-3", "ppo.epochs=4"]`` -> ``{"grpo": {"lr": 0.001}, "ppo": {"epochs": 4}}``, each value
    typed as the algorithm's config field (grpo.utils.config: the rules of YAML files and flags).

    >>> parse_sets(["grpo.lr=1e-3", "grpo.hidden=[32, 32]", "ppo.anneal_lr=no"])
    {'grpo': {'lr': 0.001, 'hidden': [32, 32]}, 'ppo': {'anneal_lr': False}}
    """
    import yaml

    from grpo.control.train import ALGOS as CONFIGS
    from grpo.utils.config import coerce, fields_of

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        algo, dot, name = key.partition(".")
        if not sep or not dot or algo not in ALGOS or not name:
            raise ValueError(f"--set {item!r}: expected ALGO.FIELD=VALUE with ALGO in {list(ALGOS)}")
        name = name.replace("-", "_")
        known = fields_of(CONFIGS[algo][0])
        if name not in known:
            raise ValueError(f"--set {item!r}: unknown option {name!r} for {algo}; known: {sorted(known)}")
        try:
            value = yaml.load(text, Loader=yaml.BaseLoader)  # text, or a list of texts ("[32, 32]")
        except yaml.YAMLError:
            value = text
        out.setdefault(algo, {})[name] = coerce(name, value, *known[name], where=f"--set {algo}.")
    return out


def run_compare(args: argparse.Namespace) -> int:
    import sys

    from grpo.experiments.compare import compare, plan, validate
    from grpo.experiments.table import Row, to_text

    if args.seeds < 1 or args.jobs < 1:
        raise ValueError("--seeds and --jobs must be >= 1")
    specs = plan(args.env, args.algos, list(range(args.seed0, args.seed0 + args.seeds)), args.total_steps,
                 args.group_sizes, parse_sets(args.sets), args.eval_every)
    validate(specs)
    if args.video:
        from grpo.experiments.clips import check_clips

        check_clips(args.video, args.env)  # before training: format, packages, renderers
    out = Path(args.out or f"runs/compare-{time.strftime('%Y%m%d-%H%M%S')}")
    from grpo.utils.bounds import check_out_dir

    check_out_dir(out)
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise FileExistsError(f"{out} is not empty; pass --resume to finish the runs it holds, or another --out")
    print(f"grpo compare: {len(specs)} runs ({', '.join(dict.fromkeys(s.label for s in specs))} on "
          f"{', '.join(args.env)}; {args.seeds} seeds; {args.total_steps:,} env steps each), "
          f"{args.jobs} at a time -> {out}/", flush=True)
    result = compare(specs, out, args.jobs, progress=not args.no_progress, resume=args.resume,
                     meta={"command": ["grpo", *sys.argv[1:]] if sys.argv and "grpo" in sys.argv[0] else None})
    rows = [Row(**r) for r in result["rows"]]
    if args.video:
        from grpo.experiments.clips import write_clips

        result["figures"] += [str(p.relative_to(out)) for p in write_clips(out, specs, args.video)]
    print()
    print(to_text(rows), end="")
    print(f"\nwall {result['meta']['wall_s']} s. results in {out}/: table.md, table.csv, summary.json, "
          + ", ".join(result["figures"]))
    return 0
