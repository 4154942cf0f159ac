"""GRPO for gymnasium environments: groups of episodes from one reset seed, no critic.

One iteration:
  1. collect B groups; the G episodes of a group start from the same reset seed (a fresh seed
     per group) and differ only by the policy's sampling;
  2. advantages from the group (``grpo.core``): the episode return normalised in its group and
     given to every step (outcome supervision), or returns-to-go normalised across the group at
     the same time step, or per-step rewards normalised over the group (process supervision);
  3. several epochs over minibatches of whole episodes of the clipped surrogate, the ratio taken
     against the policy that collected the data, plus beta * KL(pi_theta || pi_ref) (k3);
  4. every ``ref_sync_every`` iterations the reference becomes the current policy (iterative GRPO).

Departures from DeepSeekMath section 4, all deliberate:
  - "Outputs" are episodes and "tokens" are time steps; a group shares an initial state (the
    reset seed) rather than a question.
  - The paper does one update per exploration stage; here ``epochs`` x ``minibatches`` updates
    per batch, as in PPO, because env steps (not generation) are the scarce resource, and that
    is what makes the ratio and the clip act.
  - The reference is re-synced every R iterations instead of after a reward-model retraining.
  - The loss is averaged over every step of the batch (``aggregation="token-mean"``, DAPO), not
    per episode first, by default; and the tuned settings (``grpo.control.defaults``) use
    ``advantage="timestep"`` (returns-to-go normalised across the group at each t), not outcome
    supervision. ``grpo compare`` names the mode of each GRPO row; ``advantage="outcome",
    aggregation="sequence-mean"`` is the paper's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from grpo.control.envs import EnvInfo
from grpo.control.policies import Actor, count_parameters
from grpo.control.rollout import EpisodeBatch, GroupCollector
from grpo.utils.metrics import mean_metrics
from grpo.utils.optim import GuardedStep
from grpo.core import (
    AGGREGATIONS,
    EXACT_KL,
    KL_NAMES,
    OUTCOME_ESTIMATORS,
    POLICY_LOSSES,
    RATIO_LEVELS,
    REWARD_SCALES,
    TOKEN_SELECTIONS,
    AdvantageInputs,
    Registry,
    ZERO_STD,
    discounted_returns,
    group_advantages,
    grpo_loss,
    masked_mean,
    needs_baseline,
    needs_entropy,
    off_policy_sequence_mask,
    parse_loss_args,
    process_advantages,
    timestep_group_advantages,
)

# Episode-return estimators of the menu (grpo.core.OUTCOME_ESTIMATORS; its "grpo" is "outcome" here).
MENU_ESTIMATORS = [n for n in OUTCOME_ESTIMATORS.names() if n != "grpo"]


@dataclass
class ControlGRPOConfig:
    """Classic-control GRPO. Per-env tuned values live in ``grpo.control.defaults``."""

    group_size: int = field(default=8, metadata={"help": "G: episodes per group (same reset seed)"})
    groups: int = field(default=2, metadata={"help": "B: groups collected per iteration"})
    advantage: str = field(default="outcome", metadata={
        "help": "outcome: group-normalised episode return on every step; timestep: returns-to-go "
                "normalised across the group at each t; process: per-step rewards normalised over "
                "the group (DeepSeekMath 4.1.3); or an estimator of the menu on episode returns (docs/algorithms.md; "
                "remax plays one greedy episode per group from its seed, counted in the env steps)",
        "choices": ["outcome", "timestep", "process", *MENU_ESTIMATORS]})
    reward_scale: str = field(default="group", metadata={
        "help": "divide centred rewards by the group std (GRPO), the batch std, or nothing (Dr. GRPO)",
        "choices": list(REWARD_SCALES)})
    gamma: float = field(default=0.99, metadata={"help": "discount of returns-to-go (timestep advantage)"})
    epochs: int = field(default=10, metadata={"help": "passes over each batch"})
    minibatches: int = field(default=2, metadata={"help": "minibatches (of whole episodes) per epoch"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    anneal_lr: bool = field(default=False, metadata={"help": "decay the learning rate linearly to 0"})
    eps_low: float = field(default=0.2, metadata={"help": "lower clip range: ratio >= 1 - eps_low"})
    eps_high: float | None = field(default=None, metadata={"help": "upper clip range (None: eps_low)"})
    ratio_level: str = field(default="token", metadata={
        "help": "importance ratio per time step, or per episode (GSPO)", "choices": RATIO_LEVELS.names()})
    aggregation: str = field(default="token-mean", metadata={
        "help": "how per-step losses become one number", "choices": AGGREGATIONS.names()})
    beta: float = field(default=0.04, metadata={"help": "KL penalty coefficient; 0 disables the reference"})
    kl_estimator: str = field(default="k3", metadata={
        "help": "KL estimator (full: the exact KL of the two action distributions at each visited state)",
        "choices": list(KL_NAMES)})
    ref_sync_every: int = field(default=10, metadata={"help": "R: reset the reference to the policy every R iterations"})
    ent_coef: float = field(default=0.0, metadata={"help": "entropy bonus coefficient"})
    policy_loss: str = field(default="clip", metadata={
        "help": "policy surrogate (docs/algorithms.md)", "choices": POLICY_LOSSES.names()})
    policy_loss_args: list[str] | None = field(default=None, metadata={
        "help": "constants of the policy loss as NAME=VALUE (grpo.core.PolicyLossParams); none: each paper's"})
    token_selection: str = field(default="all", metadata={
        "help": "time steps the policy gradient trains on: all, or top-entropy (the top_entropy_rho share of the "
                "batch's steps with the highest policy entropy)", "choices": TOKEN_SELECTIONS.names()})
    top_entropy_rho: float = field(default=0.2, metadata={"help": "token_selection top-entropy: share kept"})
    off_policy_mask_delta: float | None = field(default=None, metadata={
        "help": "drop episodes with negative advantage whose mean log-ratio of the collecting policy to the "
                "current one exceeds this (DeepSeek-V3.2; acts from the second epoch); none: off"})
    max_grad_norm: float = field(default=0.5, metadata={"help": "gradient-norm clip"})
    hidden: list[int] = field(default_factory=lambda: [64, 64], metadata={"help": "hidden layer sizes"})
    activation: str = field(default="tanh", metadata={"help": "hidden activation", "choices": ["tanh", "relu"]})
    init_log_std: float = field(default=0.0, metadata={"help": "initial log-std (continuous actions)"})

    def __post_init__(self) -> None:
        checks = [
            (self.group_size >= 2, "group_size must be >= 2 (a group of one has no baseline)"),
            (self.groups >= 1, "groups must be >= 1"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (1 <= self.minibatches <= self.groups * self.group_size,
             "minibatches must be between 1 and groups * group_size"),
            (self.lr > 0, "lr must be > 0"),
            (0 < self.eps_low < 1, "eps_low must be in (0, 1)"),
            (self.eps_high is None or self.eps_high > 0, "eps_high must be > 0"),
            (self.beta >= 0, "beta must be >= 0"),
            (self.ref_sync_every >= 1, "ref_sync_every must be >= 1"),
            (0 <= self.gamma <= 1, "gamma must be in [0, 1]"),
            (self.max_grad_norm > 0, "max_grad_norm must be > 0"),
            (self.advantage in ADVANTAGES, f"advantage must be one of {ADVANTAGES.names()}"),
            (0 < self.top_entropy_rho <= 1, "top_entropy_rho must be in (0, 1]"),
            (self.off_policy_mask_delta is None or self.off_policy_mask_delta >= 0, "off_policy_mask_delta must be >= 0"),
            (self.kl_estimator in KL_NAMES, f"kl_estimator must be one of {list(KL_NAMES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"grpo config: {message}")
        for name, registry in (("ratio_level", RATIO_LEVELS), ("aggregation", AGGREGATIONS),
                               ("policy_loss", POLICY_LOSSES), ("token_selection", TOKEN_SELECTIONS)):
            registry.get(getattr(self, name))  # raises a ValueError naming the choices
        parse_loss_args(self.policy_loss_args)
        if self.reward_scale not in REWARD_SCALES:
            raise ValueError(f"grpo config: reward_scale must be one of {REWARD_SCALES}")


# Episode-level advantage estimators, all (batch, cfg) -> [E, T].
ADVANTAGES: Registry = Registry("control advantage")


@ADVANTAGES.register("outcome")
def outcome_advantages(batch: EpisodeBatch, cfg: ControlGRPOConfig) -> Tensor:
    returns = batch.returns.view(cfg.groups, cfg.group_size)  # [B, G]
    adv = group_advantages(returns, cfg.reward_scale)  # [B, G]
    return adv.reshape(-1, 1) * batch.mask  # [E, T]


@ADVANTAGES.register("timestep")
def timestep_advantages(batch: EpisodeBatch, cfg: ControlGRPOConfig) -> Tensor:
    rtg = discounted_returns(batch.rewards, batch.mask, cfg.gamma)  # [E, T]
    shape = (cfg.groups, cfg.group_size, -1)
    adv = timestep_group_advantages(rtg.view(shape), batch.mask.view(shape), cfg.reward_scale)
    return adv.reshape(batch.mask.shape)  # [E, T]


@ADVANTAGES.register("process")
def process_step_advantages(batch: EpisodeBatch, cfg: ControlGRPOConfig) -> Tensor:
    # Every time step is a "reasoning step" whose reward is the env reward and which ends at t.
    E, T = batch.mask.shape
    shape = (cfg.groups, cfg.group_size, T)
    ends = torch.arange(T).expand(E, T).reshape(shape)
    adv = process_advantages(batch.rewards.view(shape), ends, batch.mask.view(shape), T)
    return adv.reshape(E, T) * batch.mask


def _menu_advantages(name: str, batch: EpisodeBatch, cfg: ControlGRPOConfig) -> Tensor:
    """An outcome estimator of the menu on episode returns, given to every step. [E, T]"""
    shape = (cfg.groups, cfg.group_size)
    inp = AdvantageInputs(cfg.reward_scale, lengths=batch.lengths.view(shape).float(), baseline=batch.baseline)
    return OUTCOME_ESTIMATORS.get(name)(batch.returns.view(shape), inp).reshape(-1, 1) * batch.mask


for _name in MENU_ESTIMATORS:
    _fn = ADVANTAGES.register(_name)(lambda batch, cfg, _n=_name: _menu_advantages(_n, batch, cfg))
    _fn.needs_baseline = needs_baseline(OUTCOME_ESTIMATORS.get(_name))


class GRPOAgent:
    """The actor, its reference copy, the optimiser and the episode collector."""

    def __init__(self, cfg: ControlGRPOConfig, info: EnvInfo, seed: int):
        self.cfg, self.info = cfg, info
        self.actor = Actor(info, tuple(cfg.hidden), cfg.activation, cfg.init_log_std)
        self.ref = copy.deepcopy(self.actor).requires_grad_(False) if cfg.beta > 0 else None
        self.optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr, eps=1e-5, fused=True)
        self.step = GuardedStep(self.optimizer, cfg.max_grad_norm)
        self.collector = GroupCollector(info, cfg.groups, cfg.group_size)
        self.seed_rng = np.random.default_rng(seed)  # fresh reset seeds, one per group
        self.iteration = 0
        self.loss_params = parse_loss_args(cfg.policy_loss_args)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"actor": self.actor} | ({"ref": self.ref} if self.ref is not None else {})

    def param_count(self) -> int:
        return count_parameters(self.actor)

    def collect(self) -> EpisodeBatch:
        seeds = self.seed_rng.integers(0, 2**31 - 1, size=self.cfg.groups).tolist()
        batch = self.collector.collect(self.actor, seeds)
        if needs_baseline(ADVANTAGES.get(self.cfg.advantage)):  # ReMax: a greedy episode per group seed
            batch.baseline, steps = self.collector.greedy_returns(self.actor, seeds)
            batch.env_steps += steps
        return batch

    def _step_weights(self, batch: EpisodeBatch) -> Tensor | None:
        """[E, T] the token selection over the batch's steps (entropy of the collecting policy), or None."""
        select = TOKEN_SELECTIONS.get(self.cfg.token_selection)
        if not needs_entropy(select):
            return None
        entropy = torch.zeros(batch.mask.shape)  # [E, T]
        with torch.no_grad():
            entropy[batch.mask] = self.actor.log_prob_entropy(batch.obs[batch.mask], batch.actions[batch.mask])[1]
        return select(entropy, batch.mask, self.cfg.top_entropy_rho)

    def update(self, batch: EpisodeBatch, progress: float) -> dict[str, float]:
        cfg = self.cfg
        if cfg.anneal_lr:
            self.optimizer.param_groups[0]["lr"] = cfg.lr * max(1.0 - progress, 0.0)
        adv = ADVANTAGES.get(cfg.advantage)(batch, cfg)  # [E, T]
        mask = batch.mask
        ref_logp = None
        exact_kl = self.ref is not None and cfg.kl_estimator == EXACT_KL  # computed per minibatch, with gradient
        if self.ref is not None and not exact_kl:
            ref_logp = torch.zeros_like(batch.logp)  # [E, T]
            with torch.no_grad():
                ref_logp[mask] = self.ref.log_prob_entropy(batch.obs[mask], batch.actions[mask])[0]
        E = mask.shape[0]
        sel = self._step_weights(batch)  # [E, T] or None
        history: list[dict[str, torch.Tensor]] = []
        for epoch in range(cfg.epochs):
            last_epoch = epoch == cfg.epochs - 1  # metrics come from the last epoch only: they are not free
            for idx in torch.randperm(E).chunk(cfg.minibatches):
                mb_mask = mask[idx]  # [e, T]
                logp = torch.zeros(mb_mask.shape)  # [e, T]; padding stays 0 and is masked out
                obs = batch.obs[idx][mb_mask]  # [steps, D]
                out = self.actor(obs)  # [steps, A] one forward for the log-probs and the exact KL
                logp_flat, entropy = self.actor.log_prob_entropy_of(out, batch.actions[idx][mb_mask])
                logp = logp.masked_scatter(mb_mask, logp_flat)
                kl = None
                if exact_kl:  # [e, T], 0 on padding
                    kl = torch.zeros(mb_mask.shape).masked_scatter(mb_mask, self.actor.kl_to(self.ref, obs, out))
                pg_w = None if sel is None else sel[idx]
                if cfg.off_policy_mask_delta is not None:
                    keep = off_policy_sequence_mask(logp.detach(), batch.logp[idx], adv[idx], mb_mask,
                                                    cfg.off_policy_mask_delta)  # [e, T]
                    pg_w = keep if pg_w is None else pg_w * keep
                loss, metrics = grpo_loss(
                    logp, batch.logp[idx], adv[idx], mb_mask,
                    ref_logp=None if ref_logp is None else ref_logp[idx], beta=cfg.beta,
                    eps_low=cfg.eps_low, eps_high=cfg.eps_high, ratio_level=cfg.ratio_level,
                    aggregation=cfg.aggregation, kl_estimator=cfg.kl_estimator,
                    constant=float(self.info.max_episode_steps), with_metrics=last_epoch,
                    policy_loss=cfg.policy_loss, loss_params=self.loss_params, pg_weights=pg_w, kl=kl)
                entropy_mean = entropy.mean()
                if cfg.ent_coef:
                    loss = loss - cfg.ent_coef * entropy_mean
                grad_norm = self.step(loss)
                if last_epoch:
                    metrics.update({"policy/entropy": entropy_mean.detach(), "policy/grad_norm": grad_norm})
                    history.append(metrics)
        self.iteration += 1
        if self.ref is not None and self.iteration % cfg.ref_sync_every == 0:
            self.ref.load_state_dict(self.actor.state_dict())
        out = mean_metrics(history)
        returns = batch.returns.view(cfg.groups, cfg.group_size)
        out.update({
            "train/episode_return_mean": float(batch.returns.mean()),
            "train/episode_length_mean": float(batch.lengths.float().mean()),
            "train/zero_std_group_frac": float((returns.std(1) < ZERO_STD).float().mean()),
            "train/advantage_abs_mean": float(masked_mean(adv.abs(), mask)),
            "train/lr": self.optimizer.param_groups[0]["lr"],
            "train/skipped_updates": float(self.step.skipped_total),
        })
        return out

    def close(self) -> None:
        self.collector.close()
