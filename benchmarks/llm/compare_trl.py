"""GRPO vs TRL's GRPOTrainer on the built-in tiny model and addition task, side by side.

Each (system, seed) runs in its own subprocess so that peak RSS is that system's alone; runs are
interleaved (ours, trl, ours, trl, ...) so that machine load hits both alike. Both get the same
model folder, prompts per step, G, max completion length, learning rate, beta, clip range,
loss aggregation, reward scaling, optimizer (AdamW, constant LR, no weight decay, grad-norm 1),
dropout off, float32, no gradient checkpointing, CPU threads — every option set explicitly
because TRL's defaults differ from the paper (beta 0, "dapo" loss, bf16, gradient checkpointing,
and since TRL 1.x a KL term multiplied by the importance ratio, ``use_bias_correction_kl``).
Accuracy is greedy accuracy on the 200-problem test split, measured by the same function for both.

    .venv/bin/python benchmarks/llm/compare_trl.py --seeds 0 1 2 --steps 200 --out runs/bench-llm

writes ``results.jsonl`` (one line per run) and ``summary.json`` (medians and ratios) into --out.
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

COMMON = dict(prompts_per_step=32, group_size=8, max_new_tokens=8, lr=3e-4, beta=0.04, eps=0.2,
              temperature=1.0)


def run_ours(args: argparse.Namespace) -> dict:
    from grpo.llm.config import GRPOConfig
    from grpo.llm.run import train

    c = COMMON
    cfg = GRPOConfig(
        model=args.model, task="addition", steps=args.steps, prompts_per_step=c["prompts_per_step"],
        group_size=c["group_size"], max_new_tokens=c["max_new_tokens"], lr=c["lr"], beta=c["beta"],
        eps_low=c["eps"], eps_high=c["eps"], aggregation="sequence-mean", reward_scale="group", kl_estimator="k3",
        temperature=c["temperature"], top_p=1.0, top_k=0, mu=1, max_grad_norm=1.0, weight_decay=0.0,
        seed=args.seed, out=str(Path(args.out) / f"ours-{args.seed}"), overwrite=True, progress=False,
        tensorboard=False, threads=args.threads, eval_limit=200, device="cpu",
    )
    s = train(cfg, log=lambda _: None)
    return {"accuracy_before": s["accuracy_before"], "accuracy_after": s["accuracy_after"],
            "train_seconds": s["train_seconds"]}


def run_trl(args: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from trl import GRPOConfig as TRLConfig, GRPOTrainer as TRLTrainer

    from grpo.llm.data import load_rows
    from grpo.llm.evaluation import greedy_accuracy
    from grpo.llm.models import load_tokenizer
    from grpo.llm.rewards.answer import exact_answer
    from grpo.utils.runtime import seed_everything

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    c = COMMON
    tok = load_tokenizer(args.model)
    rows = load_rows("addition", "train")
    test = load_rows("addition", "test")

    def exact(prompts, completions, answer, **_):
        return exact_answer(prompts, completions, answer=answer)

    B = c["prompts_per_step"] * c["group_size"]
    targs = TRLConfig(
        output_dir=str(Path(args.out) / f"trl-{args.seed}"), max_steps=args.steps, learning_rate=c["lr"],
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        per_device_train_batch_size=B, gradient_accumulation_steps=1, num_generations=c["group_size"],
        steps_per_generation=1, num_iterations=1, max_completion_length=c["max_new_tokens"],
        temperature=c["temperature"], top_p=1.0, top_k=0, beta=c["beta"], epsilon=c["eps"], epsilon_high=c["eps"],
        loss_type="grpo", scale_rewards="group", importance_sampling_level="token", mask_truncated_completions=False,
        use_bias_correction_kl=False,  # TRL 1.x default True multiplies the KL by the ratio (not the paper's k3)
        entropy_coef=0.0, top_entropy_quantile=1.0, delta=None, off_policy_mask_threshold=None,
        disable_dropout=True, gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=True,
        model_init_kwargs={"dtype": torch.float32}, seed=args.seed, data_seed=args.seed, logging_steps=50,
        report_to="none", save_strategy="no", log_completions=False, dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = TRLTrainer(model=args.model, reward_funcs=[exact], args=targs,
                         train_dataset=Dataset.from_list(rows), processing_class=tok)
    model = trainer.model
    before = greedy_accuracy(model, tok, test, c["max_new_tokens"], exact_answer)
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    after = greedy_accuracy(model, tok, test, c["max_new_tokens"], exact_answer)
    return {"accuracy_before": before, "accuracy_after": after, "train_seconds": round(train_s, 2)}


SYSTEMS = {"ours": run_ours, "trl": run_trl}


def child(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from grpo.utils.runtime import peak_rss_mb

    torch.manual_seed(args.seed)
    res = SYSTEMS[args.system](args)
    res.update(system=args.system, seed=args.seed, steps=args.steps, threads=args.threads,
               seconds_per_step=res["train_seconds"] / args.steps, peak_rss_mb=round(peak_rss_mb(), 1))
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
    p.add_argument("--model", default=None, help="model folder (default: the built-in tiny model)")
    p.add_argument("--out", default="runs/bench-llm")
    p.add_argument("--child", choices=list(SYSTEMS), dest="system", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.model is None:
        from grpo.llm.tiny import tiny_model_path

        args.model = str(tiny_model_path())
    if args.system:
        return child(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in args.seeds:
        for system in args.systems:
            cmd = [sys.executable, __file__, "--child", system, "--seed", str(seed), "--steps", str(args.steps),
                   "--threads", str(args.threads), "--model", args.model, "--out", str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
                raise SystemExit(f"{system} seed {seed} failed")
            res = json.loads(line[len("RESULT "):])
            results.append(res)
            with open(out / "results.jsonl", "a") as fh:
                fh.write(json.dumps(res) + "\n")
            print(json.dumps(res), flush=True)
    summary = summarise(results)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
