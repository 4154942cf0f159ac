"""The least time a GRPO step can take on this machine: its matmul FLOPs at the measured GEMM rate.

For a decoder-only model with ``body`` non-embedding parameters and an LM head of ``vocab x hidden``,
a forward pass costs about ``2 * body`` FLOPs per token (plus ``2 * vocab * hidden`` where logits are
needed, i.e. on completion tokens only) and a backward pass twice that. A GRPO step with a reference
model then costs, for B prompts of P tokens and N = B * G completions of C tokens:

- generation: the prompts' prefill plus one decoding pass per completion token (body and head);
- update: the reference forward, the policy forward and its backward over the trained tokens.

Ours encodes each prompt once per group (its G completions attend to one copy: ``B * P + N * C``
tokens per pass); TRL's GRPOTrainer encodes every row whole (``N * (P + C)``). Attention scores are
left out (at ~100-token contexts they are ~2% of the total), so the floor is an underestimate.

    python benchmarks/llm/flop_floor.py --model smollm2-135m-instruct --task word-problems \\
        --prompts 8 --group-size 4 --completion-tokens 48 --completion-width 64 --trl-seconds 78

prints each system's FLOPs per step, the GEMM rate measured here (torch, float32, the model's
shapes) and the seconds that leaves at best; with ``--trl-seconds`` also the ratio that floor
implies against TRL's measured time.
"""

from __future__ import annotations

import argparse
import statistics
import time


def step_flops(body: float, head: float, B: int, G: int, P: float, C: float, W: float) -> dict[str, float]:
    """Matmul FLOPs of one GRPO step (generation, then reference forward + policy forward + backward):
    B prompts of P tokens, G completions each of C tokens on average, padded to W for the update."""
    N = B * G
    fwd = lambda tokens, logit_tokens: 2 * body * tokens + 2 * head * logit_tokens  # noqa: E731
    generation = fwd(B * P, 0) + fwd(N * C, N * C)  # prefill once per prompt, then one pass per sampled token
    ours_update = 4 * fwd(B * P + N * W, N * W)  # ref fwd + policy fwd + backward (2x fwd)
    trl_generation = fwd(N * P, 0) + fwd(N * C, N * C)  # generate() prefills every row
    trl_update = 4 * fwd(N * (P + W), N * W)
    return {"ours": generation + ours_update, "trl": trl_generation + trl_update,
            "ours_generation": generation, "ours_update": ours_update}


def gemm_gflops(hidden: int, intermediate: int, tokens: int, threads: int, repeats: int = 5) -> float:
    """Median float32 GEMM rate (GFLOP/s) for the model's MLP shape at ``tokens`` rows."""
    import torch

    torch.set_num_threads(threads)
    x, w = torch.randn(tokens, hidden), torch.randn(hidden, intermediate)
    for _ in range(3):
        x @ w
    rates = []
    for _ in range(repeats):
        t0, n = time.perf_counter(), 20
        for _ in range(n):
            x @ w
        rates.append(2 * tokens * hidden * intermediate * n / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a model folder or a name the CLI's --model accepts")
    p.add_argument("--task", default="word-problems", help="its prompts give the mean prompt length")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--completion-tokens", type=float, required=True, help="mean completion length measured")
    p.add_argument("--completion-width", type=float, help="the padded completion width the update runs over "
                   "(the longest completion of a batch; default: --completion-tokens)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--trl-seconds", type=float, help="TRL's measured seconds per step, for the implied ratio")
    args = p.parse_args()

    from transformers import AutoConfig

    from grpo.llm.data.tasks import load_rows
    from grpo.llm.modeling.models import encode_texts, load_tokenizer, prompt_texts
    from grpo.llm.modeling.pretrained import resolve_model

    path = resolve_model(args.model, log=None)
    cfg, tok = AutoConfig.from_pretrained(path), load_tokenizer(path)
    rows = load_rows(args.task)[:500]
    P = statistics.mean(map(len, encode_texts(tok, prompt_texts(tok, [r["prompt"] for r in rows]))))
    head = cfg.vocab_size * cfg.hidden_size
    params = sum(v for v in _param_counts(path))
    body = params - head * (1 if cfg.tie_word_embeddings else 2)
    W = args.completion_width or args.completion_tokens
    f = step_flops(body, head, args.prompts, args.group_size, P, args.completion_tokens, W)
    rate = gemm_gflops(cfg.hidden_size, cfg.intermediate_size, args.prompts * int(P), args.threads)
    print(f"model: {params / 1e6:.1f}M parameters ({body / 1e6:.1f}M outside the embedding/head), "
          f"mean prompt {P:.1f} tokens, completions {args.completion_tokens:.1f} tokens (padded to {W:.0f})")
    print(f"float32 GEMM rate here: {rate:.1f} GFLOP/s ({args.threads} threads)")
    for name in ("ours", "trl"):
        print(f"{name}: {f[name] / 1e12:.2f} TFLOP per step -> at least {f[name] / rate / 1e9:.1f} s")
    print(f"ours: generation {f['ours_generation'] / 1e12:.2f} TFLOP, update {f['ours_update'] / 1e12:.2f} TFLOP")
    if args.trl_seconds:
        floor = f["ours"] / rate / 1e9
        print(f"ours' floor / TRL's measured {args.trl_seconds:.1f} s = {floor / args.trl_seconds:.2f}x")


def _param_counts(path: str):
    """Parameter counts per tensor of the model's safetensors files (without loading the weights)."""
    from pathlib import Path

    from safetensors import safe_open

    for f in sorted(Path(path).glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            for k in st.keys():
                n = 1
                for d in st.get_slice(k).get_shape():
                    n *= d
                yield n


if __name__ == "__main__":
    main()
