"""Seconds of one GRPO update (reference forward, policy forward and backward) on a fixed batch: for
comparing two versions of grpo-lab on the same tokens, each run a fresh process, the versions alternated
by the caller (``PYTHONPATH=<tree>/src`` picks the version).

    python benchmarks/llm/update_time.py --model runs/quick/final --batch /tmp/batch.pt --micro-batch 16

The first run samples the batch (``--prompts`` word problems x ``--group-size``, temperature 0.7,
``--max-new-tokens``, with the model given) and saves it to ``--batch``; later runs load it, so every
version updates on the same tokens. Prints one JSON line: the completion lengths and the seconds of
each of ``--repeats`` updates (the first one warms up). Freed memory is kept in the process as
``grpo llm train`` keeps it on CPU (``grpo.llm.infra.cpu_memory``); ``--system-malloc`` leaves glibc's as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="a model folder or name, as grpo llm train's --model (default: the tiny model)")
    ap.add_argument("--batch", required=True, help="the batch file: sampled and written when missing")
    ap.add_argument("--task", default="word-problems")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--micro-batch", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--system-malloc", action="store_true",
                    help="leave glibc's malloc as it is (default: keep freed memory, as grpo llm train does on CPU)")
    args = ap.parse_args()

    import torch

    from grpo.llm.algorithms.grpo import GRPOTrainer
    from grpo.llm.config import GRPOConfig
    from grpo.llm.data.rewards import RewardSet
    from grpo.llm.data.tasks import load_rows
    from grpo.llm.modeling.models import context_length, frozen_copy, load_model, load_tokenizer, prompt_texts
    from grpo.llm.modeling.pretrained import resolve_model
    from grpo.llm.rollout.generation import Rollout, encode_prompts, generate

    from grpo.llm.infra.cpu_memory import keep_freed_memory

    torch.set_num_threads(args.threads)
    kept = False if args.system_malloc else keep_freed_memory()
    path = resolve_model(args.model, log=None)
    policy, tok = load_model(path), load_tokenizer(path)
    rows = load_rows(args.task, "train")[:args.prompts]
    if not os.path.exists(args.batch):
        torch.manual_seed(args.seed)
        ids, mask = encode_prompts(tok, prompt_texts(tok, [r["prompt"] for r in rows]), "cpu",
                                   context_length(policy), args.max_new_tokens)
        roll = generate(policy, tok, ids, mask, args.group_size, args.max_new_tokens, 0.7)
        torch.save({k: getattr(roll, k) for k in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask",
                                                   "truncated")}, args.batch)
    saved = torch.load(args.batch, weights_only=True)
    roll = Rollout(**saved, completions=[""] * len(saved["truncated"]))
    N, C = roll.completion_ids.shape
    cfg = GRPOConfig(model=path, task=args.task, prompts_per_step=args.prompts, group_size=args.group_size,
                     max_new_tokens=args.max_new_tokens, micro_batch=args.micro_batch, temperature=0.7, beta=0.04,
                     lr=2e-5)
    trainer = GRPOTrainer(cfg, policy, tok, rows, RewardSet.from_specs(["numeric"]), ref=frozen_copy(policy))
    adv = torch.randn(N, 1, generator=torch.Generator().manual_seed(args.seed)).expand(N, C)  # [N, C]
    seconds = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        trainer.update(roll, adv, roll.completion_mask.float())
        seconds.append(round(time.perf_counter() - t0, 3))
    lengths = roll.lengths.tolist()
    print(json.dumps({"rows": N, "width": C, "mean_length": round(statistics.mean(lengths), 1),
                      "max_length": max(lengths), "micro_batch": args.micro_batch, "keep_freed_memory": kept,
                      "threads": torch.get_num_threads(),
                      "seconds": seconds, "median_after_first": statistics.median(seconds[1:] or seconds)}))


if __name__ == "__main__":
    main()
