"""GRPO for causal LMs (DeepSeekMath, arXiv 2402.03300, Algorithm 1), one loop that reads top to bottom:

    for each step:  prompts -> G completions each (KV-cached sampling) -> rewards
                    -> group advantages (outcome; plus process advantages if a reward gives steps)
                    -> mu policy updates of the clipped surrogate + beta * KL(pi || pi_ref)
                    -> metrics, samples, checkpoints

All the math (advantages, ratio, clip, KL, aggregation) is :mod:`grpo.core`; this file only
feeds it tensors. Where this departs from the paper, and why:

- The policy samples in ``eval`` mode and is updated in ``eval`` mode (dropout off), so that with
  mu = 1 the ratio is exactly 1 at the first update, as the paper's on-policy algorithm assumes.
- Log-probs are those of the sampling distribution (logits / temperature), for the old, new and
  reference policies alike (as TRL does); with temperature 1 this is the paper's pi. With top-k or
  top-p on, each model's distribution is filtered and renormalised as the sampler's was
  (``filtered_logprobs``; TRL and verl use the unfiltered one), and ``sampling/filtered_logprobs``
  says which in the metrics.
- With mu = 1 the "old" log-probs are the current ones detached (no extra forward pass): the
  same numbers the generating policy gives, since it has not changed yet.
- The reward model is not retrained when the reference is reset (iterative GRPO, 4.2): rewards
  here are rule-based or a fixed classifier.
- k3 is biased once pi_theta != pi_old (mu > 1); we keep the paper's estimator (core/kl.py).
- Options beyond the paper, all off by default: clip-higher (DAPO), dynamic sampling (DAPO),
  overlong masking (DAPO), token-mean or constant aggregation (DAPO, Dr. GRPO), sequence-level
  ratio (GSPO), batch-std or no reward scaling (Dr. GRPO), entropy bonus.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from grpo.core import MICRO_BATCH_SHARES, ZERO_STD, aggregate, group_advantages, grpo_loss, masked_mean, process_advantages
from grpo.llm.config import GRPOConfig
from grpo.llm.data.tasks import Row, batch_indices, columns_of
from grpo.llm.infra.distributed import Runtime
from grpo.llm.rollout.engines import GENERATOR_BUILDERS
from grpo.llm.rollout.generation import Rollout, encode_prompts
from grpo.llm.modeling.logprobs import completion_logprobs
from grpo.llm.modeling.models import context_length, prompt_texts
from grpo.llm.data.rewards import RewardSet
from grpo.llm.data.rewards.base import ScoredBatch, StepRewards
from grpo.llm.rollout.seeding import prompt_keys
from grpo.utils.optim import GuardedStep

def logprob_filter(cfg: GRPOConfig) -> dict[str, Any]:
    """The top-k/top-p filter the log-probs apply: the sampler's, or none (``filtered_logprobs``)."""
    return {"top_k": cfg.top_k, "top_p": cfg.top_p} if cfg.filtered_logprobs else {}


@dataclass
class Groups:
    """One step's samples: B prompts x G completions, scored (N = B * G rows, prompt-major)."""

    rows: list[Row]  # [B]
    texts: list[str]  # [B] prompts as text
    rollout: Rollout  # N sequences
    scored: ScoredBatch  # rewards of the N samples
    zero_std_frac: float  # share of groups (before dropping) whose rewards were all equal
    gen_seconds: float


def _cat_groups(parts: list[Groups], pad_id: int) -> Groups:
    sc = [p.scored for p in parts]
    steps = None if sc[0].steps is None else [s for p in sc for s in p.steps]
    acc = None if sc[0].accuracy is None else torch.cat([p.accuracy for p in sc])
    return Groups(
        [r for p in parts for r in p.rows], [t for p in parts for t in p.texts],
        Rollout.cat([p.rollout for p in parts], pad_id),
        ScoredBatch(torch.cat([p.per_fn for p in sc]), torch.cat([p.total for p in sc]), sc[0].names, steps, acc,
           sc[0].step_weight, None if sc[0].failed is None else torch.cat([p.failed for p in sc])),
        parts[0].zero_std_frac, sum(p.gen_seconds for p in parts),
    )


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


def step_token_ends(tokenizer: Any, completion_ids: Tensor, steps: list[StepRewards | None],
                    G: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-step rewards, token ends and mask [B, G, S] from character offsets of the steps.

    A step ending at character e ends at the first token whose decoded prefix reaches e.
    """
    S = max(1, max((len(s.rewards) for s in steps if s), default=1))
    N, C = completion_ids.shape
    rewards, ends, mask = torch.zeros(N, S), torch.zeros(N, S, dtype=torch.long), torch.zeros(N, S, dtype=torch.bool)
    for i, s in enumerate(steps):
        if not s or not s.rewards:
            continue
        ids = completion_ids[i].tolist()
        prefix = [len(tokenizer.decode(ids[:k + 1], skip_special_tokens=True)) for k in range(C)]
        for j, (r, e) in enumerate(zip(s.rewards, s.ends)):
            k = next((k for k, n in enumerate(prefix) if n >= e), C - 1)
            rewards[i, j], ends[i, j], mask[i, j] = r, k, True
    return rewards.view(-1, G, S), ends.view(-1, G, S), mask.view(-1, G, S)


class GRPOTrainer:
    """Owns the policy, the frozen reference (None when beta = 0) and the optimizer.

    ``runtime`` says where the run executes (:mod:`grpo.llm.infra.distributed`): one process by default;
    under accelerate, ``policy`` and ``optimizer`` are the prepared (wrapped) ones and this process
    handles its share of each step's prompts.
    """

    def __init__(self, cfg: GRPOConfig, policy: Any, tokenizer: Any, rows: list[Row], rewards: RewardSet,
                 ref: Any | None = None, optimizer: torch.optim.Optimizer | None = None,
                 runtime: Runtime | None = None):
        self.cfg, self.policy, self.tok, self.rows, self.rewards, self.ref = cfg, policy, tokenizer, rows, rewards, ref
        self.device = next(policy.parameters()).device
        self.rt = runtime or Runtime(self.device)
        self.generate_fn = GENERATOR_BUILDERS.get(cfg.generation)(cfg, self.rt.unwrap(policy), tokenizer, self.rt)
        self.policy.eval()  # dropout off: see the module docstring
        self.opt = optimizer or torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        # Non-finite losses or gradients skip the step; nonfinite_limit in a row stop the run.
        self.guard = GuardedStep(self.opt, cfg.max_grad_norm or float("inf"), cfg.nonfinite_limit)
        self.share = MICRO_BATCH_SHARES.get(cfg.aggregation)
        rewards.check_columns([k for k in rows[0] if k != "prompt"])

    def checkpoint_modules(self) -> dict[str, Any]:
        """Modules saved in checkpoints beside the policy: none for GRPO (PPO: its value model)."""
        return {}

    # ------------------------------------------------------------------ 1. generate and score
    def sample_groups(self, rows: list[Row], keys: Tensor | None = None) -> Groups:
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
        zero = float((~varied_groups(scored, G)).float().mean())
        return Groups(rows, texts, roll, scored, zero, gen_seconds)

    def collect(self, step: int) -> Groups:
        """Prompts of this step and their groups; with dynamic sampling, all-equal groups are
        dropped and more prompts sampled (at most ``max_resample`` extra rounds)."""
        cfg, G = self.cfg, self.cfg.group_size
        share = self.rt.shard(cfg.prompts_per_step)  # this process's prompts of the step, whole groups
        order = batch_indices(len(self.rows), step, cfg.prompts_per_step, cfg.seed)[share]
        # Sampling keyed by each prompt's place in the step's global batch: same samples on any rank.
        first = self.sample_groups([self.rows[i] for i in order],
                                   prompt_keys(cfg.seed, step, 0, list(range(share.start, share.stop))))
        if not cfg.dynamic_sampling:
            return first
        kept, groups, gen_seconds = [], first, 0.0
        rng = random.Random(cfg.seed * 7919 + step)
        for round_ in range(cfg.max_resample + 1):
            if round_:
                pool = rng.sample(self.rows, min(cfg.prompts_per_step, len(self.rows)))
                groups = self.sample_groups(pool, prompt_keys(cfg.seed, step, round_, list(range(len(pool)))))
            gen_seconds += groups.gen_seconds
            varied = varied_groups(groups.scored, G).nonzero().flatten()  # [b]
            if len(varied):
                kept.append(self._select(groups, varied, (varied[:, None] * G + torch.arange(G)).flatten()))
            if sum(len(k.rows) for k in kept) >= cfg.prompts_per_step:
                break
        out = _cat_groups(kept, self.tok.pad_token_id) if kept else first
        n = min(len(out.rows), cfg.prompts_per_step) if kept else 0
        out = self._select(out, torch.arange(n), torch.arange(n * G))
        out.zero_std_frac, out.gen_seconds = first.zero_std_frac, gen_seconds
        return out

    @staticmethod
    def _select(g: Groups, groups: Tensor, seq: Tensor) -> Groups:
        """Groups ``groups`` [b] and their sequences ``seq`` [b * G] of ``g``."""
        s = g.scored
        return Groups(
            [g.rows[i] for i in groups.tolist()], [g.texts[i] for i in groups.tolist()], g.rollout.select(seq),
            ScoredBatch(s.per_fn[seq], s.total[seq], s.names, None if s.steps is None else [s.steps[i] for i in seq.tolist()],
               None if s.accuracy is None else s.accuracy[seq], s.step_weight,
               None if s.failed is None else s.failed[seq]),
            g.zero_std_frac, g.gen_seconds)

    # ------------------------------------------------------------------ 2. advantages
    def advantages(self, g: Groups) -> Tensor:
        """[N, C]: outcome advantages on every token, plus process advantages if any."""
        G, roll = self.cfg.group_size, g.rollout
        N, C = roll.completion_ids.shape
        B = len(g.rows)
        # Over the global batch (batch std needs every process's rewards); this process's groups kept.
        scores = self.rt.cat(g.scored.total.view(-1, G))  # [B_global, G]
        adv = group_advantages(scores, self.cfg.reward_scale)[self.rt.rank * B:(self.rt.rank + 1) * B]  # [B, G]
        adv = adv.reshape(N, 1).expand(N, C).to(self.device)  # [N, C]
        if g.scored.steps is not None:
            r, ends, mask = step_token_ends(self.tok, roll.completion_ids.cpu(), g.scored.steps, G)  # [B, G, S]
            proc = process_advantages(r, ends, mask, C)  # [B, G, C]
            adv = adv + g.scored.step_weight * proc.reshape(N, C).to(self.device)
        return adv

    # ------------------------------------------------------------------ 3. policy updates
    def _logprobs(self, model: Any, roll: Rollout, rows: slice, **kw: Any) -> tuple[Tensor, Tensor | None]:
        # Rows in whole groups share their prompt's encoding (checked inside; else a plain forward).
        return completion_logprobs(model, roll.prompt_ids[rows], roll.prompt_mask[rows], roll.completion_ids[rows],
                                   roll.completion_mask[rows], self.cfg.temperature, group_size=self.cfg.group_size,
                                   **logprob_filter(self.cfg), **kw)

    def _no_grad_logprobs(self, model: Any, roll: Rollout) -> Tensor:
        with torch.no_grad():
            return torch.cat([self._logprobs(model, roll, mb)[0] for mb in self._micro_batches(len(roll.completions))])

    def _micro_batches(self, n: int) -> list[slice]:
        size = self.cfg.micro_batch or n
        return [slice(i, min(i + size, n)) for i in range(0, n, size)]

    def update(self, roll: Rollout, adv: Tensor, loss_mask: Tensor) -> dict[str, float]:
        """mu optimizer steps on one generation batch; returns the metrics of the last one."""
        cfg, rt = self.cfg, self.rt
        old_logp = self._no_grad_logprobs(self.policy, roll) if cfg.mu > 1 else None  # [N, C]
        ref_logp = self._no_grad_logprobs(self.ref, roll) if self.ref is not None else None  # [N, C]
        # The global batch's normaliser. DDP/FSDP/DeepSpeed average gradients over processes, so each
        # process's loss is scaled by the world size: the sum is exactly the full batch's gradient.
        total = float(rt.sum(self.share(loss_mask)))
        constant = cfg.loss_constant or float(cfg.max_new_tokens)  # Dr. GRPO's normaliser per sequence
        metrics: dict[str, float] = {}
        mbs = self._micro_batches(len(roll.completions))
        for it in range(cfg.mu):
            self.opt.zero_grad(set_to_none=True)
            sums: dict[str, float] = {}
            bad = False
            for i, mb in enumerate(mbs):
                last = i == len(mbs) - 1
                with rt.accumulating(self.policy, last):  # gradients are all-reduced on the last only
                    mask = loss_mask[mb]
                    w = self.share(mask) / max(total, 1.0)
                    logp, ent = self._logprobs(self.policy, roll, mb, with_entropy=True,
                                               entropy_grad=cfg.entropy_coef > 0)
                    old = old_logp[mb] if old_logp is not None else logp.detach()
                    loss, m = grpo_loss(logp, old, adv[mb], mask, None if ref_logp is None else ref_logp[mb], cfg.beta,
                                        cfg.eps_low, cfg.eps_high, cfg.ratio_level, cfg.aggregation, cfg.kl_estimator,
                                        constant)
                    m["policy/entropy"] = masked_mean(ent.detach(), mask)
                    if cfg.entropy_coef > 0:
                        loss = loss - cfg.entropy_coef * aggregate(ent, mask, cfg.aggregation, constant)
                    finite = bool(torch.isfinite(loss))
                    bad = bad or not finite
                    # Every process joins the all-reduce of its last micro-batch, even with nothing to add.
                    if (w > 0 and finite) or (last and rt.world_size > 1):
                        rt.backward(loss * (w * rt.world_size))
                for k, v in m.items():
                    sums[k] = sums.get(k, 0.0) + w * float(v)
            bad = bool(rt.max(float(bad)))  # one process's non-finite loss makes every process skip
            rt.unscale(self.opt)
            norm = self.guard.finish(bad)
            rt.after_step(stepped=self.guard.skipped_in_a_row == 0)
            metrics = {**sums, "policy/grad_norm": float(norm), "train/skipped_updates": float(self.guard.skipped_total)}
        names = sorted(sums)  # per-process shares of the global weighted means: their sum is the mean
        metrics.update(zip(names, rt.sum(torch.tensor([sums[n] for n in names], dtype=torch.float64)).tolist()))
        push = getattr(self.generate_fn, "push_weights", None)  # e.g. vLLM's copy of the policy
        if push is not None:
            push(rt.unwrap(self.policy))
        return metrics

    # ------------------------------------------------------------------ one step
    def step(self, step: int) -> tuple[dict[str, float], Groups]:
        cfg, t0 = self.cfg, time.perf_counter()
        g = self.collect(step)
        roll = g.rollout
        metrics: dict[str, float] = {}
        if len(g.rows):
            adv = self.advantages(g)  # [N, C]
            loss_mask = roll.completion_mask.to(adv.dtype)  # [N, C]
            if cfg.mask_truncated:
                loss_mask = loss_mask * (~roll.truncated).to(adv.dtype)[:, None]
            if g.scored.failed is not None:  # reward failure policy "drop": the whole group leaves the update
                G = cfg.group_size
                keep = ~g.scored.failed.view(-1, G).any(1, keepdim=True).expand(-1, G).reshape(-1)  # [N]
                loss_mask = loss_mask * keep.to(loss_mask)[:, None]
            metrics = self.update(roll, adv, loss_mask)
        if cfg.ref_reset_every and self.ref is not None and (step + 1) % cfg.ref_reset_every == 0:
            self.ref.load_state_dict(self.rt.unwrap(self.policy).state_dict())
        step_s = time.perf_counter() - t0
        metrics.update(self.batch_metrics(g, step_s))
        return metrics, g

    def batch_metrics(self, g: Groups, step_s: float) -> dict[str, float]:
        """Metrics of the global batch: every process's samples are gathered (identities in one process)."""
        s, roll, rt = g.scored, g.rollout, self.rt
        per_fn, totals, lengths, truncated = rt.cat(s.per_fn), rt.cat(s.total), rt.cat(roll.lengths).float(), \
            rt.cat(roll.truncated)
        accuracy = None if s.accuracy is None else rt.cat(s.accuracy)
        gen_s, step_s = float(rt.max(g.gen_seconds)), float(rt.max(step_s))  # wall time: the slowest process
        out: dict[str, float] = {}
        for k, name in enumerate(s.names):
            col = per_fn[:, k]
            col = col[~torch.isnan(col)]
            out[f"reward/{name}/mean"] = float(col.mean()) if len(col) else float("nan")
            out[f"reward/{name}/std"] = float(col.std()) if len(col) > 1 else 0.0
        out["reward/total/mean"] = float(totals.mean()) if len(totals) else float("nan")
        if accuracy is not None and len(accuracy):
            out["train/accuracy"] = float(accuracy.mean())
        if self.cfg.top_k or self.cfg.top_p < 1.0:  # 1: log-probs of the filtered distribution; 0: the full one
            out["sampling/filtered_logprobs"] = float(self.cfg.filtered_logprobs)
        tokens = float(lengths.sum())
        out.update({
            "completions/mean_length": float(lengths.mean()) if len(lengths) else 0.0,
            "completions/max_length": float(lengths.max()) if len(lengths) else 0.0,
            "completions/truncated_frac": float(truncated.float().mean()) if len(lengths) else 0.0,
            # every process samples the same number of first-round groups: the mean of the shares is the share
            "groups/zero_std_frac": float(rt.sum(g.zero_std_frac)) / rt.world_size,
            "groups/used": float(rt.sum(len(g.rows))),
            "time/step_s": step_s,
            "time/generation_frac": gen_s / step_s,
            "time/tokens_per_s": tokens / max(gen_s, 1e-9),
        })
        return out


def sample_records(g: Groups, step: int, limit: int) -> list[dict[str, Any]]:
    """A few completions of the first groups with their rewards, for samples.jsonl."""
    G = len(g.rollout.completions) // max(len(g.rows), 1)
    out = []
    for i in range(min(limit, len(g.rollout.completions))):
        rewards = {n: float(g.scored.per_fn[i, k]) for k, n in enumerate(g.scored.names)}
        out.append({"step": step, "prompt": g.texts[i // G], "completion": g.rollout.completions[i],
                    "rewards": rewards, "total": float(g.scored.total[i])})
    return out

