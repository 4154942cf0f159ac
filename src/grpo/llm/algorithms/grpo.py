"""GRPO for causal LMs (DeepSeekMath, arXiv 2402.03300, Algorithm 1), one loop that reads top to bottom:

    for each step:  prompts -> G completions each (KV-cached sampling) -> rewards
                    -> group advantages (outcome; plus process advantages if a reward gives steps)
                    -> mu policy updates of the clipped surrogate + beta * KL(pi || pi_ref)
                    -> metrics, samples, checkpoints

Sampling and scoring are the rollout stage (:class:`grpo.llm.rollout.sampler.Sampler` -> a
:class:`~grpo.llm.rollout.batch.Batch`); all the math (advantages, ratio, clip, KL, aggregation) is
:mod:`grpo.core`; this file only feeds it tensors. Where this departs from the paper, and why:

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
- k3 is biased once pi_theta != pi_old (mu > 1); we keep the paper's estimator (core/kl.py). ``kl_estimator
  full`` takes the exact KL of the whole next-token distributions instead (the reference's forward then
  runs in every update pass, beside the policy's).
- Options beyond the paper, all off by default: clip-higher (DAPO), dynamic sampling (DAPO),
  overlong masking (DAPO), token-mean or constant aggregation (DAPO, Dr. GRPO), sequence-level
  ratio (GSPO), batch-std or no reward scaling (Dr. GRPO), entropy bonus, and the algorithm menu
  (docs/algorithms.md): advantage estimators, policy losses, top-entropy tokens and the rollout
  importance-sampling correction, each picked by name from grpo.core's registries.
- remax generates one greedy completion per prompt each step (its baseline); its time is in the
  step's time and in ``time/baseline_s``. gdpo normalises every reward column, a process reward's
  logged step mean included.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from grpo.core import (EXACT_KL, MICRO_BATCH_SHARES, OUTCOME_ESTIMATORS, TOKEN_SELECTIONS, AdvantageInputs, aggregate,
                       grpo_loss, masked_mean, needs_baseline, needs_entropy, off_policy_sequence_mask,
                       outcome_advantages, parse_loss_args, process_advantages, rollout_weights)
from grpo.llm.config import GRPOConfig
from grpo.llm.data.rewards import RewardSet
from grpo.llm.data.tasks import Row
from grpo.llm.infra.distributed import Runtime
from grpo.llm.modeling.hidden import auto_micro_batch, length_order, row_widths
from grpo.llm.modeling.logprobs import TokenStats, completion_logprobs, logprob_filter
from grpo.llm.rollout.batch import Batch, batch_metrics
from grpo.llm.rollout.generation import Rollout
from grpo.llm.rollout.process_steps import step_token_ends
from grpo.llm.rollout.sampler import Sampler
from grpo.utils.optim import GuardedStep, make_optimizer


class GRPOTrainer:
    """Owns the policy, the frozen reference (None when beta = 0) and the optimizer.

    ``runtime`` says where the run executes (:mod:`grpo.llm.infra.distributed`): one process by default;
    under accelerate, ``policy`` and ``optimizer`` are the prepared (wrapped) ones and this process
    handles its share of each step's prompts.
    """

    def __init__(self, cfg: GRPOConfig, policy: Any, tokenizer: Any, rows: list[Row], rewards: RewardSet,
                 ref: Any | None = None, optimizer: torch.optim.Optimizer | None = None,
                 runtime: Runtime | None = None):
        self._setup(cfg, policy, tokenizer, ref, optimizer, runtime)
        self.sampler = Sampler(cfg, policy, tokenizer, rows, rewards, self.rt)
        self.reward_weights = torch.tensor([rewards.weights.get(n, 1.0) for n in rewards.fns])  # [K] (gdpo)

    def _setup(self, cfg: GRPOConfig, policy: Any, tokenizer: Any, ref: Any | None,
               optimizer: torch.optim.Optimizer | None, runtime: Runtime | None) -> None:
        """Policy, reference, optimizer and step guard (shared with the multi-turn trainer)."""
        self.cfg, self.policy, self.tok, self.ref = cfg, policy, tokenizer, ref
        self.device = next(policy.parameters()).device
        self.rt = runtime or Runtime(self.device)
        self.policy.eval()  # dropout off: see the module docstring
        self.opt = optimizer or make_optimizer(cfg.optimizer, policy.parameters(), cfg.lr, cfg.weight_decay)
        # Non-finite losses or gradients skip the step; nonfinite_limit in a row stop the run.
        self.guard = GuardedStep(self.opt, cfg.max_grad_norm or float("inf"), cfg.nonfinite_limit)
        self.share = MICRO_BATCH_SHARES.get(cfg.aggregation)
        self.estimator = OUTCOME_ESTIMATORS.get(cfg.advantage_estimator)
        self.loss_params = parse_loss_args(cfg.policy_loss_args)

    def checkpoint_modules(self) -> dict[str, Any]:
        """Modules saved in checkpoints beside the policy: none for GRPO (PPO: its value model)."""
        return {}

    # ------------------------------------------------------------------ 1. advantages
    def advantages(self, g: Batch) -> Tensor:
        """[N, C]: outcome advantages on every token, plus process advantages if any."""
        G, roll = self.cfg.group_size, g.rollout
        N, C = roll.completion_ids.shape
        B = 0 if g.stand_in else len(g.rows)  # a stand-in's groups are left out of every statistic
        # Over the global batch (batch statistics need every process's rewards); this process's groups kept.
        # Processes may hold different numbers of groups (dynamic sampling): this one's start at the sum of
        # the counts of the processes before it.
        rt = self.rt
        start = int(rt.cat(torch.tensor([B]))[:rt.rank].sum()) if rt.world_size > 1 else 0
        scores = rt.cat(g.scored.total[:B * G].view(-1, G))  # [B_global, G]
        baseline = None  # [B_global]
        if needs_baseline(self.estimator):  # a stand-in samples too when generation is collective (FSDP), unused
            ask = g.rows if g.stand_in and rt.collective_forward else g.rows[:B]
            baseline = rt.cat(self.sampler.greedy_rewards(ask)[:B] if ask else torch.zeros(0))
        inp = AdvantageInputs(self.cfg.reward_scale, lengths=rt.cat(roll.lengths[:B * G].view(-1, G).float().cpu()),
                              columns=rt.cat(g.scored.per_fn[:B * G].view(-1, G, g.scored.per_fn.shape[-1])),
                              weights=self.reward_weights, baseline=baseline)
        if g.stand_in:  # after the collectives above, which every process joins
            return torch.zeros(N, C, device=self.device)  # nothing of it is trained (its loss mask is 0)
        adv = outcome_advantages(self.cfg.advantage_estimator, scores, inp)[start:start + B]  # [B, G]
        adv = adv.reshape(N, 1).expand(N, C).to(self.device)  # [N, C]
        if g.scored.steps is not None:
            r, ends, mask = step_token_ends(self.tok, roll.completion_ids.cpu(), g.scored.steps, G)  # [B, G, S]
            proc = process_advantages(r, ends, mask, C)  # [B, G, C]
            adv = adv + g.scored.step_weight * proc.reshape(N, C).to(self.device)
        return adv

    # ------------------------------------------------------------------ 2. policy updates
    def _logprobs(self, model: Any, roll: Rollout, rows: Tensor, **kw: Any) -> TokenStats:
        """Log-probs (entropy, KL) [n, C] of the rows ``rows`` [n], computed on the columns they use:
        prompt columns that are padding in every row and completion columns after the longest row are
        left out of the forward pass (zeros there, where every mask is 0)."""
        C = roll.completion_ids.shape[1]
        pm, cm = roll.prompt_mask[rows], roll.completion_mask[rows]  # [n, P], [n, C]
        p0, c1 = int(pm.any(0).int().argmax()), max(1, int(row_widths(cm).max()))
        # Rows in runs of one prompt share its encoding (checked inside; else a plain forward). A micro-batch
        # that is not whole groups (--micro-batch not a multiple of G) starts and ends on multiples of
        # gcd(G, its rows) within a group, so runs of that many still share.
        stats = completion_logprobs(model, roll.prompt_ids[rows][:, p0:], pm[:, p0:],
                                    roll.completion_ids[rows][:, :c1], cm[:, :c1], self.cfg.temperature,
                                    group_size=math.gcd(self.cfg.group_size, len(rows)),
                                    **logprob_filter(self.cfg), **kw)
        return TokenStats(*(None if x is None else F.pad(x, (0, C - c1)) for x in stats))

    def _no_grad_logprobs(self, model: Any, roll: Rollout, with_entropy: bool = False) -> Tensor:
        """[N, C] log-probs (or, ``with_entropy``, entropies) of the whole batch, micro-batch by micro-batch."""
        out = torch.zeros(roll.completion_ids.shape, device=roll.completion_ids.device)  # [N, C]
        with torch.no_grad():
            mbs, real = self._micro_batches(roll)
            for mb in mbs[:real]:
                stats = self._logprobs(model, roll, mb, with_entropy=with_entropy)
                out[mb] = stats.entropy if with_entropy else stats.logp
            for mb in mbs[real:]:  # fill-ins: a collective pass that adds nothing
                self._logprobs(model, roll, mb)
        return out

    def _token_weights(self, roll: Rollout, loss_mask: Tensor) -> Tensor | None:
        """[N, C] the token selection's weights over the whole batch (from pi_old's entropy), or None."""
        select = TOKEN_SELECTIONS.get(self.cfg.token_selection)
        if not needs_entropy(select):
            return None
        ent = self._no_grad_logprobs(self.policy, roll, with_entropy=True)  # [N, C]
        # Several processes: each takes the top share of its own part of the batch (close to, not exactly,
        # the global batch's quantile).
        return select(ent, loss_mask, self.cfg.top_entropy_rho)

    def _pg_weights(self, logp: Tensor, old: Tensor, engine: Tensor | None, adv: Tensor, mask: Tensor,
                    sel: Tensor | None) -> tuple[Tensor | None, dict[str, Tensor]]:
        """[n, C] per-token weights of the policy term: token selection x rollout IS correction x
        off-policy sequence mask (each optional); and their metrics."""
        cfg, w, m = self.cfg, sel, {}
        sampled = old if engine is None else torch.where(torch.isnan(engine), old, engine)  # NaN: unknown to the engine
        if engine is not None:
            is_w, m = rollout_weights(cfg.rollout_correction, old, sampled, mask, cfg.rollout_correction_cap)
            w = is_w if w is None else w * is_w
        if cfg.off_policy_mask_delta is not None:
            keep = off_policy_sequence_mask(logp.detach(), sampled, adv, mask, cfg.off_policy_mask_delta)
            m["rollout_is/off_policy_masked_frac"] = masked_mean(1 - keep, mask)
            w = keep if w is None else w * keep
        return w, m

    def _micro_batches(self, roll: Rollout) -> tuple[list[Tensor], int]:
        """Row indices [n] of each forward/backward, and how many of them are real. Whole groups of G,
        shortest longest-completion first, so that each micro-batch holds completions of similar lengths and
        is trimmed to its own longest (:meth:`_logprobs`), not the batch's; the sums over micro-batches are
        the same in any order. Under FSDP every forward pass is collective, yet the processes may cut their
        batches into different numbers of micro-batches (dynamic sampling keeps different numbers of groups;
        the default size depends on the batch's width): the first micro-batch is repeated (weight 0) until
        each process runs as many as the one that runs most."""
        n, G = len(roll.completions), self.cfg.group_size
        size = self.cfg.micro_batch or n
        if not self.cfg.micro_batch and not getattr(self.rt, "deepspeed", False):  # DeepSpeed: one backward per step
            size = auto_micro_batch(self.policy, n, roll.prompt_ids.shape[1] + roll.completion_ids.shape[1], G)
        rows = length_order(roll.completion_mask.cpu(), G if n % G == 0 else 1).to(roll.completion_ids.device)  # [N]
        mbs = [rows[i:i + size] for i in range(0, n, size)]
        real = len(mbs)
        if self.rt.collective_forward:
            mbs += [mbs[0]] * (int(self.rt.max(real)) - real)
        return mbs, real

    def update(self, roll: Rollout, adv: Tensor, loss_mask: Tensor) -> dict[str, float]:
        """mu optimizer steps on one generation batch; returns the metrics of the last one."""
        cfg, rt = self.cfg, self.rt
        old_logp = self._no_grad_logprobs(self.policy, roll) if cfg.mu > 1 else None  # [N, C]
        # The exact KL ("full") needs the reference's logits beside the policy's: its forward runs inside each
        # micro-batch (every update pass) instead of once here.
        exact_kl = cfg.kl_estimator == EXACT_KL and self.ref is not None
        ref_logp = self._no_grad_logprobs(self.ref, roll) if self.ref is not None and not exact_kl else None  # [N, C]
        # The global batch's normaliser. DDP/FSDP/DeepSpeed average gradients over processes, so each
        # process's loss is scaled by the world size: the sum is exactly the full batch's gradient.
        total = float(rt.sum(self.share(loss_mask)))
        sel = self._token_weights(roll, loss_mask)  # [N, C] or None
        engine = roll.sampling_logp  # [N, C] the sampling engine's log-probs, when it gives them
        constant = cfg.loss_constant or float(cfg.max_new_tokens)  # Dr. GRPO's normaliser per sequence
        metrics: dict[str, float] = {}
        mbs, real = self._micro_batches(roll)
        for it in range(cfg.mu):
            self.opt.zero_grad(set_to_none=True)
            sums: dict[str, float] = {}
            bad = False
            for i, mb in enumerate(mbs):
                last = i == len(mbs) - 1
                with rt.accumulating(self.policy, last):  # gradients are all-reduced on the last only
                    mask = loss_mask[mb]
                    w = self.share(mask) / max(total, 1.0) * float(i < real)  # fill-ins add nothing
                    logp, ent, kl = self._logprobs(self.policy, roll, mb, with_entropy=True,
                                                   entropy_grad=cfg.entropy_coef > 0,
                                                   kl_to=self.ref if exact_kl else None)
                    old = old_logp[mb] if old_logp is not None else logp.detach()
                    pg_w, w_metrics = self._pg_weights(logp, old, None if engine is None else engine[mb].to(old),
                                                       adv[mb], mask, None if sel is None else sel[mb])
                    loss, m = grpo_loss(logp, old, adv[mb], mask, None if ref_logp is None else ref_logp[mb], cfg.beta,
                                        cfg.eps_low, cfg.eps_high, cfg.ratio_level, cfg.aggregation, cfg.kl_estimator,
                                        constant, policy_loss=cfg.policy_loss, loss_params=self.loss_params,
                                        pg_weights=pg_w, kl=kl)
                    m.update(w_metrics)
                    m["policy/entropy"] = masked_mean(ent.detach(), mask)
                    if cfg.entropy_coef > 0:
                        loss = loss - cfg.entropy_coef * aggregate(ent, mask, cfg.aggregation, constant)
                    finite = bool(torch.isfinite(loss))
                    bad = bad or not finite
                    # Every process joins the all-reduce of its last micro-batch, even with nothing to add; under
                    # FSDP every backward is collective (parameters are all-gathered again), so all run every one.
                    if (w > 0 and finite) or (rt.world_size > 1 and (last or rt.collective_forward)):
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
        self.sampler.after_update()  # e.g. vLLM's copy of the policy
        return metrics

    # ------------------------------------------------------------------ one step
    def step(self, step: int) -> tuple[dict[str, float], Batch]:
        cfg, t0 = self.cfg, time.perf_counter()
        g = self.sampler.collect(step)
        roll = g.rollout
        metrics: dict[str, float] = {}
        if len(g.rows):
            adv = self.advantages(g)  # [N, C]
            loss_mask = roll.completion_mask.to(adv.dtype) * (not g.stand_in)  # [N, C]
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
        metrics.update(batch_metrics(g, step_s, self.rt, self.cfg))
        return metrics, g
