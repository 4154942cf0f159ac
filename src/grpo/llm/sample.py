"""``grpo llm sample``: a few prompts of a task, the model's completions and their rewards, side by side;
with ``--env``, whole episodes of a text environment (tool calls and results included) and their summary.

The completions are sampled as in training (the same engine and sampling options) and scored by
the run's rewards (the task's own, or ``--reward`` names and ``module:function`` specs), so a
user sees what a run learnt and why it was rewarded. Episodes run through the training rollout
(:class:`grpo.llm.rollout.episodes.EpisodeRunner`) on the evaluation seeds 10000, 10001, ...
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from typing import Any, Callable

from grpo.llm.chat import add_sampling_args, load_for_sampling


def _cell(text: Any, width: int) -> str:
    """One line of at most ``width`` characters (newlines shown as \\n).

    >>> _cell("12+34=\\n46", 20), _cell("abcdefgh", 5)
    ('12+34=\\\\n46', 'abcd…')
    """
    text = str(text).replace("\n", "\\n")
    return text if len(text) <= width else text[:width - 1] + "…"


def format_rows(header: list[str], rows: list[list[str]]) -> str:
    """An aligned plain-text table; the last columns (numbers) right-aligned."""
    cells = [header] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for r in cells:
        parts = [c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def sample_table(model: Any, tok: Any, rows: list[dict], rewards: Any, s: Any, samples: int = 1,
                 width: int = 40) -> str:
    """Generate ``samples`` completions per row, score them and lay them out one per line."""
    from grpo.llm.data.tasks import columns_of
    from grpo.llm.rollout.generation import encode_prompts, generate
    from grpo.llm.modeling.models import context_length, prompt_texts

    device = next(model.parameters()).device
    texts = prompt_texts(tok, [r["prompt"] for r in rows])
    ids, mask = encode_prompts(tok, texts, device, context_length(model), s.max_new_tokens)  # [B, P]
    roll = generate(model, tok, ids, mask, samples, s.max_new_tokens, s.temperature, s.top_p, s.top_k, s.greedy)
    prompts = [t for t in texts for _ in range(samples)]  # [N] prompt-major, as the rollout
    scored = rewards(prompts, roll.completions, completion_lengths=roll.lengths.tolist(),
                     max_new_tokens=s.max_new_tokens, **columns_of(rows, samples))
    header = ["#", "prompt", "completion", *scored.names, "total"]
    lines = []
    for i, completion in enumerate(roll.completions):
        values = scored.per_fn[i].tolist()  # [K], NaN where a reward does not apply
        lines.append([str(i // samples), _cell(prompts[i], width), _cell(completion, width),
                      *["-" if math.isnan(v) else f"{v:.3g}" for v in values], f"{float(scored.total[i]):.3g}"])
    return format_rows(header, lines)


def episode_lines(episodes: list[Any], tok: Any, width: int) -> str:
    """Each episode's messages after its opening (one line each, at most ``width`` characters; a turn the
    rollout cut, as sampled), then a summary: mean return, turns, tool calls and errors, why episodes
    ended, and the means of the environments' ``info``."""
    from grpo.llm.rollout.episode_batch import episode_batch, episode_metrics

    out = []
    for k, e in enumerate(episodes):
        out.append(f"episode {k} (seed {e.seed}): return {e.ret:.3g}, {e.turns} turns, {e.tool_calls} tool calls, "
                   f"ended: {e.stop}")
        first_reply = next((i for i, m in enumerate(e.messages) if m["role"] == "assistant"), len(e.messages))
        for m in e.messages[max(first_reply - 1, 0):]:
            calls = [c["function"] for c in m.get("tool_calls") or []]
            text = (m.get("content") or "") + "".join(f" <call {c['name']}({c['arguments']})>" for c in calls)
            out.append(f"  {m['role']:>9}: {_cell(text, width)}")
        if sum(m["role"] == "assistant" for m in e.messages) < e.turns:  # its last turn was cut: no message
            last = e.turns - 1
            cut = [t for t, trained, turn in zip(e.ids, e.trained, e.turn_of) if trained and turn == last]
            out.append(f"  {'assistant':>9}: {_cell(tok.decode(cut, skip_special_tokens=True), width)}")
        if e.stop not in ("terminated", "env truncated"):
            out.append(f"  {'':>9}  ({e.stop})")
    # The figures training logs for its evaluation episodes (returns as the rollout gave them, no penalty).
    m = episode_metrics(episode_batch(episodes, [e.seed for e in episodes], tok, "keep", 0.0, 0.0), 1)
    ends = ", ".join(f"{why} {c}" for why, c in Counter(e.stop for e in episodes).most_common())
    out.append(f"{len(episodes)} episodes: mean return {m['episode/return_mean']:.3f}, turns "
               f"{m['episode/turns_mean']:.2f}, tool calls {m['tools/calls_per_episode']:.2f} (errors "
               f"{m['tools/errors_per_episode']:.2f}) per episode; ended: {ends}"
               + "".join(f"; {key[4:]} {v:.3g}" for key, v in m.items() if key.startswith("env/")))
    return "\n".join(out) + "\n"


def env_episodes(model: Any, tok: Any, env: str, n: int, s: Any, seed: int, max_turns: int,
                 generate: Callable | None = None, make_env: Callable[[], Any] | None = None) -> list[Any]:
    """One episode per evaluation seed (10000, ..., as training's evaluation), sampled with ``s``."""
    import torch

    from grpo.llm.algorithms.multiturn import DEFAULT_EPISODE_TOKENS, EVAL_SEED_BASE
    from grpo.llm.envs.base import env_factory
    from grpo.llm.modeling.models import context_length
    from grpo.llm.rollout.episodes import EpisodeRunner, Limits
    from grpo.llm.rollout.generation import GENERATORS

    name, factory = (env, make_env) if make_env is not None else env_factory(env)
    limits = Limits(max_turns, context_length(model) or DEFAULT_EPISODE_TOKENS, s.max_new_tokens, s.temperature,
                    s.top_p, s.top_k, s.greedy)
    runner = EpisodeRunner(name, factory, tok, limits, generate or GENERATORS.get("cached"), seed)
    with torch.no_grad():
        return runner.run(model, list(range(EVAL_SEED_BASE, EVAL_SEED_BASE + n)), 1, step=-1)


def register(llm_sub: argparse._SubParsersAction) -> None:
    """``grpo llm sample``."""
    p = llm_sub.add_parser("sample", help="prompts of a task, the model's completions and their rewards")
    add_sampling_args(p)
    p.add_argument("--task", default="addition", help="built-in task, data file or `datasets` name")
    p.add_argument("--env", default=None, help="a text environment instead of a task (a built-in name, "
                   "MODULE:CLASS or a gymnasium id): --n whole episodes, their transcripts and summary")
    p.add_argument("--max-turns", type=int, default=None,
                   help="--env: assistant turns per episode at most (default 8; guess-number's demo: 15)")
    p.add_argument("--split", default="test", help="split to take the prompts from")
    p.add_argument("--prompt-column", default="prompt", help="column holding the prompt")
    p.add_argument("--reward", nargs="+", default=None, metavar="SPEC",
                   help="NAME[:WEIGHT] or MODULE:FUNCTION[:WEIGHT] (default: the task's rewards)")
    p.add_argument("--n", type=int, default=5, help="number of prompts (the split's first N)")
    p.add_argument("--samples", type=int, default=1, help="completions per prompt")
    p.add_argument("--width", type=int, default=None,
                   help="characters shown of each prompt and completion (default 40; with --env, of each message: 160)")
    p.set_defaults(func=run_sample)


def run_sample(args: argparse.Namespace) -> int:
    from grpo.llm.data.tasks import default_rewards, load_rows
    from grpo.llm.data.rewards.plugins import reward_set

    width = args.width or (160 if args.env else 40)
    if args.n < 1 or args.samples < 1 or width < 4:
        raise ValueError("--n and --samples must be >= 1, --width >= 4")
    if args.env:
        from grpo.llm.presets import with_presets

        # The environment's own model and limits when it has presets, as `grpo llm train --env` picks them.
        pre = with_presets({"env": args.env} | ({"model": args.model} if args.model else {}))
        args.model = pre.get("model")
        args.max_new_tokens = args.max_new_tokens or pre.get("max_new_tokens")
        max_turns = args.max_turns if args.max_turns is not None else pre.get("max_turns", 8)
        if max_turns < 1:
            raise ValueError("--max-turns must be >= 1")
        model, tok, s, _ = load_for_sampling(args)
        print(episode_lines(env_episodes(model, tok, args.env, args.n, s, args.seed, max_turns), tok, width), end="")
        return 0
    specs = args.reward if args.reward is not None else list(default_rewards(args.task) or [])
    if not specs:
        raise ValueError(f"task {args.task!r} has no default reward: pass --reward NAME or MODULE:FUNCTION")
    rewards = reward_set(specs)  # checked before the model is loaded
    rows = load_rows(args.task, args.split, args.prompt_column, args.n)
    rewards.check_columns([k for k in rows[0] if k != "prompt"])
    model, tok, s, _ = load_for_sampling(args)
    print(sample_table(model, tok, rows, rewards, s, args.samples, width), end="")
    return 0
