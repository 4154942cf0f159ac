"""PPOConfig: GRPOConfig's options plus PPO's own, and the ``--algo`` name -> config table.

PPO shares the data, batch (prompts_per_step x group_size), sampling, clip range, KL coefficient
(``beta``) and estimator, aggregation, learning rate and run options with GRPO; the fields below
are PPO's only. GRPO-only options (group normalisation, dynamic sampling, mu, reference reset)
do not apply. No torch import here: building the CLI parser stays instant.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from pathlib import Path

from grpo.llm.config import GRPOConfig, _help
from grpo.llm.presets import with_presets

VALUE_MODEL_NAMES = ("critic", "shared")
KL_PENALTY_NAMES = ("reward", "loss")


@dataclass
class PPOConfig(GRPOConfig):
    value_model: str = field(default="critic", metadata=_help(
        "PPO: critic = a separate value model of the policy's size (classic RLHF); "
        "shared = a value head on the policy's backbone", choices=VALUE_MODEL_NAMES))
    kl_penalty: str = field(default="reward", metadata=_help(
        "PPO: where beta * KL(pi || pi_ref) enters: per-token reward (InstructGPT) or the loss (as GRPO)",
        choices=KL_PENALTY_NAMES))
    epochs: int = field(default=2, metadata=_help("PPO: passes over each generation batch"))
    minibatches: int = field(default=1, metadata=_help(
        "PPO: optimizer steps per epoch (the batch's prompts split into this many parts)"))
    gamma: float = field(default=1.0, metadata=_help("PPO: discount over completion tokens"))
    gae_lambda: float = field(default=0.95, metadata=_help("PPO: GAE lambda"))
    vf_coef: float = field(default=0.1, metadata=_help("PPO: value loss coefficient"))
    value_clip: float | None = field(default=0.2, metadata=_help(
        "PPO: clip the value around its old estimate by this much; none: unclipped value loss"))
    critic_lr: float | None = field(default=None, metadata=_help("PPO: value model learning rate; none: lr"))
    whiten_advantages: bool = field(default=True, metadata=_help(
        "PPO: normalise advantages over the batch's tokens (mean 0, std 1)"))
    algo: str = field(default="ppo", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = {
            "epochs": self.epochs >= 1, "minibatches": 1 <= self.minibatches <= self.prompts_per_step,
            "gamma": 0 <= self.gamma <= 1, "gae_lambda": 0 <= self.gae_lambda <= 1, "vf_coef": self.vf_coef >= 0,
            "value_clip": self.value_clip is None or self.value_clip > 0,
            "critic_lr": self.critic_lr is None or self.critic_lr > 0,
            "value_model": self.value_model in VALUE_MODEL_NAMES, "kl_penalty": self.kl_penalty in KL_PENALTY_NAMES,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError("invalid PPOConfig value(s): " + ", ".join(f"{b}={getattr(self, b)!r}" for b in bad)
                             + " (minibatches must be in [1, prompts_per_step]; see --help)")
        grpo_only = {"dynamic_sampling": self.dynamic_sampling, "mu": self.mu != 1,
                     "ref_reset_every": self.ref_reset_every != 0,
                     "advantage_estimator": self.advantage_estimator != "grpo",  # PPO's advantages are GAE
                     "token_selection": self.token_selection != "all",
                     "rollout_correction": self.rollout_correction != "none",
                     "off_policy_mask_delta": self.off_policy_mask_delta is not None}
        given = [name for name, on in grpo_only.items() if on]
        if given:
            raise ValueError(f"{', '.join(given)}: GRPO-only option(s); PPO uses --epochs and --minibatches")
        if self.kl_estimator == "full":
            raise ValueError("kl_estimator=full is GRPO-only (PPO's per-token KL is taken on the sampled tokens); "
                             "use k1, k2 or k3")


# ``grpo llm train --algo NAME`` -> the config class it builds.
LLM_ALGOS: dict[str, type[GRPOConfig]] = {"grpo": GRPOConfig, "ppo": PPOConfig}
PPO_ONLY_FIELDS = tuple(f.name for f in fields(PPOConfig) if f.init and f.name not in
                        {g.name for g in fields(GRPOConfig)})


# What ``--resume`` may change: the budget (only upwards), where and how fast it runs, and what is logged.
RESUME_SAFE = ("out", "resume", "overwrite", "device", "threads", "keep_freed_memory", "progress", "tensorboard",
               "report_to", "log_every", "log_samples", "samples_every", "eval_every", "save_every", "keep_checkpoints",
               "time_limit")
RESUME_GROW = ("steps",)


def config_from_args(args: argparse.Namespace) -> GRPOConfig:
    """GRPOConfig or PPOConfig from ``--algo``, ``--config`` YAML and flags; PPO flags need --algo ppo.

    With ``--resume`` and a saved ``run_config.json`` in ``out``, the saved configuration is the run's;
    the options given may only extend ``steps`` or change those in RESUME_SAFE (others are refused)."""
    from grpo.utils.config import ConfigError, build, given_values, resume_values
    from grpo.utils.io import read_json

    algo = getattr(args, "algo", None)
    given = given_values(PPOConfig, args)
    saved_path = Path(given.get("out", GRPOConfig.out)) / "run_config.json"
    if given.get("resume") and saved_path.is_file():
        saved = {k: v for k, v in read_json(saved_path).items() if k not in ("model_path", "world_size")}
        saved_algo = saved.pop("algo", "grpo")
        if algo not in (None, saved_algo):
            raise ConfigError(f"--resume: the run in {saved_path.parent} is --algo {saved_algo}, not {algo}")
        algo = saved_algo
        values = resume_values(saved, given, RESUME_SAFE, RESUME_GROW, str(saved_path))
        values["out"] = str(saved_path.parent)  # where it was found, whatever the path saved then
        return build(LLM_ALGOS[algo], values, f"{saved_path}: ")
    algo = algo or "grpo"
    if algo != "ppo":
        ppo_only = sorted(set(PPO_ONLY_FIELDS) & set(given))
        if ppo_only:
            raise ConfigError(f"{', '.join('--' + n.replace('_', '-') for n in ppo_only)} "
                              "appl(ies) to PPO only: add --algo ppo")
    return build(LLM_ALGOS[algo], with_presets(given))  # --env guess-number alone: the demo's recipe
