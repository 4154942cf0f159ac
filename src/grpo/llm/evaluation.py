"""Greedy accuracy and pass@k (the unbiased estimator of Chen et al. 2021, arXiv 2107.03374)."""

from __future__ import annotations

from math import comb
from typing import Any, Callable

import torch

from grpo.llm.data.tasks import Row, columns_of
from grpo.llm.rollout.generation import encode_prompts, generate
from grpo.llm.modeling.models import context_length, prompt_texts
from grpo.llm.data.rewards.answer import exact_answer


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them right) is right.

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4), pass_at_k(4, 0, 2)
    (0.25, 1.0, 0.0)
    """
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


@torch.no_grad()
def correct_counts(model: Any, tokenizer: Any, rows: list[Row], samples: int, max_new_tokens: int,
                   check: Callable = exact_answer, greedy: bool = False, temperature: float = 1.0,
                   top_p: float = 1.0, top_k: int = 0, batch_size: int = 256, engine: str = "cached") -> list[int]:
    """For each row, how many of ``samples`` completions ``check`` scores >= 1."""
    device = next(model.parameters()).device
    counts: list[int] = []
    per_batch = max(1, batch_size // samples)
    for i in range(0, len(rows), per_batch):
        chunk = rows[i:i + per_batch]
        texts = prompt_texts(tokenizer, [r["prompt"] for r in chunk])
        ids, mask = encode_prompts(tokenizer, texts, device, context_length(model), max_new_tokens)
        roll = generate(model, tokenizer, ids, mask, samples, max_new_tokens, temperature, top_p, top_k, greedy, engine)
        cols = columns_of(chunk, samples)
        scores = check([t for t in texts for _ in range(samples)], roll.completions,
                       completion_lengths=roll.lengths.tolist(), max_new_tokens=max_new_tokens, **cols)
        right = torch.tensor([float(s or 0.0) >= 1.0 for s in scores]).view(len(chunk), samples)
        counts.extend(right.sum(1).long().tolist())
    return counts


def greedy_accuracy(model: Any, tokenizer: Any, rows: list[Row], max_new_tokens: int,
                    check: Callable = exact_answer, batch_size: int = 256) -> float:
    """Share of rows whose greedy completion ``check`` scores >= 1."""
    counts = correct_counts(model, tokenizer, rows, 1, max_new_tokens, check, greedy=True, batch_size=batch_size)
    return sum(counts) / len(counts)
