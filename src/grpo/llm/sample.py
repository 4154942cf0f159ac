"""``grpo llm sample``: a few prompts of a task, the model's completions and their rewards, side by side.

The completions are sampled as in training (the same engine and sampling options) and scored by
the run's rewards (the task's own, or ``--reward`` names and ``module:function`` specs), so a
user sees what a run learnt and why it was rewarded.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

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


def register(llm_sub: argparse._SubParsersAction) -> None:
    """``grpo llm sample``."""
    p = llm_sub.add_parser("sample", help="prompts of a task, the model's completions and their rewards")
    add_sampling_args(p)
    p.add_argument("--task", default="addition", help="built-in task, data file or `datasets` name")
    p.add_argument("--split", default="test", help="split to take the prompts from")
    p.add_argument("--prompt-column", default="prompt", help="column holding the prompt")
    p.add_argument("--reward", nargs="+", default=None, metavar="SPEC",
                   help="NAME[:WEIGHT] or MODULE:FUNCTION[:WEIGHT] (default: the task's rewards)")
    p.add_argument("--n", type=int, default=5, help="number of prompts (the split's first N)")
    p.add_argument("--samples", type=int, default=1, help="completions per prompt")
    p.add_argument("--width", type=int, default=40, help="characters shown of each prompt and completion")
    p.set_defaults(func=run_sample)


def run_sample(args: argparse.Namespace) -> int:
    from grpo.llm.data.tasks import default_rewards, load_rows
    from grpo.llm.data.rewards.plugins import reward_set

    if args.n < 1 or args.samples < 1 or args.width < 4:
        raise ValueError("--n and --samples must be >= 1, --width >= 4")
    specs = args.reward if args.reward is not None else list(default_rewards(args.task) or [])
    if not specs:
        raise ValueError(f"task {args.task!r} has no default reward: pass --reward NAME or MODULE:FUNCTION")
    rewards = reward_set(specs)  # checked before the model is loaded
    rows = load_rows(args.task, args.split, args.prompt_column, args.n)
    rewards.check_columns([k for k in rows[0] if k != "prompt"])
    model, tok, s, _ = load_for_sampling(args)
    print(sample_table(model, tok, rows, rewards, s, args.samples, args.width), end="")
    return 0
