"""One step's scored samples, the unit that flows from the rollout stage to an algorithm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from grpo.llm.data.rewards.base import ScoredBatch
from grpo.llm.config import GRPOConfig
from grpo.llm.data.tasks import Row
from grpo.llm.infra.distributed import Runtime
from grpo.llm.rollout.generation import Rollout


@dataclass
class Batch:
    """B prompts x G completions each, scored (N = B * G rows, prompt-major): token ids and masks
    (``rollout``), rewards per function, total, process steps and failures (``scored``)."""

    rows: list[Row]  # [B]
    texts: list[str]  # [B] prompts as text
    rollout: Rollout  # N sequences
    scored: ScoredBatch  # rewards of the N samples
    zero_std_frac: float  # share of groups (before dropping) whose rewards were all equal
    gen_seconds: float
    rounds: int = 1  # generation rounds that filled it (dynamic sampling: 1 + the extra rounds)
    # Dynamic sampling on several processes: this process kept no group and holds the first round's only
    # so that it joins the update's collectives; none of its samples is trained on, counted or logged.
    stand_in: bool = False

    def select(self, groups: Tensor, seq: Tensor) -> Batch:
        """Groups ``groups`` [b] and their sequences ``seq`` [b * G]."""
        s = self.scored
        return Batch(
            [self.rows[i] for i in groups.tolist()], [self.texts[i] for i in groups.tolist()], self.rollout.select(seq),
            ScoredBatch(s.per_fn[seq], s.total[seq], s.names, None if s.steps is None else [s.steps[i] for i in seq.tolist()],
               None if s.accuracy is None else s.accuracy[seq], s.step_weight,
               None if s.failed is None else s.failed[seq]),
            self.zero_std_frac, self.gen_seconds, self.rounds, self.stand_in)

    @staticmethod
    def cat(parts: list[Batch], pad_id: int, zero_std_frac: float, gen_seconds: float, rounds: int) -> Batch:
        """The samples of ``parts`` one after another; the step's own figures (all-equal share, generation
        seconds, rounds) are given, since they describe the step, not any one part."""
        sc = [p.scored for p in parts]
        steps = None if sc[0].steps is None else [s for p in sc for s in p.steps]
        acc = None if sc[0].accuracy is None else torch.cat([p.accuracy for p in sc])
        return Batch(
            [r for p in parts for r in p.rows], [t for p in parts for t in p.texts],
            Rollout.cat([p.rollout for p in parts], pad_id),
            ScoredBatch(torch.cat([p.per_fn for p in sc]), torch.cat([p.total for p in sc]), sc[0].names, steps, acc,
               sc[0].step_weight, None if sc[0].failed is None else torch.cat([p.failed for p in sc])),
            zero_std_frac, gen_seconds, rounds,
        )


def batch_metrics(g: Batch, step_s: float, rt: Runtime, cfg: GRPOConfig) -> dict[str, float]:
    """Metrics of the global batch: every process's samples are gathered (identities in one process)."""
    s, roll = g.scored, g.rollout
    n = 0 if g.stand_in else len(roll.completions)  # a stand-in's samples are not the step's
    per_fn, totals, lengths, truncated = rt.cat(s.per_fn[:n]), rt.cat(s.total[:n]), rt.cat(roll.lengths[:n]).float(), \
        rt.cat(roll.truncated[:n])
    accuracy = None if s.accuracy is None else rt.cat(s.accuracy[:n])
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
    if cfg.dynamic_sampling:  # the slowest process's rounds: what the step waited for
        out["sampling/rounds"] = float(rt.max(float(g.rounds)))
    if cfg.top_k or cfg.top_p < 1.0:  # 1: log-probs of the filtered distribution; 0: the full one
        out["sampling/filtered_logprobs"] = float(cfg.filtered_logprobs)
    tokens = float(lengths.sum())
    out.update({
        "completions/mean_length": float(lengths.mean()) if len(lengths) else 0.0,
        "completions/max_length": float(lengths.max()) if len(lengths) else 0.0,
        "completions/truncated_frac": float(truncated.float().mean()) if len(lengths) else 0.0,
        # every process samples the same number of first-round groups: the mean of the shares is the share
        "groups/zero_std_frac": float(rt.sum(g.zero_std_frac)) / rt.world_size,
        "groups/used": float(rt.sum(0 if g.stand_in else len(g.rows))),
        "time/step_s": step_s,
        "time/generation_frac": gen_s / step_s,
        "time/tokens_per_s": tokens / max(gen_s, 1e-9),
    })
    return out


def sample_records(g: Batch, step: int, limit: int) -> list[dict[str, Any]]:
    """A few completions of the first groups with their rewards, for samples.jsonl (none of a stand-in's)."""
    G = len(g.rollout.completions) // max(len(g.rows), 1)
    out = []
    for i in range(0 if g.stand_in else min(limit, len(g.rollout.completions))):
        rewards = {n: float(g.scored.per_fn[i, k]) for k, n in enumerate(g.scored.names)}
        out.append({"step": step, "prompt": g.texts[i // G], "completion": g.rollout.completions[i],
                    "rewards": rewards, "total": float(g.scored.total[i])})
    return out
