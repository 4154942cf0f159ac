"""``grpo train`` and ``grpo eval`` for gymnasium environments."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from grpo.utils.config import add_config_option, add_dataclass_args, load_yaml

ALGO_NAMES = ("grpo", "ppo", "naive-grpo")


def register(sub: argparse._SubParsersAction) -> None:
    from grpo.control.grpo import ControlGRPOConfig
    from grpo.control.naive import NaiveGRPOConfig
    from grpo.control.ppo import ControlPPOConfig
    from grpo.control.train import RunConfig

    train = sub.add_parser(
        "train", help="train GRPO or PPO on a gymnasium environment",
        description="Train on a gymnasium env. Hyperparameters: dataclass defaults < tuned values for the env "
                    "(grpo.control.defaults) < --config YAML < flags. Flags of another algorithm are refused.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--algo", choices=ALGO_NAMES, default=None, help="algorithm (default: the config's, else grpo)")
    train.add_argument("--out", default=None, help="run folder (default: runs/<algo>-<env>-s<seed>-<time>)")
    train.add_argument("--config", default=None, help="YAML file of run and algorithm options")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    add_dataclass_args(train.add_argument_group("run"), RunConfig)
    seen = {f.name for f in dataclasses.fields(RunConfig)}
    for name, cls in (("grpo", ControlGRPOConfig), ("ppo", ControlPPOConfig), ("naive-grpo", NaiveGRPOConfig)):
        group = train.add_argument_group(f"{name} (other fields shared with the algorithms above)")
        add_dataclass_args(group, cls, skip=tuple(seen))
        seen |= {f.name for f in dataclasses.fields(cls)}
    train.set_defaults(func=run_train)

    ev = sub.add_parser("eval", help="evaluate a saved classic-control policy (greedy)")
    ev.add_argument("--checkpoint", required=True, help="a run folder or its checkpoint folder")
    ev.add_argument("--env", default=None, help="environment id (default: the one it was trained on)")
    ev.add_argument("--episodes", type=int, default=20, help="episodes (reset seeds --seed0 ..)")
    ev.add_argument("--seed0", type=int, default=10_000, help="first reset seed")
    ev.add_argument("--video", default=None, metavar="FILE.mp4|.gif",
                    help="also render greedy episodes (seeds --seed0 ..) to this file (pip install 'grpo-lab[video]')")
    ev.add_argument("--video-episodes", type=int, default=1, help="episodes in the video")
    ev.add_argument("--video-fps", type=float, default=None, help="frames per second (default: the env's)")
    add_config_option(ev)
    ev.set_defaults(func=run_eval)


def split_options(algo: str, args: argparse.Namespace) -> tuple[dict, dict]:
    """(run options, algorithm options) given by --config and the flags, flags winning, typed."""
    from grpo.control.train import ALGOS, RunConfig
    from grpo.utils.config import ConfigError, coerce, fields_of

    run_fields, algo_fields = fields_of(RunConfig), fields_of(ALGOS[algo][0])
    any_algo = {name for cls, _ in ALGOS.values() for name in fields_of(cls)}
    values = {}
    if args.config:
        raw = {k: v for k, v in load_yaml(args.config).items() if k != "algo"}
        unknown = sorted(set(raw) - set(run_fields) - any_algo)
        if unknown:
            raise ConfigError(f"{args.config}: unknown option(s) {unknown}")
        values = {k: coerce(k, v, *(run_fields.get(k) or algo_fields.get(k) or (object, None)),
                            where=f"{args.config}: ") for k, v in raw.items()}
    values.update({k: v for k, v in vars(args).items() if k in set(run_fields) | any_algo})
    wrong = sorted(k for k in values if k not in run_fields and k not in algo_fields)
    if wrong:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise ConfigError(f"option(s) {flags} do not apply to --algo {algo}")
    return ({k: v for k, v in values.items() if k in run_fields},
            {k: v for k, v in values.items() if k in algo_fields})


# What a resumed run may change: the budget (only upwards) and options that do not touch the training.
RESUME_SAFE = ("progress", "checkpoint_every", "torch_threads", "nonfinite_limit", "report_to")
RESUME_GROW = ("total_steps",)


def train_config(args: argparse.Namespace) -> tuple[str, Any, Any]:
    """(algo, RunConfig, algorithm config) for ``grpo train``'s arguments; with --resume and a saved
    config.json in --out, the saved run's, refusing the options that would change it."""
    from grpo.control.train import RUN_FILES, RunConfig, algo_config
    from grpo.utils.config import build, resume_values
    from grpo.utils.io import read_json

    if args.resume:
        if not args.out:
            raise ValueError("--resume needs --out DIR, the folder of the run to continue")
        RUN_FILES.prepare(Path(args.out), resume=True, overwrite=args.overwrite)  # refuses a folder without config.json
        # Resume with the run's own configuration; only flags that keep it the same run are taken.
        saved = read_json(Path(args.out) / "config.json")
        algo = saved["algo"]
        if args.algo and args.algo != algo:
            raise ValueError(f"--algo {args.algo} does not match the run in {args.out} ({algo})")
        run_opts, algo_opts = split_options(algo, args)
        where = str(Path(args.out) / "config.json")
        run = build(RunConfig, resume_values(saved["run"], run_opts, RESUME_SAFE, RESUME_GROW, where))
        cfg = algo_config(algo, run.env, resume_values(saved["algo_config"], algo_opts, (), (), where))
    else:
        algo = args.algo or (load_yaml(args.config).get("algo") if args.config else None) or "grpo"
        if algo not in ALGO_NAMES:
            raise ValueError(f"algo: unknown algorithm {algo!r}; choose one of {list(ALGO_NAMES)}")
        run_opts, algo_opts = split_options(algo, args)
        run = build(RunConfig, run_opts)
        cfg = algo_config(algo, run.env, algo_opts)
    return algo, run, cfg


def run_train(args: argparse.Namespace) -> int:
    from grpo.control.budget import check_batch
    from grpo.control.envs import env_info
    from grpo.control.train import train
    from grpo.utils.bounds import check_out_dir

    algo, run, cfg = train_config(args)
    out = Path(args.out or f"runs/{algo}-{run.env}-s{run.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    check_out_dir(out)
    check_batch(algo, run.total_steps, cfg, env_info(run.env, run.max_episode_steps))
    summary = train(algo, run, cfg, out, resume=args.resume, overwrite=args.overwrite)
    solved = summary["stable_solve_step"]
    print(f"{algo} on {run.env}, seed {run.seed}: final eval {summary['final_eval']}, "
          f"stable solve at {solved if solved is not None else 'never'}, "
          f"train wall {summary['train_wall_s']:.1f} s ({summary['steps_per_s']} steps/s)")
    print(f"run folder: {out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from grpo.control.evaluation import evaluate_policy
    from grpo.control.train import greedy_fn, load_actor

    from grpo.control.envs import env_info

    actor, info = load_actor(args.checkpoint)
    env_id = args.env or info.env_id
    target = env_info(env_id)
    if (target.obs_dim, target.discrete, target.action_dim) != (info.obs_dim, info.discrete, info.action_dim):
        raise ValueError(f"env: {env_id}'s spaces do not match those of {info.env_id}, the policy's env")
    if args.episodes < 1:
        raise ValueError("--episodes must be >= 1")
    if args.video:
        from grpo.control.video import check_video

        check_video(args.video, env_id)  # before the evaluation: bad extension, no renderer, no imageio
    returns = evaluate_policy(greedy_fn(actor), env_id, args.episodes, args.seed0, info.max_episode_steps)
    print(f"{env_id}: mean return {np.mean(returns):.2f} +- {np.std(returns):.2f} over {len(returns)} "
          f"episodes (min {np.min(returns):.1f}, max {np.max(returns):.1f})")
    if args.video:
        from grpo.control.video import record_video

        v = record_video(greedy_fn(actor), env_id, args.video, args.video_episodes, args.seed0,
                         info.max_episode_steps, args.video_fps)
        print(f"video: {v.path} ({v.frames} frames, {v.width}x{v.height}, {v.fps:g} fps; "
              f"returns {', '.join(f'{r:.1f}' for r in v.returns)})")
    return 0
