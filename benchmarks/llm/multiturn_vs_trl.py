"""Multi-turn GRPO (``grpo llm train --env calculator``) vs TRL 1.16's GRPOTrainer with ``tools=``, side by side.

Both systems train one model on episodes of the ``calculator`` environment (arithmetic word problems, a
``calculator`` tool, reward 1 for the right final number): the conventions of ``real_model_vs_trl.py``
(each (system, seed) a fresh subprocess whose peak RSS is its own, systems alternated seed by seed, the
launcher never imports torch) and every option TRL also has set explicitly (``compare_trl.ours_config``/
``trl_config``: beta with k3 and no ratio-corrected KL, per-sequence aggregation, group scaling, AdamW,
grad-norm 1, dropout off, float32, no gradient checkpointing, temperature 1, no top-k/top-p, CPU threads),
then prompts x G, max turns, max new tokens per turn and the learning rate here.

Where TRL 1.16 cannot do the same thing, what this script does instead:

- Chat template: TRL refuses a template that does not render tool calls (``supports_tool_calling``) and
  SmolLM2's ignores ``tools=``. Both systems get the model with Qwen2.5's ChatML template (TRL's copy,
  ``trl/chat_templates/qwen2_5.jinja``): SmolLM2's own ``<|im_start|>``/``<|im_end|>`` turns, the tool
  schemas in the system turn, Hermes ``<tool_call>`` JSON, tool results as ``<tool_response>`` in a user turn.
- Tokens per turn: TRL's ``max_completion_length`` bounds the whole completion (all turns and the tool
  results); the per-turn cap is ``generation_kwargs={"max_new_tokens": ...}`` and the whole budget is
  ``max_turns x (max_new_tokens + TOOL_TOKENS)``, out of reach as our episode budget (the model's context) is.
- Turns: ``max_tool_calling_iterations = max_turns - 1`` (TRL's turns after the first are post-tool turns).
- Reward: TRL has no environment step; the reward function replays ours: it resets ``CalculatorEnv`` with
  the row's seed and calls ``step`` on the last message, and gives 0 (as our episode loop does) when the
  episode did not end with an answer turn closed by the end-of-turn token (a turn cut at max new tokens,
  or tool calls still pending at the last turn). ``environment_factory`` is not used: the tool is
  stateless and grading needs the answer's text, which an environment's ``get_reward()`` does not see.
- Problems: TRL reads a dataset: the environment's ``reset(seed)`` for exactly the seeds ours draws at
  each step (``group_seeds``), in that order, unshuffled: both systems see the same problems at each step.
- Tool calls are parsed by each system's parser (same Hermes JSON). A malformed call gets an ``error: ...``
  tool message and another turn from ours; TRL's ``parse_response`` falls back to plain text, so the
  episode ends there with that text as its answer.
- Sampling: ours draws counter-based random numbers (its own engine); TRL uses ``model.generate``.

Per run: time per step (median, the first step excluded), peak RSS right after training, per step the
mean episode return, tool calls and sampled tokens per episode, and after training the mean return (=
solve rate) of ``--eval-episodes`` episodes (seeds 10000, ...) played by the same function for both
systems (``MultiTurnTrainer.evaluate``, sampled as in training).

    GRPO_LAB_CACHE=... python benchmarks/llm/multiturn_vs_trl.py --model smollm2-135m-instruct \\
        --seeds 0 1 --steps 4 --prompts 4 --group-size 4 --max-turns 3 --max-new-tokens 64 --out runs/bench-mt
    python benchmarks/llm/multiturn_vs_trl.py --smoke --out runs/bench-mt-smoke   # a tiny random model

With ``--sft-episodes N`` both systems start from one warm-started model: ``grpo llm sft`` on N expert
demonstrations of the environment (in the tool template above), run once in a process of its own
before the runs (``--out``/sft/final); without it SmolLM2-135M-Instruct never calls the tool, and both
returns are 0.

writes ``results.jsonl`` (one line per run) and ``summary.json`` (medians, ratios) into --out and prints a
markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import compare_trl as tiny  # the shared explicit settings, the child launcher
from real_model_vs_trl import cost_ratios, step_timer, system_medians

SYSTEMS = ("ours", "trl")
ENV = "calculator"
TOOL_TOKENS = 64  # per tool round in TRL's whole-completion budget: far above a calculator result's tokens
SMOKE = dict(steps=2, prompts=2, group_size=2, max_turns=2, max_new_tokens=8, eval_episodes=2, seeds=[0])


# ---------------------------------------------------------------- the model both systems load
def tool_template() -> str:
    """Qwen2.5's ChatML template with tools, as TRL ships it (TRL knows how to parse its tool calls)."""
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()


def prepared_model(args: argparse.Namespace) -> str:
    """``--out``/model: the resolved model's files (linked) with the tool template; a tiny random Llama
    of the same tokenizer with ``--smoke``. Written once, by the first child."""
    from grpo.llm.modeling.pretrained import resolve_model

    folder = Path(args.out) / ("model-smoke" if args.smoke else "model")
    if (folder / "chat_template.jinja").exists():
        return str(folder)
    source = Path(resolve_model(args.model, log=None))
    folder.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        cfg = AutoConfig.from_pretrained(source)
        cfg.update(dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=1, head_dim=16))
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    for f in source.iterdir():  # with --smoke only the tokenizer's files join the random model's
        skip = f.name == "chat_template.jinja" or (args.smoke and "tokenizer" not in f.name)
        if not skip and not (folder / f.name).exists():
            (folder / f.name).symlink_to(f.resolve())
    (folder / "chat_template.jinja").write_text(tool_template())
    return str(folder)


# ---------------------------------------------------------------- the environment, in TRL's terms
def trl_rows(seed: int, steps: int, prompts: int) -> list[dict]:
    """One row per group of ours, step by step: the opening messages and the reset seed."""
    from grpo.llm.envs.calculator import CalculatorEnv
    from grpo.llm.rollout.seeding import group_seeds

    rows = []
    for step in range(steps):
        for s in group_seeds(seed, step, prompts):
            messages, _ = CalculatorEnv().reset(seed=s)
            rows.append({"prompt": messages, "env_seed": s})
    return rows


def episode_return(messages: list[dict], ids: list[int], env_seed: int, eos: set[int]) -> float:
    """The return our episode loop gives a TRL completion (its ``messages`` and sampled ``ids``): the
    environment's reward for the final answer; 0 when the last turn was cut before its end-of-turn token
    or still calls tools (ours: a truncated episode, nothing graded).

    >>> eos = {2}
    >>> answer = [{"role": "assistant", "content": "It is 100."}]
    >>> seed = next(s for s in range(50) if _answer(s) == 100)
    >>> episode_return(answer, [7, 2], seed, eos), episode_return(answer, [7, 8], seed, eos)
    (1.0, 0.0)
    >>> call = [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "calculator"}}]}]
    >>> episode_return(answer[:0] + call, [7, 2], seed, eos)
    0.0
    """
    from grpo.llm.envs.calculator import CalculatorEnv

    last = messages[-1] if messages else {}
    if last.get("role") != "assistant" or last.get("tool_calls") or not ids or ids[-1] not in eos:
        return 0.0
    env = CalculatorEnv()
    env.reset(seed=env_seed)
    return float(env.step({"role": "assistant", "content": last.get("content") or ""})[1])


def _answer(seed: int) -> int:
    from grpo.llm.envs.calculator import CalculatorEnv

    return CalculatorEnv().reset(seed=seed)[1]["answer"]


def trl_reward(eos: set[int]):
    """:func:`episode_return` in TRL's reward-function convention."""
    def calculator_return(prompts, completions, completion_ids, env_seed, **_):
        return [episode_return(c, ids, s, eos) for c, ids, s in zip(completions, completion_ids, env_seed)]

    return calculator_return


# ---------------------------------------------------------------- the two systems
def run_ours(args: argparse.Namespace) -> tuple[dict, object, object]:
    from grpo.llm.modeling.models import load_model, load_tokenizer
    from grpo.llm.run import train
    from grpo.utils.io import read_jsonl

    cfg = tiny.ours_config(args, env=ENV, prompts_per_step=args.prompts, group_size=args.group_size,
                           max_turns=args.max_turns, max_new_tokens=args.max_new_tokens, lr=args.lr,
                           truncated="keep", env_advantage="outcome", env_eval_episodes=0, eval_every=0,
                           dynamic_sampling=args.ours_max_resample > 0, max_resample=args.ours_max_resample)
    summary = train(cfg, log=lambda _: None)
    m = read_jsonl(Path(cfg.out) / "metrics.jsonl")
    res = {"step_seconds": [x["time/step_s"] for x in m], "return": [x["episode/return_mean"] for x in m],
           "tool_calls": [x["tools/calls_per_episode"] for x in m],
           "sampled_tokens": [x["episode/sampled_tokens_mean"] for x in m], "kl": [x.get("kl/ref") for x in m],
           "zero_std_frac": [x.get("groups/zero_std_frac") for x in m], "rounds": [x.get("sampling/rounds") for x in m]}
    return res, load_model(summary["final_model"]), load_tokenizer(summary["final_model"])


def trl_trainer(args: argparse.Namespace, reward=None):
    """TRL's GRPOTrainer with the settings of ours (module docstring), a step timer among its callbacks;
    ``reward(eos)`` builds the reward function (default :func:`trl_reward`). Returns (trainer, timer)."""
    import torch
    from datasets import Dataset
    from trl import GRPOTrainer

    from grpo.llm.envs.calculator import CalculatorEnv
    from grpo.llm.modeling.models import load_tokenizer
    from grpo.utils.runtime import seed_everything

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    cfg = tiny.trl_config(args, per_device_train_batch_size=args.prompts * args.group_size,
                          num_generations=args.group_size, learning_rate=args.lr, logging_steps=1,
                          max_completion_length=args.max_turns * (args.max_new_tokens + TOOL_TOKENS),
                          generation_kwargs={"max_new_tokens": args.max_new_tokens},
                          max_tool_calling_iterations=args.max_turns - 1, shuffle_dataset=False)
    timer, eos = step_timer(), set()
    trainer = GRPOTrainer(model=args.model, reward_funcs=[(reward or trl_reward)(eos)], args=cfg,
                          tools=list(CalculatorEnv.tools),
                          train_dataset=Dataset.from_list(trl_rows(args.seed, args.steps, args.prompts)),
                          processing_class=load_tokenizer(args.model), callbacks=[timer])
    eos.update(trainer.eos_token_ids)  # the ids TRL's generation stops at
    return trainer, timer


def run_trl(args: argparse.Namespace) -> tuple[dict, object, object]:
    trainer, timer = trl_trainer(args)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    res = {"step_seconds": timer.seconds, "return": [h["reward"] for h in logs],
           "tool_calls": [h.get("tools/call_frequency", 0.0) for h in logs],
           "sampled_tokens": [h["completions/mean_length"] for h in logs],
           "kl": [h.get("kl") for h in logs]}
    return res, trainer.model, trainer.processing_class


RUNNERS = {"ours": run_ours, "trl": run_trl}


def evaluate(args: argparse.Namespace, model, tok) -> dict[str, float]:
    """Mean return (solve rate), turns and tool calls of ``--eval-episodes`` episodes: our evaluation,
    the same code for both systems' trained models."""
    from grpo.llm.algorithms.multiturn import MultiTurnTrainer

    cfg = tiny.ours_config(args, env=ENV, max_turns=args.max_turns, max_new_tokens=args.max_new_tokens,
                           out=str(Path(args.out) / "eval"))
    return MultiTurnTrainer(cfg, model.eval(), tok).evaluate(args.eval_episodes)


def warm_start(args: argparse.Namespace) -> None:
    """``--sft-episodes``: ``grpo llm sft`` on the prepared model (its own process, before the runs), once."""
    from grpo.llm.sft import SFTConfig, train_sft

    if not (Path(args.out) / "sft" / "final").exists():
        train_sft(SFTConfig(env=ENV, model=prepared_model(args), episodes=args.sft_episodes, lr=args.sft_lr,
                            threads=args.threads, out=str(Path(args.out) / "sft")))


def child(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.system == "sft":
        return warm_start(args)
    import torch

    from grpo.utils.runtime import peak_rss_mb

    torch.set_num_threads(args.threads)
    # the warm-started model keeps the tool template it was trained with (its tokenizer saved it)
    args.model = str(Path(args.out) / "sft" / "final") if args.sft_episodes else prepared_model(args)
    load_start = os.getloadavg()[0]
    torch.manual_seed(args.seed)
    res, model, tok = RUNNERS[args.system](args)
    peak = peak_rss_mb()  # training only: the evaluation below is not part of it
    steps = res["step_seconds"][1:] or res["step_seconds"]
    res.update(system=args.system, seed=args.seed, steps=args.steps, peak_rss_mb=round(peak, 1),
               torch_threads=torch.get_num_threads(), seconds_per_step=statistics.median(steps),
               return_mean=statistics.fmean(res["return"]), loadavg_1m=[load_start, os.getloadavg()[0]])
    res["eval_after"] = evaluate(args, model, tok) if args.eval_episodes else {}
    res["eval_return"] = res["eval_after"].get("episode/return_mean")
    print("RESULT " + json.dumps(res), flush=True)


# ---------------------------------------------------------------- launcher and report
def summarise(runs: list[dict]) -> dict:
    med = system_medians(runs, ("seconds_per_step", "peak_rss_mb", "return_mean"))
    for system, m in med.items():
        rs = [r for r in runs if r["system"] == system]
        evals = [r["eval_return"] for r in rs if r.get("eval_return") is not None]
        m["eval_return"] = statistics.median(evals) if evals else None
        m["tool_calls"] = statistics.median(statistics.fmean(r["tool_calls"]) for r in rs)
        m["sampled_tokens"] = statistics.median(statistics.fmean(r["sampled_tokens"]) for r in rs)
    out = {"medians": med}
    if len(med) == 2:
        out["ratios"] = cost_ratios(med["ours"], med["trl"])
    return out


def table(summary: dict) -> str:
    med, r = summary["medians"], summary.get("ratios", {})
    o, t = med.get("ours", {}), med.get("trl", {})

    def cell(d, k, fmt):
        return "-" if d.get(k) is None else format(d[k], fmt)
    rows = [("time per step (s, first step excluded)", "seconds_per_step", ".2f", "time_per_step_ours_over_trl"),
            ("peak RSS (MiB)", "peak_rss_mb", ",.0f", "peak_rss_ours_over_trl"),
            ("mean episode return over training steps", "return_mean", ".3f", None),
            ("tool calls per episode (training)", "tool_calls", ".2f", None),
            ("sampled tokens per episode (training)", "sampled_tokens", ".1f", None),
            ("return (solve rate) of the evaluation episodes after", "eval_return", ".3f", None)]
    lines = ["| median over seeds | ours | TRL 1.16 | ours / TRL |", "|---|---|---|---|"]
    lines += [f"| {what} | {cell(o, k, fmt)} | {cell(t, k, fmt)} | {cell(r, ratio, '.2f') if ratio else ''} |"
              for what, k, fmt, ratio in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m-instruct", help="model folder or a name the CLI's --model accepts")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--prompts", type=int, default=4, help="reset seeds (groups) per step")
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-turns", type=int, default=3, help="assistant turns per episode (tool turns included)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens per assistant turn")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "linear", "cosine"])
    p.add_argument("--eval-episodes", type=int, default=8, help="episodes played after training (0: none)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for both systems")
    p.add_argument("--sft-episodes", type=int, default=0, help="first a warm start for both: grpo llm sft on this "
                   "many expert demonstrations of the env, in a process of its own (0: none; SmolLM2 then never calls the tool)")
    p.add_argument("--sft-lr", type=float, default=3e-5, help="the warm start's learning rate")
    p.add_argument("--ours-max-resample", type=int, default=0, help="ours only (TRL has no such option): "
                   "dynamic sampling with at most this many extra rounds a step (0: off, the comparison's setting)")
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    p.add_argument("--smoke", action="store_true", help="a tiny random model with the named model's tokenizer, "
                   "and tiny sizes (steps 2, 2 prompts x G 2, 2 turns of 8 tokens): exercises the script")
    p.add_argument("--out", default="runs/bench-multiturn")
    p.add_argument("--report-only", action="store_true",
                   help="only rebuild summary.json and the table from --out's results.jsonl (a run stopped early)")
    p.add_argument("--child", choices=[*SYSTEMS, "sft"], dest="system", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.smoke:
        for k, v in SMOKE.items():
            setattr(args, k, v)
    args.out = str(Path(args.out).resolve())
    if args.system:
        return child(args)
    passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                   if k not in ("seeds", "systems", "system", "seed", "smoke", "report_only") and v is not None]
    passthrough += ["--smoke"] if args.smoke else []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        return report(out, [json.loads(ln) for ln in open(out / "results.jsonl")])
    if args.sft_episodes:  # not timed, not in any run's peak RSS
        subprocess.run([sys.executable, __file__, "--child", "sft"] + passthrough, check=True)
    runs = []
    for i, seed in enumerate(args.seeds):  # alternate which system goes first, seed by seed
        for system in (args.systems if i % 2 == 0 else args.systems[::-1]):
            cmd = [sys.executable, __file__, "--child", system, "--seed", str(seed)] + passthrough
            res = tiny.run_child(cmd, f"{system} seed {seed}")
            runs.append(res)
            with open(out / "results.jsonl", "a") as fh:
                fh.write(json.dumps(res) + "\n")
            print(f"{system} seed {seed}: {res['seconds_per_step']:.2f} s/step, {res['peak_rss_mb']:,.0f} MiB, "
                  f"return {res['return_mean']:.3f}, eval {res['eval_return']}, load {res['loadavg_1m']}", flush=True)
    report(out, runs)


def report(out: Path, runs: list[dict]) -> None:
    summary = summarise(runs)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table(summary))


if __name__ == "__main__":
    main()
