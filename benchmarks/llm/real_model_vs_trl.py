"""GRPO vs TRL 1.16's GRPOTrainer on a real pretrained model (e.g. SmolLM2-135M-Instruct), side by side.

The tiny-model comparison (``compare_trl.py``) with its launcher conventions, for any model folder and
task: each (system, seed) runs in a fresh subprocess (peak RSS is that system's own; the launcher
never imports torch), systems alternate (ours, trl, ours, trl, ...) so machine load hits both alike,
and every option TRL also has is set explicitly (``compare_trl.ours_config``/``trl_config``, then the
sizes here): prompts x G, max new tokens, learning rate and schedule, beta with the k3 estimator and
no importance-ratio correction of the KL, per-sequence loss aggregation ("grpo"), group reward
scaling, clip range, AdamW without weight decay, grad-norm 1, dropout off, float32, no gradient
checkpointing, the tokenizer's chat template (prompts as chat messages), the same sampling temperature, no top-k/top-p.
Both train on the rows of ``grpo.llm.data.tasks.load_rows(--task)`` scored by the same reward
function (ours, wrapped in TRL's calling convention).

Per run: time per step (median over steps, the first excluded: warm-up), peak RSS right after
training, reward per step, and held-out greedy accuracy of the saved model after ``--steps`` (and
every ``--eval-every`` steps, from saved checkpoints) by the same function for both systems
(``grpo.llm.evaluation.greedy_accuracy`` on ``--eval-task``); the base model is evaluated once, in
its own child. Checkpoints are written only with ``--eval-every`` (outside each step's timing).

    python benchmarks/llm/real_model_vs_trl.py --model PATH --task train.jsonl --eval-task test.jsonl \\
        --seeds 0 1 2 --steps 20 --out runs/bench-real

writes ``results.jsonl`` (one line per run), ``summary.json`` (medians, ratios) and ``curves.png``
into --out and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import compare_trl as tiny  # the tiny-model comparison's settings, launcher and memory floor

SYSTEMS = ("ours", "trl")


def settings(args: argparse.Namespace) -> dict:
    """The sizes both systems share (beyond compare_trl's explicit options)."""
    return dict(n=args.prompts, G=args.group_size, new=args.max_new_tokens, lr=args.lr, temperature=args.temperature)


def reward_fn(name: str):
    """Our reward ``name`` in TRL's calling convention (conversational completions are message lists)."""
    from grpo.llm.data.rewards.base import REWARDS

    fn = REWARDS.get(name)

    def reward(prompts, completions, **columns):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return fn(prompts, texts, **columns)

    reward.__name__ = name
    return reward


def held_out(args: argparse.Namespace, folder: str) -> float:
    """Greedy accuracy of the model saved in ``folder`` on the held-out rows (the same code for both)."""
    from grpo.llm.data.tasks import load_rows
    from grpo.llm.evaluation import greedy_accuracy
    from grpo.llm.modeling.models import load_model, load_tokenizer

    rows = load_rows(args.eval_task, args.eval_split, limit=args.eval_limit)
    return greedy_accuracy(load_model(folder), load_tokenizer(folder), rows, args.max_new_tokens,
                           reward_fn(args.reward), batch_size=64)


def run_ours(args: argparse.Namespace) -> tuple[dict, dict[int, str]]:
    from grpo.llm.run import train
    from grpo.utils.io import read_jsonl

    s = settings(args)
    cfg = tiny.ours_config(args, task=args.task, reward=[args.reward], prompts_per_step=s["n"], group_size=s["G"],
                           max_new_tokens=s["new"], lr=s["lr"], temperature=s["temperature"], eval_split=None,
                           save_every=args.eval_every,
                           keep_checkpoints=max(1, args.steps))
    summary = train(cfg, log=lambda _: None)
    metrics = read_jsonl(Path(cfg.out) / "metrics.jsonl")
    folders = {int(p.name.split("-")[1]): str(p) for p in Path(cfg.out).glob("checkpoint-*")}
    folders[args.steps] = summary["final_model"]
    return {"step_seconds": [m["time/step_s"] for m in metrics],
            "reward": [m["reward/total/mean"] for m in metrics]}, folders


def step_timer():
    """A TRL ``TrainerCallback`` whose ``seconds`` lists each step's time (one generation and one optimizer
    step per TRL step here, as configured); transformers is imported only when called (in a child)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds, self.t0 = [], 0.0

        def on_step_begin(self, *_, **__):
            self.t0 = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.seconds.append(time.perf_counter() - self.t0)

    return StepTimer()


def run_trl(args: argparse.Namespace) -> tuple[dict, dict[int, str]]:
    import torch
    from datasets import Dataset
    from trl import GRPOTrainer

    from grpo.llm.data.tasks import load_rows
    from grpo.llm.modeling.models import load_tokenizer
    from grpo.utils.runtime import seed_everything

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    s = settings(args)
    save = dict(save_strategy="steps", save_steps=args.eval_every, save_only_model=True) if args.eval_every else {}
    cfg = tiny.trl_config(args, per_device_train_batch_size=s["n"] * s["G"], num_generations=s["G"],
                          max_completion_length=s["new"], learning_rate=s["lr"], temperature=s["temperature"],
                          logging_steps=1, **save)
    timer = step_timer()
    trainer = GRPOTrainer(model=args.model, reward_funcs=[reward_fn(args.reward)], args=cfg,
                          train_dataset=Dataset.from_list(load_rows(args.task)),
                          processing_class=load_tokenizer(args.model), callbacks=[timer])
    trainer.train()
    out = Path(cfg.output_dir)
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    trainer.save_model(str(out / "final"))
    folders = {int(p.name.split("-")[1]): str(p) for p in out.glob("checkpoint-*")}
    folders[args.steps] = str(out / "final")
    return {"step_seconds": timer.seconds, "reward": rewards}, folders


RUNNERS = {"ours": run_ours, "trl": run_trl}


def child(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from grpo.llm.modeling.pretrained import resolve_model
    from grpo.utils.runtime import peak_rss_mb

    torch.set_num_threads(args.threads)
    args.model = resolve_model(args.model, log=None)  # a named model or .gguf file: its converted, cached folder
    if args.system == "base":
        print("RESULT " + json.dumps({"system": "base", "accuracy": held_out(args, args.model)}), flush=True)
        return
    load_start = os.getloadavg()[0]
    torch.manual_seed(args.seed)
    res, folders = RUNNERS[args.system](args)
    peak = peak_rss_mb()  # training only: the evaluations below load more models
    steps = res["step_seconds"][1:] or res["step_seconds"]
    res.update(system=args.system, seed=args.seed, steps=args.steps, peak_rss_mb=round(peak, 1),
               torch_threads=torch.get_num_threads(),  # after training: what both systems really ran with
               seconds_per_step=statistics.median(steps), loadavg_1m=[load_start, os.getloadavg()[0]],
               held_out={str(k): held_out(args, f) for k, f in sorted(folders.items())})
    res["accuracy_after"] = res["held_out"][str(args.steps)]
    print("RESULT " + json.dumps(res), flush=True)


def launch(args: argparse.Namespace, system: str, seed: int) -> dict:
    cmd = [sys.executable, __file__, "--child", system, "--seed", str(seed)] + args.passthrough
    return tiny.run_child(cmd, f"{system} seed {seed}")


def system_medians(runs: list[dict], keys: tuple[str, ...]) -> dict[str, dict]:
    """Per system that ran: the median over its runs (seeds) of each of ``keys``, and its seeds."""
    med = {}
    for system in SYSTEMS:
        rs = [r for r in runs if r["system"] == system]
        if rs:
            med[system] = {k: statistics.median(r[k] for r in rs) for k in keys}
            med[system]["seeds"] = sorted(r["seed"] for r in rs)
    return med


def cost_ratios(ours: dict, trl: dict) -> dict[str, float]:
    """Ours over TRL's median time per step and peak RSS."""
    return {"time_per_step_ours_over_trl": ours["seconds_per_step"] / trl["seconds_per_step"],
            "peak_rss_ours_over_trl": ours["peak_rss_mb"] / trl["peak_rss_mb"]}


def summarise(runs: list[dict], base: float) -> dict:
    med = system_medians(runs, ("seconds_per_step", "peak_rss_mb", "accuracy_after"))
    out = {"accuracy_base": base, "medians": med}
    if len(med) == 2:
        o, t = med["ours"], med["trl"]
        out["ratios"] = {**cost_ratios(o, t),
                         "accuracy_after_ours_minus_trl_points": 100 * (o["accuracy_after"] - t["accuracy_after"])}
    return out


def table(summary: dict) -> str:
    med, r = summary["medians"], summary.get("ratios", {})
    o, t = med.get("ours", {}), med.get("trl", {})

    def cell(d, k, fmt):
        return format(d[k], fmt) if k in d else "-"
    lines = ["| median over seeds | ours | TRL 1.16 | ours / TRL |", "|---|---|---|---|",
             f"| time per step (s, first step excluded) | {cell(o, 'seconds_per_step', '.2f')} | "
             f"{cell(t, 'seconds_per_step', '.2f')} | {cell(r, 'time_per_step_ours_over_trl', '.2f')} |",
             f"| peak RSS (MiB) | {cell(o, 'peak_rss_mb', ',.0f')} | {cell(t, 'peak_rss_mb', ',.0f')} | "
             f"{cell(r, 'peak_rss_ours_over_trl', '.2f')} |",
             f"| held-out greedy accuracy after (base {summary['accuracy_base']:.1%}) | "
             f"{cell(o, 'accuracy_after', '.1%')} | {cell(t, 'accuracy_after', '.1%')} | "
             f"{cell(r, 'accuracy_after_ours_minus_trl_points', '+.1f')} points |"]
    return "\n".join(lines)


def plot(runs: list[dict], base: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for r in runs:
        style = dict(color="C0" if r["system"] == "ours" else "C1", alpha=0.8,
                     label=f"{'ours' if r['system'] == 'ours' else 'TRL'} seed {r['seed']}")
        a.plot(range(1, len(r["reward"]) + 1), r["reward"], **style)
        steps = [0] + [int(k) for k in r["held_out"]]
        b.plot(steps, [base] + list(r["held_out"].values()), marker="o", **style)
    a.set(xlabel="step", ylabel="mean reward of the step's samples", title="training reward")
    b.set(xlabel="step", ylabel="greedy accuracy", title="held-out accuracy")
    a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model folder (or a name/file the CLI's --model accepts)")
    p.add_argument("--task", required=True, help="training rows: a built-in task or a file")
    p.add_argument("--eval-task", required=True, help="held-out rows: a built-in task or a file")
    p.add_argument("--eval-split", default="test", help="split of --eval-task (ignored for files)")
    p.add_argument("--eval-limit", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=0, help="also evaluate checkpoints every N steps (0: end only)")
    p.add_argument("--reward", default="numeric", help="our reward function, by name, for both systems")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--prompts", type=int, default=8, help="prompts per step")
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature, both systems")
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "linear", "cosine"])
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for both systems")
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    p.add_argument("--out", default="runs/bench-real")
    p.add_argument("--report-only", action="store_true",
                   help="only rebuild summary.json, the table and curves.png from --out's results.jsonl and base.json")
    p.add_argument("--child", choices=[*SYSTEMS, "base"], dest="system", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.out = str(Path(args.out).resolve())
    if args.system:
        return child(args)
    args.passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                        if k not in ("seeds", "systems", "system", "seed", "report_only") and v is not None]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:  # a run stopped early: its table and plot from what it wrote
        return report(out, [json.loads(ln) for ln in open(out / "results.jsonl")],
                      json.loads((out / "base.json").read_text())["accuracy"])
    base = launch(args, "base", 0)["accuracy"]
    (out / "base.json").write_text(json.dumps({"accuracy": base}) + "\n")
    runs = []
    for i, seed in enumerate(args.seeds):  # alternate which system goes first, seed by seed
        for system in (args.systems if i % 2 == 0 else args.systems[::-1]):
            res = launch(args, system, seed)
            runs.append(res)
            with open(out / "results.jsonl", "a") as fh:
                fh.write(json.dumps(res) + "\n")
            print(f"{system} seed {seed}: {res['seconds_per_step']:.2f} s/step, {res['peak_rss_mb']:,.0f} MiB, "
                  f"held-out {res['accuracy_after']:.1%}", flush=True)
    report(out, runs, base)


def report(out: Path, runs: list[dict], base: float) -> None:
    """summary.json, the markdown table (printed) and curves.png from the runs."""
    summary = summarise(runs, base)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table(summary))
    plot(runs, base, out / "curves.png")


if __name__ == "__main__":
    main()
