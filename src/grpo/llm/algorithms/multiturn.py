"""GRPO on multi-turn episodes (issue 14): a group is G episodes of a text environment reset with the
same seed, exactly as a classic-control group is G episodes from one reset seed.

    for each step:  B reset seeds (distinct, from the run seed) -> G episodes each, played in lockstep
                    (rollout.episodes) -> per-turn rewards, returns
                    -> advantages: outcome (episode return normalised in its group) or turn (return-to-go
                       of turn k compared across the group's episodes still alive at turn k: the
                       classic-control side's timestep mode, grpo.core.timestep_group_advantages)
                    -> the GRPO update of GRPOTrainer over the sampled tokens only
    --dynamic-sampling: groups without any nonzero advantage are replaced by groups of the step's next
    reset seeds (at most max_resample extra rounds); a step left with none takes no update.

Where this departs from single-turn GRPO, and why:

- The loss and KL mask is the sampled tokens: environment and tool tokens are context, never targets.
  Sequence-mean aggregation averages over an episode's sampled tokens (all its turns together).
- An episode's tokens are the sampled ids, not a re-encoding of its text (rollout.chat_tokens).
- The old and reference log-probs are recomputed over the whole trajectory in one pass, not taken from
  the sampler (as for single-turn), so the ratio is exactly 1 at the first update with mu = 1.
- Each turn re-encodes the episode so far (no KV cache kept across turns): simple, and correct for any
  engine; the cost grows with turns x length.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable

import torch
from torch import Tensor

from grpo.core import ZERO_STD, discounted_returns, group_advantages, timestep_group_advantages
from grpo.llm.algorithms.grpo import GRPOTrainer
from grpo.llm.config import GRPOConfig
from grpo.llm.envs.base import env_factory
from grpo.llm.infra.distributed import Runtime
from grpo.llm.modeling.models import context_length
from grpo.llm.rollout.engines import GENERATOR_BUILDERS
from grpo.llm.rollout.episode_batch import (EpisodeBatch, dropped_groups, episode_batch, episode_metrics,
                                            episode_records)
from grpo.llm.rollout.episodes import EpisodeRunner, Limits
from grpo.llm.rollout.seeding import group_seeds

EVAL_SEED_BASE = 10_000  # evaluation episodes use reset seeds 10000, 10001, ... (the classic-control protocol's)
GREEDY = "greedy/"  # the prefix of the evaluation metrics of greedy play (env_eval_greedy)
DEFAULT_EPISODE_TOKENS = 4096  # when the model states no context length


def episode_limits(cfg: GRPOConfig, model: Any, greedy: bool = False) -> Limits:
    ctx = context_length(model) or DEFAULT_EPISODE_TOKENS
    return Limits(cfg.max_turns, cfg.max_episode_tokens or ctx, cfg.max_new_tokens, cfg.temperature, cfg.top_p,
                  cfg.top_k, greedy, cfg.env_failure, cfg.tool_timeout_s,
                  cfg.env_feedback == "hide")


class MultiTurnTrainer(GRPOTrainer):
    """GRPOTrainer whose batch is a step's episodes of ``cfg.env``; ``make_env`` overrides the factory
    (tests). Exposes ``opt``, ``step(step) -> (metrics, batch)``, ``checkpoint_modules()``, as every trainer."""

    def __init__(self, cfg: GRPOConfig, policy: Any, tokenizer: Any, ref: Any | None = None,
                 optimizer: torch.optim.Optimizer | None = None, runtime: Runtime | None = None,
                 make_env: Callable[[], Any] | None = None, generate: Callable | None = None):
        self._setup(cfg, policy, tokenizer, ref, optimizer, runtime)
        name, factory = (str(cfg.env), make_env) if make_env is not None else env_factory(str(cfg.env))
        gen = generate or GENERATOR_BUILDERS.get(cfg.generation)(cfg, self.rt.unwrap(policy), tokenizer, self.rt)
        self.runner = EpisodeRunner(name, factory, tokenizer, episode_limits(cfg, self.rt.unwrap(policy)), gen,
                                    cfg.seed)
        self.greedy_runner = EpisodeRunner(name, factory, tokenizer, episode_limits(cfg, self.rt.unwrap(policy), True),
                                           gen, cfg.seed) if cfg.env_eval_greedy else None
        self.sampler = self  # GRPOTrainer.update calls sampler.after_update()

    def after_update(self) -> None: ...

    # ------------------------------------------------------------------ 0. episodes
    def collect(self, step: int) -> EpisodeBatch:
        """The step's B groups of G episodes. With dynamic sampling (DAPO), groups in which no sampled token
        has an advantage are dropped and groups of the next reset seeds played to refill the batch (at most
        ``max_resample`` extra rounds); a step that finds none gets no trained token, so it takes no update.
        On several processes the rounds are the step's, not each process's: every process plays its share of
        each round, and the groups kept are the first B with a signal in (round, global place) order."""
        cfg, rt, B, G = self.cfg, self.rt, self.cfg.prompts_per_step, self.cfg.group_size
        share = rt.shard(B)  # this process's groups of each round
        rounds = 1 + cfg.max_resample if cfg.dynamic_sampling else 1
        all_seeds = group_seeds(cfg.seed, step, B * rounds)  # round r resets with seeds [r B, (r + 1) B)
        kept: list = []  # this process's episodes of the groups kept, group-major
        kept_seeds: list[int] = []
        first, gen_s, found = None, 0.0, 0  # found: groups with a signal so far, over every process
        for round_ in range(rounds):
            seeds = all_seeds[round_ * B:(round_ + 1) * B][share]  # [B_local] one reset seed per group
            t0 = time.perf_counter()
            with rt.generation(self.policy) as model:
                # Sampling keyed by each episode's place in the step's global batch (round r after the first
                # r rounds' episodes): the same episodes on any process.
                eps = self.runner.run(model, seeds, G, step, first=(round_ * B + share.start) * G)
            gen_s += time.perf_counter() - t0
            b = episode_batch(eps, seeds, self.tok, cfg.truncated, cfg.truncated_penalty, gen_s)
            if not cfg.dynamic_sampling:
                return b
            first = b if first is None else first
            signal = self.groups_with_signal(b)  # [B_local]
            flags = rt.cat(signal.float())  # [B] every process's, in global order
            place = found + flags.cumsum(0).long() - 1  # [B] each flagged group's place among the step's kept
            for g in signal.nonzero().flatten().tolist():
                if place[share.start + g] < B:
                    kept += eps[g * G:(g + 1) * G]
                    kept_seeds.append(seeds[g])
            found += int(flags.sum())
            if found >= B:
                break
        assert first is not None
        if kept_seeds:
            out = episode_batch(kept, kept_seeds, self.tok, cfg.truncated, cfg.truncated_penalty, gen_s)
        else:  # nothing to learn from here: the first round's episodes, none of them trained on; when other
            # processes kept groups, they stand in only so that this process joins the update's collectives
            out = replace(first, loss_mask=torch.zeros_like(first.loss_mask), gen_seconds=gen_s, stand_in=found > 0)
        all_equal = rt.cat((first.returns.view(-1, G).std(1) < ZERO_STD).float())  # [B] the first round's
        return replace(out, rounds=round_ + 1, zero_std_frac=float(all_equal.mean()))

    def groups_with_signal(self, b: EpisodeBatch) -> Tensor:
        """[B] bool: groups in which some sampled token has a nonzero advantage (and, under
        ``env_failure="drop"``, no episode failed)."""
        G = self.cfg.group_size
        signal = (self.advantages(b).cpu().abs() * b.loss_mask).sum(1)  # [N]
        keep = signal.view(-1, G).sum(1) > 0  # [B]
        if self.cfg.env_failure == "drop":
            keep &= ~dropped_groups(b, G).view(-1, G)[:, 0]
        return keep

    # ------------------------------------------------------------------ 1. advantages
    def advantages(self, b: EpisodeBatch) -> Tensor:
        """[N, C]: each token's advantage, from its episode's return (outcome) or its turn's return-to-go (turn)."""
        G = self.cfg.group_size
        N, C = b.rollout.completion_ids.shape
        if self.cfg.env_advantage == "outcome":
            adv = group_advantages(b.returns.view(-1, G), self.cfg.reward_scale)  # [B, G]
            return adv.reshape(N, 1).expand(N, C).to(self.device)
        K = b.rewards.shape[1]
        mask = b.turn_mask.view(-1, G, K)  # [B, G, K]
        to_go = discounted_returns(b.rewards.view(-1, G, K), mask, self.cfg.env_gamma)  # [B, G, K]
        per_turn = timestep_group_advantages(to_go, mask, self.cfg.reward_scale).reshape(N, K)  # [N, K]
        return per_turn.gather(1, b.turn_index).to(self.device)  # [N, C]

    # ------------------------------------------------------------------ one step
    def step(self, step: int) -> tuple[dict[str, float], EpisodeBatch]:
        cfg, t0 = self.cfg, time.perf_counter()
        b = self.collect(step)
        adv = self.advantages(b)  # [N, C]
        loss_mask = b.loss_mask.to(adv)  # [N, C] sampled tokens only
        if cfg.env_failure == "drop":
            loss_mask = loss_mask * (~dropped_groups(b, cfg.group_size)).to(adv)[:, None]
        roll = b.rollout
        roll = type(roll)(roll.prompt_ids.to(self.device), roll.prompt_mask.to(self.device),
                          roll.completion_ids.to(self.device), roll.completion_mask.to(self.device), roll.truncated,
                          roll.completions)
        # Every process takes the update (its collectives) or none does.
        metrics = self.update(roll, adv, loss_mask) if float(self.rt.sum(loss_mask.sum())) > 0 else {}
        if cfg.ref_reset_every and self.ref is not None and (step + 1) % cfg.ref_reset_every == 0:
            self.ref.load_state_dict(self.rt.unwrap(self.policy).state_dict())
        step_s = time.perf_counter() - t0
        metrics.update(episode_metrics(b, cfg.group_size, self.rt))  # over every process's episodes
        if cfg.dynamic_sampling:  # the first round's all-equal share (the trained batch's is 0 by construction)
            trained = len(b.seeds) if float(b.loss_mask.sum()) > 0 else 0
            metrics.update({"groups/zero_std_frac": b.zero_std_frac, "sampling/rounds": float(b.rounds),
                            "groups/used": float(self.rt.sum(float(trained)))})
        step_s, gen_s = float(self.rt.max(step_s)), float(self.rt.max(b.gen_seconds))  # the slowest process
        metrics.update({"time/step_s": step_s, "time/generation_frac": gen_s / max(step_s, 1e-9)})
        return metrics, b

    def sample_records(self, b: EpisodeBatch, step: int, limit: int) -> list[dict[str, Any]]:
        return [] if b.stand_in else episode_records(b, self.tok, step, limit)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, episodes: int) -> dict[str, float]:
        """Mean return, turns, truncation and env info over ``episodes`` episodes of the fixed seeds
        10000, 10001, ... (one episode each, sampled as in training, keyed by the run seed); the return
        counts the truncation penalty as training does. With ``env_eval_greedy`` the same seeds are played
        greedily too, under keys ``greedy/...``."""
        seeds = list(range(EVAL_SEED_BASE, EVAL_SEED_BASE + episodes))
        out: dict[str, float] = {}
        for prefix, runner in (("", self.runner), (GREEDY, self.greedy_runner)):
            if runner is None:
                continue
            with torch.no_grad(), self.rt.generation(self.policy) as model:
                eps = runner.run(model, seeds, 1, -1)
            b = episode_batch(eps, seeds, self.tok, self.cfg.truncated, self.cfg.truncated_penalty, 0.0)
            m = episode_metrics(b, 1)
            out.update({prefix + k: v for k, v in m.items() if k.startswith(("episode/", "tools/", "env/"))})
        return out
