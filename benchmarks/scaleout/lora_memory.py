"""Peak memory of full fine-tuning vs LoRA (reference = the base with adapters off), per process.

Each run is ``grpo llm train`` in a fresh process (its peak RSS is its own), a few steps, on:

- ``tiny``: the built-in tiny model (2-layer Llama, character tokenizer);
- ``llama-113m``: a Llama of GPT-2-small size (hidden 768, 12 layers, 12 heads, MLP 3072, ~113M
  parameters), random init, built here from the standard LlamaConfig with the character tokenizer
  (no download).

Variants: ``full`` (all weights trained, frozen reference copy, beta 0.04), ``full-beta0`` (no
reference at all: what the reference copy costs), ``lora`` (r 16 on every linear layer, beta 0.04,
reference = adapters off). Usage::

    python benchmarks/scaleout/lora_memory.py --out runs/bench-lora [--steps 3] [--repeats 1]

This launcher never imports torch: Linux carries a parent's peak RSS into the ``ru_maxrss`` of the
children it forks, so a heavy launcher would inflate every child's figure. The models are built
in a child process too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "full": [],
    "full-beta0": ["--beta", "0"],
    "lora": ["--adapter", "lora", "--lora-r", "16"],
}


def build_llama_113m(folder: Path) -> Path:
    """A ~113M-parameter Llama with the character tokenizer, random init, saved as a model folder."""
    if (folder / "config.json").exists():
        return folder
    from grpo.llm.modeling.tiny import TinySpec, char_tokenizer, new_model

    tok = char_tokenizer()
    model = new_model(TinySpec(hidden=768, layers=12, heads=12, intermediate=3072, context=64, seed=0), tok)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def run_one(model: str, variant: str, steps: int, out: Path, threads: int) -> dict:
    run_dir = out / f"{Path(model).name}-{variant}"
    cmd = [sys.executable, "-m", "grpo", "llm", "train", "--model", model, "--out", str(run_dir), "--overwrite",
           "--steps", str(steps), "--prompts-per-step", "4", "--group-size", "4", "--max-new-tokens", "8",
           "--lr", "1e-5", "--eval-split", "none", "--progress", "false", "--tensorboard", "false",
           "--threads", str(threads), "--device", "cpu", *VARIANTS[variant]]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"model": Path(model).name, "variant": variant, "steps": steps, "peak_rss_mb": summary["peak_rss_mb"],
            "seconds_per_step": summary["seconds_per_step"], "trainable_parameters": summary["trainable_parameters"],
            "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench-lora")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=1, help="runs per (model, variant); the median is reported")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--build-models", action="store_true", help=argparse.SUPPRESS)  # the child that builds them
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.build_models:
        from grpo.llm.modeling.tiny import tiny_model_path

        print(json.dumps({"tiny": str(tiny_model_path(log=None)),
                          "llama-113m": str(build_llama_113m(out / "llama-113m"))}))
        return
    built = subprocess.run([sys.executable, __file__, "--out", str(out), "--build-models"], check=True,
                           capture_output=True, text=True)
    models = json.loads(built.stdout.strip().splitlines()[-1])
    results = []
    for name, model in models.items():
        for _ in range(args.repeats):
            for variant in VARIANTS:  # variants interleaved, so machine load hits them alike
                r = run_one(model, variant, args.steps, out, args.threads)
                r["model"] = name
                results.append(r)
                print(json.dumps(r), flush=True)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    print(table(results))


def table(results: list[dict]) -> str:
    from statistics import median

    rows = ["| model | variant | trainable params | peak RSS MiB (median) | vs full | s/step |", "|---|---|---|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in results):
        full = median(r["peak_rss_mb"] for r in results if r["model"] == model and r["variant"] == "full")
        for variant in VARIANTS:
            rs = [r for r in results if r["model"] == model and r["variant"] == variant]
            rss = median(r["peak_rss_mb"] for r in rs)
            rows.append(f"| {model} | {variant} | {rs[0]['trainable_parameters']:,} | {rss:.0f} | "
                        f"{rss / full:.2f}x | {median(r['seconds_per_step'] for r in rs):.2f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
