"""GRPO vs PPO on language models, side by side: peak memory, time per step, accuracy after the same steps.

Every (model, system, seed) runs ``grpo.llm.run.train`` -- what ``grpo llm train`` calls -- in its own
fresh process, so each peak is that system's alone; systems are interleaved per seed so that the
load of this shared machine hits them alike. All systems get the same model, task, prompts per
step x G, completion length, learning rate, KL coefficient and clip range; PPO adds its value model.

Models: ``tiny`` is the built-in tiny model (0.5M parameters, partly trained on addition);
``100m`` is a Llama built locally from a LlamaConfig sized to ~100M parameters with the character
tokenizer, **randomly initialised** (no download; its accuracy means nothing, its memory does).

Memory: peak RSS of the process (ru_maxrss) on CPU, and RSS right after the imports (the floor
every run shares); on a GPU, also ``torch.cuda.max_memory_allocated``.

    .venv/bin/python benchmarks/llm_memory/run.py --model tiny --systems grpo ppo ppo-shared \\
        --seeds 0 1 2 --steps 200 --out runs/bench-llm-memory
    .venv/bin/python benchmarks/llm_memory/run.py --model 100m --steps 4 --seeds 0 --threads 2 \\
        --systems grpo ppo ppo-shared grpo-beta0 ppo-beta0 --out runs/bench-llm-memory

append to ``--out/results.jsonl`` (one line per run); ``plot.py`` makes the tables and figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# Options every system shares, per model. The tiny model is the built-in task's default setting
# (32 prompts x 8 samples); the 100M model uses a smaller batch so that a step takes seconds on CPU,
# while weights and optimizer state (16 bytes per trained parameter) still dominate activations.
COMMON = {
    # A constant rate: the published figures predate the tiny preset's linear decay.
    "tiny": dict(prompts_per_step=32, group_size=8, max_new_tokens=8, lr=3e-4, lr_schedule="constant", beta=0.04,
                 eval_every=20, eval_limit=200),
    "100m": dict(prompts_per_step=8, group_size=4, max_new_tokens=8, lr=1e-5, lr_schedule="constant", beta=0.04,
                 eval_split=None),
}
# System -> (algo, overrides). PPO's own options are PPOConfig's defaults.
SYSTEMS = {
    "grpo": ("grpo", {}),
    "ppo": ("ppo", {"value_model": "critic"}),
    "ppo-shared": ("ppo", {"value_model": "shared"}),
    "grpo-beta0": ("grpo", {"beta": 0.0}),
    "ppo-beta0": ("ppo", {"value_model": "critic", "beta": 0.0}),
}
# ~100M parameters: 12 layers x (4 x 768^2 attention + 3 x 768 x 2560 MLP) + embeddings = 99.4M.
LLAMA_100M = dict(hidden_size=768, intermediate_size=2560, num_hidden_layers=12, num_attention_heads=12,
                  num_key_value_heads=12, max_position_embeddings=64, tie_word_embeddings=False)


def model_100m_path() -> Path:
    """A ~100M-parameter Llama with the character tokenizer, random init (seed 0), saved once."""
    from grpo.llm.modeling.model_cache import cache_dir
    from grpo.llm.modeling.tiny import char_tokenizer

    path = cache_dir() / "llama-100m-char-random"
    if (path / "config.json").exists():
        return path
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tok = char_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                         eos_token_id=tok.eos_token_id, bos_token_id=None, **LLAMA_100M))
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, path)
    return path


def model_path(name: str) -> str:
    from grpo.llm.modeling.tiny import tiny_model_path

    return str(tiny_model_path(log=None) if name == "tiny" else model_100m_path())


def child(args: argparse.Namespace) -> None:
    """One run in this process: train, then print RESULT {json}."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers  # noqa: F401  (imported before the floor is read: every run pays for it)

    from grpo.llm.config import GRPOConfig
    from grpo.llm.ppo_config import LLM_ALGOS
    from grpo.llm.run import train
    from grpo.utils.io import read_jsonl
    from grpo.utils.runtime import current_rss_mb, peak_rss_mb

    floor = current_rss_mb()
    algo, overrides = SYSTEMS[args.system]
    run_dir = Path(args.out) / "runs" / f"{args.model}-{args.system}-s{args.seed}"
    cfg: GRPOConfig = LLM_ALGOS[algo](
        model=args.model_path, task="addition", steps=args.steps, seed=args.seed, out=str(run_dir),
        overwrite=True, progress=False, tensorboard=False, threads=args.threads, device=args.device,
        samples_every=10_000, **{**COMMON[args.model], **overrides})
    load_before = os.getloadavg()[0]
    s = train(cfg, log=lambda _: None)
    peak = peak_rss_mb()  # read now: counting parameters below loads the model again
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    step_s = [m["time/step_s"] for m in metrics]
    wall, curve = 0.0, [{"step": 0, "wall_s": 0.0, "accuracy": s["accuracy_before"]}]
    for m in metrics:
        wall += m["time/step_s"]
        if "eval/greedy_accuracy" in m:
            curve.append({"step": int(m["step"]) + 1, "wall_s": round(wall, 2), "accuracy": m["eval/greedy_accuracy"]})
    res = {
        "model": args.model, "system": args.system, "algo": algo, "seed": args.seed, "steps": args.steps,
        "threads": args.threads, "device": args.device, "config": {**COMMON[args.model], **overrides},
        "accuracy_before": s["accuracy_before"], "accuracy_after": s["accuracy_after"], "curve": curve,
        "train_seconds": s["train_seconds"],
        # Step 0 allocates the optimizer state and warms caches: the median leaves it out when it can.
        "median_step_s": _median(step_s[1:] or step_s), "floor_rss_mb": round(floor, 1),
        "peak_rss_mb": round(peak, 1), "params": _param_counts(cfg, args.model_path),
        "loadavg_1m": [load_before, os.getloadavg()[0]],
    }
    if args.device.startswith("cuda"):
        res["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print("RESULT " + json.dumps(res), flush=True)


def _median(xs: list[float]) -> float:
    import statistics

    return round(statistics.median(xs), 4)


def _param_counts(cfg, path: str) -> dict[str, int]:
    """Trained and frozen parameters: policy, value model (trained beyond the policy), reference."""
    from grpo.llm.modeling.models import load_model
    from grpo.llm.algorithms.value import build_value_model

    policy = load_model(path)
    n = sum(p.numel() for p in policy.parameters())
    value = sum(p.numel() for p in build_value_model(cfg.value_model, policy).own_parameters()) \
        if getattr(cfg, "algo", "grpo") == "ppo" else 0
    return {"policy": n, "value_trained": value, "reference": n if cfg.beta > 0 else 0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=list(COMMON), default="tiny")
    p.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=["grpo", "ppo", "ppo-shared"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads, every system alike")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", default="runs/bench-llm-memory")
    p.add_argument("--child", dest="system", choices=list(SYSTEMS), help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--model-path", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.system:
        return child(args)
    path = model_path(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for system in args.systems:
            cmd = [sys.executable, __file__, "--child", system, "--model", args.model, "--model-path", path,
                   "--seed", str(seed), "--steps", str(args.steps), "--threads", str(args.threads),
                   "--device", args.device, "--out", str(out)]
            t0 = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
                raise SystemExit(f"{args.model} {system} seed {seed} failed")
            res = json.loads(line[len("RESULT "):])
            res["process_seconds"] = round(time.time() - t0, 1)
            with open(out / "results.jsonl", "a") as fh:
                fh.write(json.dumps(res) + "\n")
            print(f"{args.model} {system} s{seed}: peak RSS {res['peak_rss_mb']:.0f} MiB (floor "
                  f"{res['floor_rss_mb']:.0f}), {res['median_step_s']:.3f} s/step, accuracy "
                  f"{res['accuracy_before']} -> {res['accuracy_after']}", flush=True)


if __name__ == "__main__":
    main()
