"""Memory per process: one process vs two FSDP2 processes (CPU, gloo), on the ~113M Llama.

Each run is ``grpo llm train`` in a fresh process (two processes: ``--num-processes 2
--accelerate-config examples/accelerate/fsdp.yaml``), 1 step of 4 prompts x G = 4, 8 new tokens,
float32, no reference model (beta 0: the reference copy is not sharded), no evaluation. Reported per
process, from the run's ``summary.json``: the MiB of parameters, gradients and AdamW state the (main)
process holds at the end (its shards under FSDP2: exact sizes, not timing-dependent), and the largest
peak RSS of the processes. Systems alternate within each repeat. Usage::

    python benchmarks/scaleout/fsdp_memory.py --out runs/bench-fsdp [--repeats 1]

The models are built by ``lora_memory.py --build-models`` in a child process (this launcher never
imports torch: a parent's peak RSS would be carried into its children's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FSDP_YAML = HERE.parents[1] / "examples" / "accelerate" / "fsdp.yaml"
SYSTEMS = {"1 process": [], "2 x FSDP2": ["--num-processes", "2", "--accelerate-config", str(FSDP_YAML)]}


def run_one(model: str, system: str, out: Path, threads: int) -> dict:
    run_dir = out / f"{Path(model).name}-{system.replace(' ', '')}"
    cmd = [sys.executable, "-m", "grpo", "llm", "train", "--model", model, "--out", str(run_dir), "--overwrite",
           "--steps", "1", "--prompts-per-step", "4", "--group-size", "4", "--max-new-tokens", "8", "--beta", "0",
           "--lr", "1e-5", "--eval-split", "none", "--progress", "false", "--tensorboard", "false",
           "--threads", str(threads), "--device", "cpu", "--mixed-precision", "no", *SYSTEMS[system]]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)},
                   capture_output=True)
    s = json.loads((run_dir / "summary.json").read_text())
    return {"model": Path(model).name, "system": s["distributed"], "processes": s["processes"],
            "parameters_per_process": s["parameters_per_process"], **s["state_mb_per_process"],
            "peak_rss_mb": s["peak_rss_mb"], "seconds_per_step": s["seconds_per_step"],
            "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench-fsdp")
    p.add_argument("--repeats", type=int, default=1, help="runs per system; medians are reported")
    p.add_argument("--threads", type=int, default=1, help="threads per process")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    built = subprocess.run([sys.executable, str(HERE / "lora_memory.py"), "--out", str(out), "--build-models"],
                           check=True, capture_output=True, text=True)
    model = json.loads(built.stdout.strip().splitlines()[-1])["llama-113m"]
    results = []
    for _ in range(args.repeats):
        for system in SYSTEMS:  # alternated, so machine load hits both alike
            r = run_one(model, system, out, args.threads)
            results.append(r)
            print(json.dumps(r), flush=True)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    print(table(results))


def table(results: list[dict]) -> str:
    from statistics import median

    rows = ["| system | parameters per process | params MiB | grads MiB | AdamW MiB | state vs 1 process "
            "| peak RSS MiB (max of processes, median) |", "|---|---|---|---|---|---|---|"]
    one = None
    for system in dict.fromkeys(r["system"] for r in results):
        rs = [r for r in results if r["system"] == system]
        state = rs[0]["parameters"] + rs[0]["gradients"] + rs[0]["optimizer"]
        one = one or state
        rows.append(f"| {system} x {rs[0]['processes']} | {rs[0]['parameters_per_process']:,} | {rs[0]['parameters']:.1f} | "
                    f"{rs[0]['gradients']:.1f} | {rs[0]['optimizer']:.1f} | {state / one:.2f}x | "
                    f"{median(r['peak_rss_mb'] for r in rs):.0f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
