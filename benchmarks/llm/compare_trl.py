"""GRPO vs TRL's GRPOTrainer on the built-in tiny model and addition task, side by side.

Each (system, seed) runs in its own subprocess so that peak RSS is that system's alone; runs are
interleaved (ours, trl, ours, trl, ...) so that machine load hits both alike. The launcher itself
never imports torch (Linux carries a parent's peak RSS into its children's ``ru_maxrss``); the
tiny model is found or built by a child too. Both systems get the same model folder, prompts per
step, G, max completion length, learning rate and its schedule, beta, clip range, loss
aggregation, reward scaling, optimizer (AdamW, no weight decay, grad-norm 1), dropout off,
float32, no gradient checkpointing, CPU threads -- every option set explicitly because TRL's
defaults differ from the paper (beta 0, "dapo" loss, bf16, gradient checkpointing, a linearly
decaying learning rate, and since TRL 1.x a KL term multiplied by the importance ratio,
``use_bias_correction_kl``). Accuracy is greedy accuracy on the 200-problem test split (the
target's measure) and, with less noise, on all 8,100 problems; both by the same function for
both systems.

    .venv/bin/python benchmarks/llm/compare_trl.py --seeds 0 1 2 --steps 200 --out runs/bench-llm

writes ``results.jsonl`` (one line per run) and ``summary.json`` (medians and ratios) into --out;
``report.py`` makes the tables. ``replay_trl.py`` checks that the two compute the same update.
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

# The settings of `grpo llm train` with no arguments (the tiny preset), spelled out.
COMMON = dict(prompts_per_step=32, group_size=8, max_new_tokens=8, lr=3e-4, lr_schedule="linear", beta=0.04,
              eps=0.2, temperature=1.0)


def ours_config(args: argparse.Namespace, **over):
    """Our GRPOConfig for the benchmark, every option that TRL also has set explicitly."""
    from grpo.llm.config import GRPOConfig

    c = {**COMMON, "lr_schedule": args.lr_schedule}
    kw = dict(
        model=args.model, task="addition", steps=args.steps, prompts_per_step=c["prompts_per_step"],
        group_size=c["group_size"], max_new_tokens=c["max_new_tokens"], lr=c["lr"], lr_schedule=c["lr_schedule"],
        beta=c["beta"], eps_low=c["eps"], eps_high=c["eps"], aggregation="sequence-mean", reward_scale="group",
        kl_estimator="k3", temperature=c["temperature"], top_p=1.0, top_k=0, mu=1, max_grad_norm=1.0,
        weight_decay=0.0, mask_truncated=False, entropy_coef=0.0, dynamic_sampling=False, seed=args.seed,
        out=str(Path(args.out) / f"ours-{args.seed}"), overwrite=True, progress=False, tensorboard=False,
        threads=args.threads, eval_limit=200, device="cpu",
    )
    return GRPOConfig(**{**kw, **over})


def trl_config(args: argparse.Namespace, **over):
    """TRL's GRPOConfig with the same settings: one generation batch of prompts x G per optimizer step."""
    import torch
    from trl import GRPOConfig as TRLConfig

    c = {**COMMON, "lr_schedule": args.lr_schedule}
    kw = dict(
        output_dir=str(Path(args.out) / f"trl-{args.seed}"), max_steps=args.steps, learning_rate=c["lr"],
        lr_scheduler_type=c["lr_schedule"], warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
        # per_device_train_batch_size counts completions: 32 prompts x 8; one optimizer step per generation
        per_device_train_batch_size=c["prompts_per_step"] * c["group_size"], gradient_accumulation_steps=1,
        num_generations=c["group_size"], steps_per_generation=1, num_iterations=1,
        max_completion_length=c["max_new_tokens"], temperature=c["temperature"], top_p=1.0, top_k=0, min_p=None,
        repetition_penalty=1.0, beta=c["beta"], epsilon=c["eps"], epsilon_high=c["eps"], loss_type="grpo",
        scale_rewards="group", importance_sampling_level="token", mask_truncated_completions=False,
        use_bias_correction_kl=False,  # TRL 1.x default True multiplies the KL by the ratio (not the paper's k3)
        entropy_coef=0.0, top_entropy_quantile=1.0, delta=None, off_policy_mask_threshold=None,
        disable_dropout=True, gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=True,
        model_init_kwargs={"dtype": torch.float32}, seed=args.seed, data_seed=args.seed, logging_steps=50,
        report_to="none", save_strategy="no", log_completions=False, dataloader_num_workers=0,
        disable_tqdm=True,
    )
    return TRLConfig(**{**kw, **over})


def exact_reward(prompts, completions, answer, **_):
    """The built-in task's reward, in TRL's calling convention."""
    from grpo.llm.data.rewards.answer import exact_answer

    return exact_answer(prompts, completions, answer=answer)


def trl_trainer(args: argparse.Namespace, **over):
    from datasets import Dataset
    from trl import GRPOTrainer as TRLTrainer

    from grpo.llm.data.tasks import load_rows
    from grpo.llm.modeling.models import load_tokenizer

    tok = load_tokenizer(args.model)
    return TRLTrainer(model=args.model, reward_funcs=[exact_reward], args=trl_config(args, **over),
                      train_dataset=Dataset.from_list(load_rows("addition", "train")), processing_class=tok)


def accuracies(model, tok) -> tuple[float, float]:
    """Greedy accuracy on the test split (200 problems) and on all 8,100 problems."""
    from grpo.llm.data.tasks import load_rows
    from grpo.llm.evaluation import greedy_accuracy

    test = load_rows("addition", "test")
    every = load_rows("addition", "train") + test
    return (greedy_accuracy(model, tok, test, COMMON["max_new_tokens"]),
            greedy_accuracy(model, tok, every, COMMON["max_new_tokens"]))


def run_ours(args: argparse.Namespace) -> dict:
    from grpo.llm.modeling.models import load_model, load_tokenizer
    from grpo.llm.run import train

    cfg = ours_config(args)
    before_all = accuracies(load_model(args.model), load_tokenizer(args.model))[1]
    s = train(cfg, log=lambda _: None)
    after_all = accuracies(load_model(s["final_model"]), load_tokenizer(s["final_model"]))[1]
    return {"accuracy_before": s["accuracy_before"], "accuracy_after": s["accuracy_after"],
            "accuracy_all_before": before_all, "accuracy_all_after": after_all, "train_seconds": s["train_seconds"]}


def run_trl(args: argparse.Namespace) -> dict:
    import torch

    from grpo.utils.runtime import seed_everything

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    trainer = trl_trainer(args)
    model, tok = trainer.model, trainer.processing_class
    before, before_all = accuracies(model, tok)
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    after, after_all = accuracies(model, tok)
    return {"accuracy_before": before, "accuracy_after": after, "accuracy_all_before": before_all,
            "accuracy_all_after": after_all, "train_seconds": round(train_s, 2),
            "last_lr": trainer.lr_scheduler.get_last_lr()[0]}


SYSTEMS = {"ours": run_ours, "trl": run_trl}


def launcher_peak_rss_mb() -> float:
    """This launcher's own peak RSS, recorded beside each child's figure: the floor a child inherits.

    On Linux it is ``VmHWM`` (the high-water mark of this process's memory since its exec), not
    ``ru_maxrss``, which would carry the peak of whatever started the launcher (a test runner, say);
    a child's figure inherits only the former.
    """
    try:
        with open("/proc/self/status") as fh:
            return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_child(cmd: list[str], what: str) -> dict:
    """Run one benchmark child (a fresh process) and return its RESULT line's JSON."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{what} failed")
    res = json.loads(line[len("RESULT "):])
    res["launcher_peak_rss_mb"] = round(launcher_peak_rss_mb(), 1)  # stays far below every child's
    return res


def resolve_model_child() -> None:
    """In a child process: build (once) the tiny model and print its folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from grpo.llm.modeling.tiny import tiny_model_path

    print("MODEL " + str(tiny_model_path(log=lambda m: print(m, file=sys.stderr))), flush=True)


def resolve_model() -> str:
    """The tiny model's folder, found (or built) by a child: this launcher never imports torch.

    Linux carries a process's peak RSS into the ``ru_maxrss`` of the children it forks (the forked
    copy starts at the parent's size and exec keeps that high-water mark), so a launcher that had
    imported torch would put a floor of its own size under every child's figure.
    """
    proc = subprocess.run([sys.executable, __file__, "--resolve-model"], capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("MODEL ")), None)
    if line is None:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit("could not build or find the tiny model")
    return line[len("MODEL "):]


def child(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from grpo.utils.runtime import peak_rss_mb

    load_start = os.getloadavg()[0]
    torch.manual_seed(args.seed)
    res = SYSTEMS[args.system](args)
    res.update(system=args.system, seed=args.seed, steps=args.steps, threads=args.threads,
               lr_schedule=args.lr_schedule, seconds_per_step=res["train_seconds"] / args.steps,
               peak_rss_mb=round(peak_rss_mb(), 1), loadavg_1m=[load_start, os.getloadavg()[0]])
    print("RESULT " + json.dumps(res), flush=True)


def summarise(results: list[dict]) -> dict:
    med = {}
    for system in SYSTEMS:
        rs = [r for r in results if r["system"] == system]
        if not rs:
            continue
        med[system] = {k: statistics.median(r[k] for r in rs) for k in
                       ("accuracy_before", "accuracy_after", "seconds_per_step", "peak_rss_mb")}
        med[system]["gain_points"] = statistics.median(100 * (r["accuracy_after"] - r["accuracy_before"]) for r in rs)
        med[system]["seeds"] = sorted(r["seed"] for r in rs)
    out = {"medians": med}
    if "ours" in med and "trl" in med:
        o, t = med["ours"], med["trl"]
        out["ratios"] = {"time_per_step_ours_over_trl": o["seconds_per_step"] / t["seconds_per_step"],
                         "peak_rss_ours_over_trl": o["peak_rss_mb"] / t["peak_rss_mb"],
                         "accuracy_after_ours_minus_trl_points": 100 * (o["accuracy_after"] - t["accuracy_after"])}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for both systems")
    p.add_argument("--lr-schedule", default=COMMON["lr_schedule"], choices=["constant", "linear", "cosine"],
                   help="learning-rate schedule for both systems (TRL's lr_scheduler_type, warmup 0)")
    p.add_argument("--model", default=None, help="model folder (default: the built-in tiny model)")
    p.add_argument("--out", default="runs/bench-llm")
    p.add_argument("--child", choices=list(SYSTEMS), dest="system", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--resolve-model", action="store_true", help=argparse.SUPPRESS)  # the child that builds it
    args = p.parse_args()
    if args.resolve_model:
        return resolve_model_child()
    if args.system:
        return child(args)
    if args.model is None:
        args.model = resolve_model()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in args.seeds:
        for system in args.systems:
            cmd = [sys.executable, __file__, "--child", system, "--seed", str(seed), "--steps", str(args.steps),
                   "--threads", str(args.threads), "--lr-schedule", args.lr_schedule, "--model", args.model,
                   "--out", str(out)]
            res = run_child(cmd, f"{system} seed {seed}")
            results.append(res)
            with open(out / "results.jsonl", "a") as fh:
                fh.write(json.dumps(res) + "\n")
            print(json.dumps(res), flush=True)
    summary = summarise(results)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
