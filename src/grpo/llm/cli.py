"""``grpo llm train`` and ``grpo llm eval`` (``chat``, ``sample`` and ``sft`` register themselves). Heavy imports happen inside the handlers."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``llm`` command and its ``train``/``eval`` subcommands to the ``grpo`` parser."""
    from grpo.llm.ppo_config import LLM_ALGOS, PPOConfig
    from grpo.utils.config import add_config_option, add_dataclass_args

    llm = sub.add_parser("llm", help="GRPO and PPO for Hugging Face causal language models")
    llm_sub = llm.add_subparsers(dest="llm_command", required=True, metavar="SUBCOMMAND")

    train = llm_sub.add_parser("train", help="GRPO (or --algo ppo) training; with no --model, the built-in tiny "
                               "model on addition", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--algo", choices=list(LLM_ALGOS), default=None,
                       help="grpo, or ppo (value model + GAE; the PPO: options apply to it only); "
                            "default: grpo, or the resumed run's")
    train.add_argument("--config", help="YAML file of GRPOConfig (PPOConfig) fields; flags override it")
    add_dataclass_args(train, PPOConfig)  # GRPOConfig's fields plus PPO's
    train.set_defaults(func=_train)

    ev = llm_sub.add_parser("eval", help="greedy accuracy and pass@k of a model on a task")
    ev.add_argument("--model", default=None, help="model folder, hub id, .gguf file or smollm2-135m-instruct (default: the built-in tiny model)")
    ev.add_argument("--task", default="addition", help="built-in task, data file or `datasets` name")
    ev.add_argument("--split", default="test", help="split to evaluate (default: test; a single file: all of it)")
    ev.add_argument("--holdout", type=float, default=None,
                    help="a task without that split (a single file, ...): evaluate the slice `grpo llm train "
                         "--eval-holdout` (same value) held out of its train split; default: a file is evaluated whole")
    ev.add_argument("--prompt-column", default="prompt", help="column holding the prompt")
    ev.add_argument("--reward", default=None, help="answer check (exact, numeric, math, or MODULE:FUNCTION); default: the task's")
    ev.add_argument("--samples", type=int, default=1, help="K samples per prompt for pass@k (default: 1)")
    ev.add_argument("--limit", type=int, default=None, help="evaluate at most N prompts")
    ev.add_argument("--max-new-tokens", type=int, default=None, help="default: 256, or 8 for the tiny model")
    ev.add_argument("--temperature", type=float, default=1.0, help="sampling temperature for pass@k")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    add_config_option(ev)
    ev.set_defaults(func=_eval)
    from grpo.llm import chat, sample, sft

    chat.register(llm_sub)
    sample.register(llm_sub)
    sft.register(llm_sub)


def _train(args: argparse.Namespace) -> int:
    from grpo.llm.ppo_config import config_from_args
    from grpo.llm.run import train

    from grpo.llm.infra.distributed import launched
    from grpo.llm.infra.launch import relaunch
    from grpo.llm.data.rewards.plugins import check_reward_specs
    from grpo.llm.run import preflight

    from grpo.utils.bounds import check_out_dir

    cfg = config_from_args(args)
    check_reward_specs(cfg.reward)  # the user's reward functions import and fit, before anything is loaded
    check_out_dir(cfg.out)
    if cfg.num_processes > 1 and not launched():  # start the processes; each runs this command again
        preflight(cfg)
        return relaunch(cfg, getattr(cfg, "algo", "grpo"))
    summary = train(cfg)
    if summary:  # the main process (the others return {})
        print(f"run folder: {cfg.out}  final model: {summary['final_model']}  "
              f"{summary['seconds_per_step']:.3f} s/step")
        gpu = summary.get("peak_gpu_mb")
        print(f"peak memory: {summary['peak_rss_mb']:,.0f} MiB resident (CPU)"
              + (f", {gpu:,.0f} MiB allocated on the GPU" if gpu is not None else ""))
        if cfg.env and cfg.env_eval_episodes:
            print(f"curves: {env_curves(cfg.out)}")
    return 0


ENV_CURVES = ("eval/env/guesses", "eval/env/solved", "eval/env/illegal_frac", "eval/episode/return_mean",
              "eval/episode/turns_mean")  # those an environment reports, in this order


def env_curves(out: str) -> str:
    """Draw the evaluation episodes of an --env run over steps into ``out/curves.png``; its path."""
    from grpo.experiments.runplot import plot_runs, read_runs

    runs = read_runs([out])
    plot_runs(runs, [m for m in ENV_CURVES if m in runs[0].series], Path(out) / "curves.png")
    return str(Path(out) / "curves.png")


def _eval(args: argparse.Namespace) -> int:
    from grpo.llm.config import TINY_MAX_NEW_TOKENS
    from grpo.llm.data.heldout import eval_set
    from grpo.llm.data.sources import is_single_file
    from grpo.llm.data.tasks import default_rewards, load_rows
    from grpo.llm.evaluation import correct_counts, pass_at_k
    from grpo.llm.modeling.models import load_model, load_tokenizer, pick_device
    from grpo.llm.data.rewards.plugins import answer_check
    from grpo.llm.config import GRPOConfig
    from grpo.llm.run import model_path

    if args.samples < 1:
        raise ValueError("--samples must be >= 1")
    if args.holdout is not None and not (0 <= args.holdout < 1 or args.holdout == int(args.holdout)):
        raise ValueError(f"--holdout {args.holdout:g}: give a share below 1 or a whole number of rows")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    path = model_path(GRPOConfig(model=args.model))
    name = args.reward or next(iter(default_rewards(args.task) or []), None)
    if name is None:
        raise ValueError(f"task {args.task!r} has no default answer check: pass --reward exact|numeric|math")
    check = answer_check(name)
    max_new = args.max_new_tokens or (TINY_MAX_NEW_TOKENS if args.model is None else 256)
    device = pick_device(args.device)
    model, tok = load_model(path, device=device), load_tokenizer(path)
    if args.holdout is None and is_single_file(args.task):
        rows = load_rows(args.task, args.split, args.prompt_column, args.limit)
        source = f"{len(rows)} prompts of {args.task} (the whole file)"
    else:  # the same choice as training's: the split, else the held-out slice
        evalset, _ = eval_set(args.task, args.split, holdout=args.holdout or 0.0, prompt_column=args.prompt_column,
                              limit=args.limit)
        if evalset.rows is None:
            why = evalset.source.removeprefix("none: ").replace("--eval-holdout", "--holdout")  # this command's flag
            raise ValueError(f"nothing to evaluate: {why}")
        rows, source = evalset.rows, evalset.source
    greedy = correct_counts(model, tok, rows, 1, max_new, check, greedy=True)
    print(f"{path} on {source}: greedy accuracy {sum(greedy) / len(rows):.1%}")
    if args.samples > 1:
        counts = correct_counts(model, tok, rows, args.samples, max_new, check, temperature=args.temperature)
        ks = sorted({k for k in (1, 2, 4, 8, 16, 32, 64, args.samples) if k <= args.samples})
        for k in ks:
            score = sum(pass_at_k(args.samples, c, k) for c in counts) / len(counts)
            print(f"pass@{k}: {score:.1%}  (n={args.samples}, temperature {args.temperature})")
    return 0
