"""The rollout stage: a step's prompts -> G completions each (the run's engine, keyed per prompt)
-> rewards -> one :class:`~grpo.llm.rollout.batch.Batch`; with dynamic sampling (DAPO), groups whose
rewards are all equal are dropped and more prompts sampled. Every algorithm samples through this."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from grpo.core import ZERO_STD
from grpo.llm.config import GRPOConfig
from grpo.llm.data.rewards import RewardSet
from grpo.llm.data.rewards.base import ScoredBatch, StepRewards
from grpo.llm.data.tasks import Row, batch_indices, columns_of
from grpo.llm.infra.distributed import Runtime
from grpo.llm.modeling.models import context_length, prompt_texts
from grpo.llm.rollout.batch import Batch
from grpo.llm.rollout.engines import GENERATOR_BUILDERS
from grpo.llm.rollout.generation import encode_prompts
from grpo.llm.rollout.seeding import prompt_keys


def varied_groups(scored: ScoredBatch, G: int) -> Tensor:
    """[B] true for groups whose advantages are not all zero: outcome totals that differ, or (a
    process reward of non-zero weight) step rewards that differ across the group's steps, which
    :func:`grpo.core.process_advantages` normalises together. Totals leave process rewards out."""
    varied = scored.total.view(-1, G).std(1) >= ZERO_STD  # [B]
    if scored.steps is not None and scored.step_weight != 0:
        for b in range(len(varied)):
            r = [x for s in scored.steps[b * G:(b + 1) * G] if s for x in s.rewards]
            varied[b] |= len(r) > 1 and float(torch.tensor(r, dtype=torch.float64).std()) >= ZERO_STD
    return varied


def score_truncated(scored: ScoredBatch, truncated: Tensor, value: float | None) -> ScoredBatch:
    """``scored`` with the completions cut at max_new_tokens (``truncated`` [N]) scored ``value``: their
    total, each function's reward and each step of a process reward (accuracy is left as checked);
    ``value`` None: unchanged.

    >>> s = ScoredBatch(torch.tensor([[1.0], [1.0]]), torch.tensor([1.0, 1.0]), ["numeric"])
    >>> score_truncated(s, torch.tensor([False, True]), 0.0).total
    tensor([1., 0.])
    """
    if value is None or not bool(truncated.any()):
        return scored
    cut = truncated.to(scored.total.device)
    steps = scored.steps if scored.steps is None else [
        StepRewards([value] * len(s.rewards), s.ends) if s is not None and bool(c) else s
        for s, c in zip(scored.steps, cut.tolist())]
    return replace(scored, total=scored.total.masked_fill(cut, value),
                   per_fn=scored.per_fn.masked_fill(cut[:, None], value), steps=steps)


class Sampler:
    """Samples and scores a step's batch from ``policy`` (the prepared one under accelerate); this
    process handles its share of each step's prompts."""

    def __init__(self, cfg: GRPOConfig, policy: Any, tokenizer: Any, rows: list[Row], rewards: RewardSet,
                 runtime: Runtime):
        self.cfg, self.policy, self.tok, self.rows, self.rewards, self.rt = cfg, policy, tokenizer, rows, rewards, runtime
        self.device = next(policy.parameters()).device
        self.generate_fn = GENERATOR_BUILDERS.get(cfg.generation)(cfg, runtime.unwrap(policy), tokenizer, runtime)
        rewards.check_columns([k for k in rows[0] if k != "prompt"])

    def sample(self, rows: list[Row], keys: Tensor | None = None) -> Batch:
        """G completions for each row, scored. ``keys`` [B]: sampling keys of the prompts
        (:mod:`grpo.llm.rollout.seeding`), so that a prompt's samples do not depend on its batch-mates."""
        cfg, G = self.cfg, self.cfg.group_size
        texts = prompt_texts(self.tok, [r["prompt"] for r in rows])
        with self.rt.generation(self.policy) as model:
            ids, mask = encode_prompts(self.tok, texts, self.device, context_length(model), cfg.max_new_tokens)
            t0 = time.perf_counter()
            roll = self.generate_fn(model, self.tok, ids, mask, G, cfg.max_new_tokens, cfg.temperature, cfg.top_p,
                                    cfg.top_k, False, keys)
            gen_seconds = time.perf_counter() - t0
        scored = self.rewards([t for t in texts for _ in range(G)], roll.completions,
                              completion_lengths=roll.lengths.tolist(), max_new_tokens=cfg.max_new_tokens,
                              **columns_of(rows, G))
        scored = score_truncated(scored, roll.truncated, cfg.truncated_reward)
        zero = float((~varied_groups(scored, G)).float().mean())
        return Batch(rows, texts, roll, scored, zero, gen_seconds)

    def greedy_rewards(self, rows: list[Row]) -> Tensor:
        """[B] total reward of one greedy completion per row: ReMax's baseline (arXiv 2310.10505)."""
        cfg = self.cfg
        texts = prompt_texts(self.tok, [r["prompt"] for r in rows])
        with self.rt.generation(self.policy) as model:
            ids, mask = encode_prompts(self.tok, texts, self.device, context_length(model), cfg.max_new_tokens)
            roll = self.generate_fn(model, self.tok, ids, mask, 1, cfg.max_new_tokens, cfg.temperature, cfg.top_p,
                                    cfg.top_k, True, None)
        scored = self.rewards(texts, roll.completions, completion_lengths=roll.lengths.tolist(),
                              max_new_tokens=cfg.max_new_tokens, **columns_of(rows, 1))
        return score_truncated(scored, roll.truncated, cfg.truncated_reward).total.float()  # [B]

    def collect(self, step: int) -> Batch:
        """Prompts of this step and their groups; with dynamic sampling, all-equal groups are
        dropped and more prompts sampled (at most ``max_resample`` extra rounds).

        On several processes the rounds are the step's: every process samples its share of each round's
        prompts, and the groups kept are the first B with spread in (round, global place) order, the
        groups one process keeps. A process that keeps none returns the first round's groups as a
        stand-in (``stand_in``), so that it joins the update's collectives with nothing to train."""
        cfg, G, rt = self.cfg, self.cfg.group_size, self.rt
        share = rt.shard(cfg.prompts_per_step)  # this process's prompts of the step, whole groups
        order = batch_indices(len(self.rows), step, cfg.prompts_per_step, cfg.seed)[share]
        # Sampling keyed by each prompt's place in the step's global batch: same samples on any rank.
        first = self.sample([self.rows[i] for i in order],
                            prompt_keys(cfg.seed, step, 0, list(range(share.start, share.stop))))
        if not cfg.dynamic_sampling:
            return first
        B = cfg.prompts_per_step
        kept, groups, gen_seconds, found = [], first, 0.0, 0  # found: groups with spread so far, every process's
        rng = random.Random(cfg.seed * 7919 + step)  # the same pools on every process
        for round_ in range(cfg.max_resample + 1):
            lo = share.start
            if round_:
                pool = rng.sample(self.rows, min(B, len(self.rows)))  # the round's prompts, global order
                lo, hi = rt.rank * len(pool) // rt.world_size, (rt.rank + 1) * len(pool) // rt.world_size
                groups = self.sample(pool[lo:hi], prompt_keys(cfg.seed, step, round_, list(range(lo, hi)))) \
                    if hi > lo else None
                if groups is None and rt.collective_forward:  # nothing to sample here, but the passes are collective
                    self.sample(pool[:1], prompt_keys(cfg.seed, step, round_, [0]))
            gen_seconds += groups.gen_seconds if groups is not None else 0.0
            varied = varied_groups(groups.scored, G) if groups is not None else torch.zeros(0, dtype=torch.bool)
            flags = rt.cat(varied.float())  # [b_global] every process's, in global order
            place = found + flags.cumsum(0).long() - 1  # each flagged group's place among the step's kept
            mine = [g for g in varied.nonzero().flatten().tolist() if place[lo + g] < B]
            if mine:
                idx = torch.tensor(mine)
                kept.append(groups.select(idx, (idx[:, None] * G + torch.arange(G)).flatten()))
            found += int(flags.sum())
            if found >= B:
                break
        figures = {"zero_std_frac": first.zero_std_frac, "gen_seconds": gen_seconds, "rounds": round_ + 1}
        if kept:
            return Batch.cat(kept, self.tok.pad_token_id, **figures)
        if found:  # other processes kept groups: stand in with the first round's, none of them trained on
            return replace(first, stand_in=True, **figures)
        return replace(first, **figures).select(torch.arange(0), torch.arange(0))  # no spread anywhere: no update

    def after_update(self) -> None:
        """Called after each policy update: engines that keep their own copy of the weights (vLLM) get them."""
        push = getattr(self.generate_fn, "push_weights", None)
        if push is not None:
            push(self.rt.unwrap(self.policy))
