"""A step's episodes as tensors for the update, plus their metrics and transcripts.

N = B * G episodes (group-major), P tokens of the first prompt (left-padded; the G episodes of a
group share it, so the log-prob pass encodes it once per group), C tokens after it (right-padded):
every assistant turn and every environment reply. ``completion_mask`` marks real tokens (attention);
``loss_mask`` only the sampled ones, so environment and tool tokens enter neither the loss nor the KL.
K is the most assistant turns of any episode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from grpo.core import ZERO_STD
from grpo.llm.rollout.episodes import Episode
from grpo.llm.rollout.generation import Rollout

TRUNCATED_POLICIES = ("keep", "penalize", "mask")


@dataclass
class EpisodeBatch:
    episodes: list[Episode]  # [N] group-major
    seeds: list[int]  # [B] reset seed of each group
    rollout: Rollout  # prompt/completion ids [N, P], [N, C]; completion_mask = real tokens
    loss_mask: Tensor  # [N, C] 1 on sampled (trained) tokens
    turn_index: Tensor  # [N, C] long: the assistant turn of each token (0 on padding)
    rewards: Tensor  # [N, K] per-turn rewards (the truncation penalty included), 0 past the end
    turn_mask: Tensor  # [N, K] true on turns that happened
    gen_seconds: float
    rounds: int = 1  # generation rounds that filled it (dynamic sampling: 1 + the extra rounds)
    zero_std_frac: float | None = None  # dynamic sampling: the first round's share of all-equal groups
    stand_in: bool = False  # dynamic sampling on several processes: kept nothing here, only joins the update

    @property
    def returns(self) -> Tensor:  # [N]
        return self.rewards.sum(-1)

    @property
    def rows(self) -> list[int]:  # one entry per group, as Batch.rows (run.py counts groups by it)
        return self.seeds


def episode_batch(episodes: list[Episode], seeds: list[int], tokenizer: Any, truncated: str, penalty: float,
                  gen_seconds: float) -> EpisodeBatch:
    """Tensors of ``episodes``; ``truncated``: episodes the rollout cut (:attr:`Episode.cut`) keep their
    return, are penalized (``-penalty`` on the last turn's reward) or masked (no loss). An episode the
    environment truncated itself keeps the return the environment gave it under every policy."""
    if truncated not in TRUNCATED_POLICIES:
        raise ValueError(f"truncated={truncated!r}; choose one of {TRUNCATED_POLICIES}")
    N, pad = len(episodes), tokenizer.pad_token_id
    P = max(e.prompt_len for e in episodes)
    C = max(max(len(e.ids) - e.prompt_len for e in episodes), 1)
    K = max(max(e.turns for e in episodes), 1)
    prompt_ids, prompt_mask = torch.full((N, P), pad, dtype=torch.long), torch.zeros((N, P), dtype=torch.long)
    comp_ids, comp_mask = torch.full((N, C), pad, dtype=torch.long), torch.zeros((N, C), dtype=torch.long)
    loss_mask, turn_index = torch.zeros((N, C)), torch.zeros((N, C), dtype=torch.long)
    rewards, turn_mask = torch.zeros((N, K)), torch.zeros((N, K), dtype=torch.bool)
    for i, e in enumerate(episodes):
        p, rest = e.ids[:e.prompt_len], e.ids[e.prompt_len:]
        prompt_ids[i, P - len(p):], prompt_mask[i, P - len(p):] = torch.tensor(p), 1
        if rest:
            comp_ids[i, :len(rest)], comp_mask[i, :len(rest)] = torch.tensor(rest), 1
            loss_mask[i, :len(rest)] = torch.tensor(e.trained[e.prompt_len:], dtype=torch.float)
            turn_index[i, :len(rest)] = torch.tensor(e.turn_of[e.prompt_len:]).clamp(min=0)
        if e.turns:
            rewards[i, :e.turns], turn_mask[i, :e.turns] = torch.tensor(e.rewards), True
            if e.cut and truncated == "penalize":
                rewards[i, e.turns - 1] -= penalty
        if e.cut and truncated == "mask":
            loss_mask[i] = 0
    trunc = torch.tensor([e.truncated for e in episodes])
    texts = [tokenizer.decode(e.ids[e.prompt_len:], skip_special_tokens=False) for e in episodes]
    roll = Rollout(prompt_ids, prompt_mask, comp_ids, comp_mask, trunc, texts)
    return EpisodeBatch(episodes, seeds, roll, loss_mask, turn_index, rewards, turn_mask, gen_seconds)


def dropped_groups(b: EpisodeBatch, G: int) -> Tensor:
    """[N] true for episodes whose group holds an episode that failed (env_failure = drop)."""
    failed = torch.tensor([e.failed is not None for e in b.episodes])
    return failed.view(-1, G).any(1, keepdim=True).expand(-1, G).reshape(-1)


def episode_stats(b: EpisodeBatch) -> dict[str, list]:
    """Each episode's figures as plain lists (picklable: gathered over processes), group-major; none for
    a stand-in batch (its episodes are not the step's)."""
    eps = [] if b.stand_in else b.episodes
    sampled = b.loss_mask.sum(1).tolist()[:len(eps)]  # [N]
    return {"return": b.returns.tolist()[:len(eps)], "turns": [e.turns for e in eps], "tokens": [len(e.ids) for e in eps],
            "sampled_tokens": sampled, "truncated": [e.truncated for e in eps],
            "terminated": [e.terminated for e in eps], "failed": [e.failed is not None for e in eps],
            "tool_calls": [e.tool_calls for e in eps], "tool_errors": [e.tool_errors for e in eps],
            "info": [{k: float(v) for k, v in e.info.items()
                      if isinstance(v, (bool, int, float)) and math.isfinite(float(v))} for e in eps]}


def episode_metrics(b: EpisodeBatch, G: int, rt: Any = None) -> dict[str, float]:
    """Per-step metrics of the episodes: returns, turns, tool use, truncation, env failures, and the mean
    of every number the environments put in their last ``info`` (``env/NAME``). With a runtime ``rt``,
    over every process's episodes (a collective: every process calls it); without, over ``b`` alone."""
    parts = [episode_stats(b)] if rt is None else rt.gather_objects(episode_stats(b))
    st = {k: [x for p in parts for x in p[k]] for k in parts[0]}
    ret = torch.tensor(st["return"], dtype=torch.float32)  # [N_global]
    n = max(len(ret), 1)
    mean = lambda k: sum(st[k]) / n  # noqa: E731
    out = {
        "reward/total/mean": float(ret.mean()),  # the progress bar's figure: the mean episode return
        "episode/return_mean": float(ret.mean()),
        "episode/return_std": float(ret.std()) if len(ret) > 1 else 0.0,
        "episode/turns_mean": mean("turns"),
        "episode/tokens_mean": mean("tokens"),
        "episode/sampled_tokens_mean": mean("sampled_tokens"),
        "episode/truncated_frac": mean("truncated"),
        "episode/terminated_frac": mean("terminated"),
        "episode/failed_frac": mean("failed"),
        "tools/calls_per_episode": mean("tool_calls"),
        "tools/errors_per_episode": mean("tool_errors"),
        "groups/zero_std_frac": float((ret.view(-1, G).std(1) < ZERO_STD).float().mean()) if G > 1 else 0.0,
        "groups/used": float(len(ret) // G),
    }
    values: dict[str, list[float]] = {}
    for info in st["info"]:
        for k, v in info.items():
            values.setdefault(k, []).append(v)
    out.update({f"env/{k}": sum(v) / len(v) for k, v in values.items()})
    return out


def marked(tokenizer: Any, e: Episode) -> list[list]:
    """The trajectory as [trained, text] spans: what the loss saw (true) and what it did not."""
    spans: list[list] = []
    for tok_id, trained in zip(e.ids, e.trained):
        if spans and spans[-1][0] == trained:
            spans[-1][1].append(tok_id)
        else:
            spans.append([trained, [tok_id]])
    return [[t, tokenizer.decode(ids, skip_special_tokens=False)] for t, ids in spans]


def episode_records(b: EpisodeBatch, tokenizer: Any, step: int, limit: int) -> list[dict[str, Any]]:
    """Whole transcripts of the first ``limit`` episodes for samples.jsonl: messages, per-turn rewards,
    and ``tokens`` as [trained, text] spans (trained = sampled by the model, in the loss)."""
    out = []
    G = len(b.episodes) // max(len(b.seeds), 1)
    for i, e in enumerate(b.episodes[:limit]):
        out.append({"step": step, "seed": e.seed, "group": i // G, "episode": i % G, "return": float(b.returns[i]),
                    "turn_rewards": e.rewards, "turns": e.turns, "stop": e.stop, "failed": e.failed,
                    "tool_calls": e.tool_calls, "tool_errors": e.tool_errors, "messages": e.messages,
                    "tokens": marked(tokenizer, e)})
    return out
