"""PPO for causal LMs, the RLHF recipe (Ziegler et al. 2019, arXiv 1909.08593; InstructGPT,
arXiv 2203.02155), in the same framework as GRPO. One loop that reads top to bottom:

    for each step:  prompts -> completions (the rollout stage's Sampler, as GRPO uses it)
                    -> old log-probs, reference log-probs, old values (no gradient)
                    -> per-token rewards: -beta * KL_t on every token, + the score at the last one
                    -> GAE over the completion tokens (grpo.core.gae); the episode ends at the last
                       real token (EOS, or the last token of a truncated completion)
                    -> epochs x minibatches of the clipped surrogate + vf_coef * clipped value loss
                    -> metrics

The math (GAE, ratio, clip, KL, value loss, aggregation, whitening) is :mod:`grpo.core`; this file
feeds it tensors. Where this departs from InstructGPT/TRL PPO, and why:

- The value model starts from the policy's backbone with a zero head (V = 0), not from a reward
  model: our rewards are rule-based. ``value_model=shared`` puts the head on the policy's backbone.
- The KL penalty uses ``kl_estimator`` (default k3, >= 0 and unbiased per token because the tokens
  are sampled from the policy that gave ``old_logp``); InstructGPT uses k1 (the log-ratio).
  ``kl_penalty=loss`` moves beta * KL into the loss instead, exactly as GRPO does.
- The batch is prompts x G samples like GRPO's (same generation code); PPO ignores the groups for
  its baseline (the critic is the baseline). Minibatches hold whole groups so that each prompt is
  still encoded once per group.
- One optimizer and one gradient-norm clip over policy and value model together (as TRL's PPO);
  ``vf_coef`` keeps the value gradient from dominating the norm. Both norms are logged.
- Dropout is off, as in GRPO: the first minibatch's ratio is exactly 1.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from grpo.core import aggregate, explained_variance, gae, grpo_loss, kl_estimate, masked_mean
from grpo.core import MICRO_BATCH_SHARES, masked_whiten, parse_loss_args, value_loss
from grpo.llm.data.tasks import Row
from grpo.llm.rollout.batch import Batch, batch_metrics
from grpo.llm.rollout.generation import Rollout
from grpo.llm.rollout.sampler import Sampler
from grpo.llm.modeling.hidden import auto_micro_batch
from grpo.llm.modeling.logprobs import completion_logprobs, head_logprobs, logprob_filter
from grpo.llm.ppo_config import PPOConfig
from grpo.llm.data.rewards import RewardSet
from grpo.llm.infra.distributed import Runtime
from grpo.llm.algorithms.value import ValueModel, build_value_model
from grpo.utils.optim import GuardedStep, make_optimizer

# Where beta * KL goes: (weight in the per-token reward, weight in the loss).
KL_PLACEMENT = {"reward": (1.0, 0.0), "loss": (0.0, 1.0)}


def last_token(mask: Tensor) -> Tensor:
    """True at each row's last real token. [N, C] (right-padded, 1 = real) -> [N, C] bool.

    >>> last_token(torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]])).int().tolist()
    [[0, 1, 0], [0, 0, 1], [0, 0, 0]]
    """
    m = mask.bool()
    return m & ~F.pad(m[:, 1:], (0, 1), value=False)


def token_rewards(scores: Tensor, mask: Tensor, kl: Tensor | None = None, beta: float = 0.0) -> Tensor:
    """Per-token rewards [N, C]: ``-beta * kl`` on every real token, plus ``scores`` [N] at the last.

    >>> token_rewards(torch.tensor([1.0, 2.0]), torch.tensor([[1, 1, 0], [1, 1, 1]])).tolist()
    [[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]
    """
    maskf = mask.float()
    r = -beta * kl.float() * maskf if kl is not None and beta else torch.zeros_like(maskf)  # [N, C]
    return r + scores.float().to(r.device)[:, None] * last_token(mask).float()


def token_gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """GAE over completion tokens: (advantages, returns), both [N, C] and 0 on padding.

    ``values`` [N, C] is V(s_t); the next state's value is V(s_{t+1}), and the episode terminates at
    the last real token (no bootstrap past it; a completion cut at max_new_tokens is scored there
    too, so it is terminal as well). Padding has reward 0 and value 0, so it adds nothing.
    """
    m = mask.bool()
    zero = torch.zeros((), device=values.device)
    values = torch.where(m, values.float(), zero)  # [N, C]
    next_values = F.pad(values[:, 1:], (0, 1))  # [N, C]: V(s_{t+1}), 0 past the end
    end = last_token(m) | ~m  # [N, C]
    adv, returns = gae(torch.where(m, rewards.float(), zero), values, next_values, end, end, gamma, lam)
    return torch.where(m, adv, zero), torch.where(m, returns, zero)


class PPOTrainer:
    """Owns the policy, the value model, the frozen reference (None when beta = 0) and one optimizer
    with two parameter groups (policy at ``lr``, value model at ``critic_lr``)."""

    def __init__(self, cfg: PPOConfig, policy: Any, tokenizer: Any, rows: list[Row], rewards: RewardSet,
                 ref: Any | None = None, value: ValueModel | None = None):
        self.cfg, self.policy, self.ref = cfg, policy, ref
        policy.eval()  # dropout off (module docstring)
        self.value = (value or build_value_model(cfg.value_model, policy)).eval()
        self.value_params = self.value.own_parameters()
        self.opt = make_optimizer(cfg.optimizer, [{"params": list(policy.parameters()), "lr": cfg.lr},
                                                  {"params": self.value_params, "lr": cfg.critic_lr or cfg.lr}],
                                  cfg.lr, cfg.weight_decay)
        # Sampling and rewards are the rollout stage's, as for GRPO; PPO runs in one process (run.check_scale_out).
        self.sampler = Sampler(cfg, policy, tokenizer, rows, rewards, Runtime(next(policy.parameters()).device))
        # Non-finite losses or gradients skip the step; nonfinite_limit in a row stop the run (as GRPO).
        self.guard = GuardedStep(self.opt, cfg.max_grad_norm or float("inf"), cfg.nonfinite_limit)
        self.share = MICRO_BATCH_SHARES.get(cfg.aggregation)
        self.beta_reward, self.beta_loss = (cfg.beta * w for w in KL_PLACEMENT[cfg.kl_penalty])

    def checkpoint_modules(self) -> dict[str, Any]:
        """Saved in each checkpoint beside the policy, restored on resume (see algorithms.registry.build_trainer)."""
        return {"value_model": self.value}

    # ------------------------------------------------------------------ forward passes
    def forward(self, roll: Rollout, with_entropy: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        """Log-probs [n, C], values [n, C] and (optionally) entropy [n, C] of ``roll``'s completions."""
        cfg = self.cfg
        if not self.value.shared:
            logp, ent, _ = completion_logprobs(self.policy, roll.prompt_ids, roll.prompt_mask, roll.completion_ids,
                                               roll.completion_mask, cfg.temperature, with_entropy,
                                               entropy_grad=cfg.entropy_coef > 0, group_size=cfg.group_size,
                                               **logprob_filter(cfg))
            values = self.value.completion_values(roll.prompt_ids, roll.prompt_mask, roll.completion_ids,
                                                  roll.completion_mask, cfg.group_size)
            return logp, values, ent
        # Shared backbone: one pass gives the hidden states that both heads read.
        h = self.value.completion_hidden(roll.prompt_ids, roll.prompt_mask, roll.completion_ids, roll.completion_mask,
                                         cfg.group_size)  # [n, C, H]
        logp, ent, _ = head_logprobs(self.policy.get_output_embeddings(), h, roll.completion_ids, cfg.temperature,
                                     with_entropy, cfg.entropy_coef > 0, **logprob_filter(cfg))
        return logp, self.value.values_of(h), ent

    def _rows_per_pass(self, roll: Rollout) -> int:
        """``micro_batch``, or when unset whole groups sized to the model (:func:`auto_micro_batch`)."""
        return self.cfg.micro_batch or auto_micro_batch(self.policy, len(roll.completions), roll.prompt_ids.shape[1]
                                                        + roll.completion_ids.shape[1], self.cfg.group_size)

    def _chunks(self, roll: Rollout) -> list[Rollout]:
        n, size = len(roll.completions), self._rows_per_pass(roll)
        return [roll.select(torch.arange(i, min(i + size, n))) for i in range(0, n, size)]

    @torch.no_grad()
    def _old(self, roll: Rollout) -> tuple[Tensor, Tensor, Tensor | None]:
        """Old log-probs, old values and reference log-probs [N, C], without gradients."""
        parts = [self.forward(c)[:2] for c in self._chunks(roll)]
        old_logp, old_values = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        ref_logp = None
        if self.ref is not None:
            ref_logp = torch.cat([completion_logprobs(self.ref, c.prompt_ids, c.prompt_mask, c.completion_ids,
                                                      c.completion_mask, self.cfg.temperature,
                                                      group_size=self.cfg.group_size, **logprob_filter(self.cfg))[0]
                                  for c in self._chunks(roll)])
        return old_logp, old_values, ref_logp

    # ------------------------------------------------------------------ advantages
    def advantages(self, g: Batch, old_logp: Tensor, old_values: Tensor, ref_logp: Tensor | None,
                   loss_mask: Tensor) -> tuple[Tensor, Tensor, dict[str, float]]:
        """(advantages, returns) [N, C] from the scores, the per-token KL penalty and the old values."""
        cfg, mask = self.cfg, g.rollout.completion_mask.to(old_values.device)
        kl = kl_estimate(old_logp, ref_logp, cfg.kl_estimator) if ref_logp is not None else None  # [N, C]
        rewards = token_rewards(g.scored.total.to(old_values.device), mask, kl, self.beta_reward)  # [N, C]
        adv, returns = token_gae(rewards, old_values, mask, cfg.gamma, cfg.gae_lambda)
        metrics = {"value/explained_variance": float(explained_variance(old_values, returns, mask.bool())),
                   "value/mean": float(masked_mean(old_values, mask)), "returns/mean": float(masked_mean(returns, mask)),
                   "advantages/std": float(masked_mean((adv - masked_mean(adv, mask)) ** 2, mask).sqrt())}
        if kl is not None:  # on the sampled tokens, under the sampling policy (kl_penalty=loss logs its own)
            metrics["kl/ref"] = float(masked_mean(kl, mask))
        if kl is not None and self.beta_reward:
            metrics["reward/kl_penalty"] = float((-self.beta_reward * kl * mask).sum(-1).mean())  # per sequence
        if cfg.whiten_advantages:
            adv = masked_whiten(adv, loss_mask)
        return adv, returns, metrics

    # ------------------------------------------------------------------ updates
    def _minibatches(self, B: int) -> list[Tensor]:
        """Row indices of each minibatch: whole groups, shuffled. [b * G] each."""
        G = self.cfg.group_size
        return [(grp[:, None] * G + torch.arange(G)).flatten().sort().values
                for grp in torch.randperm(B).tensor_split(self.cfg.minibatches)]

    def update(self, g: Batch) -> dict[str, float]:
        cfg, roll = self.cfg, g.rollout
        mask = roll.completion_mask.float()  # [N, C]
        loss_mask = mask * (~roll.truncated).float()[:, None] if cfg.mask_truncated else mask
        old_logp, old_values, ref_logp = self._old(roll)
        adv, returns, metrics = self.advantages(g, old_logp, old_values, ref_logp, loss_mask)
        sums: dict[str, float] = {}
        for epoch in range(cfg.epochs):
            last = epoch == cfg.epochs - 1  # metrics cost time: the last epoch's only
            for idx in self._minibatches(len(g.rows)):
                self.opt.zero_grad(set_to_none=True)
                total, bad = max(self.share(loss_mask[idx]), 1.0), False
                for part in idx.split(self._rows_per_pass(roll)):
                    m, finite = self._loss_backward(roll.select(part), part, old_logp, old_values, ref_logp, adv,
                                                    returns, loss_mask, self.share(loss_mask[part]) / total, last)
                    bad = bad or not finite
                    for k, v in m.items():
                        sums[k] = sums.get(k, 0.0) + v / cfg.minibatches
                if last:  # each model's gradient norm, before the joint clip
                    for k, ps in (("policy/grad_norm", self.policy.parameters()), ("value/grad_norm", self.value_params)):
                        sq = sum(float(p.grad.float().pow(2).sum()) for p in ps if p.grad is not None)
                        sums[k] = sums.get(k, 0.0) + sq ** 0.5 / cfg.minibatches
                self.guard.finish(bad)  # joint clip to max_grad_norm and step; skipped if not finite
        return {**metrics, **sums, "train/skipped_updates": float(self.guard.skipped_total)}

    def _loss_backward(self, sub: Rollout, rows: Tensor, old_logp: Tensor, old_values: Tensor,
                       ref_logp: Tensor | None, adv: Tensor, returns: Tensor, loss_mask: Tensor, weight: float,
                       with_metrics: bool) -> tuple[dict[str, float], bool]:
        """Backward of ``weight`` x (policy loss + vf_coef * value loss) on rows ``rows`` unless it is not
        finite; returns (their metrics x weight, finite)."""
        cfg, lm = self.cfg, loss_mask[rows]
        constant = cfg.loss_constant or float(cfg.max_new_tokens)  # Dr. GRPO's normaliser per sequence
        logp, values, ent = self.forward(sub, with_entropy=with_metrics or cfg.entropy_coef > 0)
        ref = ref_logp[rows] if ref_logp is not None and self.beta_loss else None  # KL in the loss only
        pg, m = grpo_loss(logp, old_logp[rows], adv[rows], lm, ref, self.beta_loss, cfg.eps_low, cfg.eps_high,
                          cfg.ratio_level, cfg.aggregation, cfg.kl_estimator, constant, with_metrics,
                          policy_loss=cfg.policy_loss, loss_params=parse_loss_args(cfg.policy_loss_args))
        v_tok, vm = value_loss(values, old_values[rows], returns[rows], lm, cfg.value_clip)  # [n, C]
        v = aggregate(v_tok, lm, cfg.aggregation, constant)
        loss = pg + cfg.vf_coef * v
        if cfg.entropy_coef > 0:
            loss = loss - cfg.entropy_coef * aggregate(ent, lm, cfg.aggregation, constant)
        finite = bool(torch.isfinite(loss))
        if weight > 0 and finite:
            (loss * weight).backward()
        if not with_metrics:
            return {}, finite
        m.update(vm)
        m.update({"loss/value": v.detach(), "loss/total": loss.detach(), "policy/entropy": masked_mean(ent.detach(), lm)})
        return {k: weight * float(x) for k, x in m.items()}, finite

    # ------------------------------------------------------------------ one step
    def step(self, step: int) -> tuple[dict[str, float], Batch]:
        t0 = time.perf_counter()
        g = self.sampler.collect(step)
        metrics = self.update(g) if len(g.rows) else {}
        self.sampler.after_update()
        metrics.update(batch_metrics(g, time.perf_counter() - t0, self.sampler.rt, self.cfg))
        return metrics, g
