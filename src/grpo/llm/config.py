"""GRPOConfig: every option of the LLM trainer, documented once (the text becomes ``--help``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from grpo.llm.presets import GUESS_FOLDER, GUESS_MODEL, GUESS_PRESETS

# The names registered in grpo.core, spelled out so that building the CLI parser does not import
# torch (``grpo --help`` stays instant); __post_init__ and a test check them against the registries.
KL_ESTIMATOR_NAMES = ("k1", "k2", "k3", "full")  # grpo.core.KL_NAMES
RATIO_LEVEL_NAMES = ("sequence", "token")
AGGREGATION_NAMES = ("constant", "seq-mean-token-sum", "seq-mean-token-sum-norm", "sequence-mean", "token-mean",
                     "token-sum")
# The algorithm menu (docs/algorithms.md): grpo.core's OUTCOME_ESTIMATORS, POLICY_LOSSES, TOKEN_SELECTIONS, ...
ADVANTAGE_ESTIMATOR_NAMES = ("gdpo", "grpo", "grpo-passk", "opo", "reinforce++", "reinforce++-baseline", "remax", "rloo")
POLICY_LOSS_NAMES = ("cispo", "clip", "clip-cov", "clip-higher", "dppo-kl", "dppo-tv", "dual-clip", "gmpo", "gspo",
                     "kl-cov", "sapo")
TOKEN_SELECTION_NAMES = ("all", "top-entropy")
ROLLOUT_CORRECTION_NAMES = ("none", "sequence-mask", "sequence-truncate", "token-mask", "token-truncate")
REWARD_SCALE_NAMES = ("group", "batch", "none")
GENERATION_NAMES = ("cached", "hf", "vllm")
MIXED_PRECISION_NAMES = ("no", "bf16", "fp16")
ADAPTER_NAMES = ("lora", "dora", "rslora")  # grpo.llm.modeling.adapters.ADAPTERS
LR_SCHEDULE_NAMES = ("constant", "cosine", "linear")  # grpo.llm.infra.schedules.LR_SCHEDULES
OPTIMIZER_NAMES = ("adamw", "sgd")  # grpo.utils.optim.OPTIMIZERS

# Used when no --model is given: the built-in tiny model learns at a much higher rate.
TINY_LR = 3e-4
TINY_LR_SCHEDULE = "linear"
TINY_MAX_NEW_TOKENS = 8

def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


@dataclass
class GRPOConfig:
    # --- policy and data ---------------------------------------------------------------------
    model: str | None = field(default=None, metadata=_help(
        "causal LM: local folder, hub id, a .gguf file or a named real model (smollm2-135m-instruct; GGUF files "
        "are converted once to a model folder and cached), guess-tiny (the guess-the-number player); none: the built-in "
        "tiny model (with --env guess-number: guess-tiny)"))
    task: str = field(default="addition", metadata=_help(
        "built-in task (addition, word-problems), a .jsonl/.csv/.parquet file, a folder of split files "
        "(train.jsonl, test.csv, ...), a `datasets` name (name:config), or data files with splits "
        "(json:train=a.jsonl,test=b.jsonl)"))
    split: str = field(default="train", metadata=_help("split used for training (a single file: all of it)"))
    eval_split: str | None = field(default="test", metadata=_help(
        "split for greedy accuracy before/after training and every eval_every steps; none: skip"))
    eval_task: str | None = field(default=None, metadata=_help(
        "held-out prompts from another source (a file, folder, built-in task or `datasets` name; its "
        "eval_split); none: the task's eval_split, else a held-out slice (eval_holdout)"))
    eval_holdout: float = field(default=0.1, metadata=_help(
        "a task with no eval_split (a single file, ...): hold out this share of its rows (< 1) or this "
        "many rows (>= 1) for evaluation, never trained on; 0: no evaluation"))
    eval_limit: int = field(default=200, metadata=_help("evaluate on at most this many prompts"))
    prompt_column: str = field(default="prompt", metadata=_help("column holding the prompt"))
    reward: list[str] | None = field(default=None, metadata=_help(
        "reward functions NAME[:WEIGHT] (exact, numeric, math, format, length, digits) or your own "
        "MODULE:FUNCTION[:WEIGHT] (fn(prompts, completions, **columns) -> list); none: the task's"))
    reward_model: str | None = field(default=None, metadata=_help(
        "sequence-classification reward model (folder or hub id), added as reward 'model'"))
    dtype: str = field(default="float32", metadata=_help("model weights dtype", choices=["float32", "bfloat16", "float16"]))
    device: str = field(default="auto", metadata=_help("cpu, cuda, cuda:1, ... or auto"))
    threads: int | None = field(default=None, metadata=_help(
        "torch CPU threads; none: torch's default (1 is fastest for the tiny model on a busy machine)"))
    keep_freed_memory: bool = field(default=True, metadata=_help(
        "CPU under glibc: freed memory stays in the process and is reused, instead of every large tensor being "
        "mapped afresh and faulted in page by page (~16%% faster updates of a 135M model, ~5%% more peak memory)"))
    # --- multi-turn environments (docs/multi-turn.md) ---------------------------------------
    env: str | None = field(default=None, metadata=_help(
        "train on episodes of a text environment: calculator, code-function, guess-number, MODULE:CLASS or a "
        "gymnasium id; prompts_per_step then counts reset seeds (groups of group_size episodes); none: --task"))
    max_turns: int = field(default=8, metadata=_help("env: assistant turns per episode at most (then truncated)"))
    max_episode_tokens: int | None = field(default=None, metadata=_help(
        "env: tokens per episode at most, prompt and replies included (then truncated); none: the model's context"))
    truncated: str = field(default="keep", metadata=_help(
        "env: episodes cut by max_turns, max_episode_tokens or a turn without an end-of-turn token keep their "
        "return, are penalized (truncated_penalty off the last turn's reward) or masked (no loss); an episode "
        "the environment truncates itself keeps the reward it gave", choices=["keep", "penalize", "mask"]))
    truncated_penalty: float = field(default=1.0, metadata=_help("env: the penalty of truncated=penalize"))
    env_advantage: str = field(default="outcome", metadata=_help(
        "env: outcome (episode return normalised in its group) or turn (each turn's return-to-go compared "
        "across the group at the same turn)", choices=["outcome", "turn"]))
    env_gamma: float = field(default=1.0, metadata=_help(
        "env, turn advantages: discount of the return-to-go (1: every later reward counts in full; 0: a turn is "
        "judged by its own reward only)"))
    env_failure: str = field(default="raise", metadata=_help(
        "env: when an environment raises or returns something outside the protocol: raise (an error naming "
        "it and the episode), zero (end the episode with return 0), drop (leave its group out of the update)",
        choices=["raise", "zero", "drop"]))
    tool_timeout_s: float | None = field(default=10.0, metadata=_help(
        "env: seconds a tool call may take before an error message goes back to the model; none: no limit"))
    env_feedback: str = field(default="show", metadata=_help(
        "env: show the environment's replies to the model, or hide them (their text becomes '...'; rewards "
        "unchanged): a negative control that has nothing to learn from the feedback", choices=["show", "hide"]))
    env_eval_episodes: int = field(default=32, metadata=_help(
        "env: episodes (reset seeds 10000, 10001, ...) played before and after training and every eval_every "
        "steps; mean return, turns and env info go to the summary; 0: skip"))
    env_eval_greedy: bool = field(default=False, metadata=_help(
        "env: play the evaluation episodes a second time greedily (the most likely token at every step, as "
        "classic control and the single-turn accuracy evaluate), reported beside the sampled ones as greedy/..."))
    # --- batch -------------------------------------------------------------------------------
    steps: int = field(default=200, metadata=_help("policy-update rounds (one generation batch each)"))
    prompts_per_step: int = field(default=32, metadata=_help("prompts per step; each gets group_size samples"))
    group_size: int = field(default=8, metadata=_help("G: completions sampled per prompt (>= 2)"))
    micro_batch: int | None = field(default=None, metadata=_help(
        "sequences per forward/backward (gradient accumulation, same loss value); none: whole groups sized to "
        "the model, about 2**24 tokens x layers x hidden units each (the whole batch for the tiny model)"))
    # --- sampling ----------------------------------------------------------------------------
    max_new_tokens: int | None = field(default=None, metadata=_help(
        f"completion length limit; none: 256, or {TINY_MAX_NEW_TOKENS} for the built-in tiny model"))
    temperature: float = field(default=1.0, metadata=_help("sampling temperature (log-probs use the same)"))
    top_p: float = field(default=1.0, metadata=_help("nucleus sampling threshold; 1: off"))
    top_k: int = field(default=0, metadata=_help("top-k sampling; 0: off"))
    filtered_logprobs: bool = field(default=True, metadata=_help(
        "with top_k/top_p on, old, new and reference log-probs come from the filtered, renormalised "
        "distribution the tokens were sampled from; false: the full one (as TRL and verl)"))
    generation: str = field(default="cached", metadata=_help(
        "cached: each prompt encoded once, its KV cache shared by its G samples; hf: transformers generate; "
        "vllm: a colocated vLLM engine (pip install 'grpo-lab[vllm]')",
        choices=GENERATION_NAMES))
    # --- objective ---------------------------------------------------------------------------
    lr: float | None = field(default=None, metadata=_help(
        f"learning rate; none: 1e-6 (the paper) with --model, {TINY_LR} for the tiny model"))
    lr_schedule: str | None = field(default=None, metadata=_help(
        "learning rate over the steps: constant, linear (to 0 at the end: TRL's default), cosine (to 0); "
        f"none: constant with --model, {TINY_LR_SCHEDULE} for the tiny model",
        choices=LR_SCHEDULE_NAMES))
    warmup_steps: int = field(default=0, metadata=_help(
        "steps over which the learning rate rises linearly from 0 before --lr-schedule takes the rest "
        "(Hugging Face's warmup; TRL's warmup_steps)"))
    beta: float = field(default=0.04, metadata=_help("KL coefficient (paper 0.04); 0 loads no reference model"))
    kl_estimator: str = field(default="k3", metadata=_help(
        "KL estimator in the loss (k3: the paper's; full: the exact KL of the whole next-token distributions, "
        "no sampling noise, the reference's forward in every update pass)", choices=KL_ESTIMATOR_NAMES))
    eps_low: float = field(default=0.2, metadata=_help("clip range below: ratio >= 1 - eps_low"))
    eps_high: float | None = field(default=None, metadata=_help(
        "clip range above (DAPO clip-higher, e.g. 0.28); none: eps_low"))
    ratio_level: str = field(default="token", metadata=_help(
        "importance ratio per token (GRPO) or per sequence (GSPO)", choices=RATIO_LEVEL_NAMES))
    aggregation: str = field(default="sequence-mean", metadata=_help(
        "loss normaliser: sequence-mean (paper), token-mean (DAPO), constant (Dr. GRPO); verl's token-sum, "
        "seq-mean-token-sum, seq-mean-token-sum-norm", choices=AGGREGATION_NAMES))
    loss_constant: float | None = field(default=None, metadata=_help(
        "normaliser per sequence for aggregation=constant; none: max_new_tokens"))
    reward_scale: str = field(default="group", metadata=_help(
        "divide centred rewards by the group std (paper), the batch std, or none (Dr. GRPO)", choices=REWARD_SCALE_NAMES))
    dynamic_sampling: bool = field(default=False, metadata=_help(
        "DAPO: drop groups whose rewards are all equal (--env: whose sampled tokens all have advantage 0) and "
        "sample more prompts (--env: reset seeds) to refill the batch"))
    max_resample: int = field(default=3, metadata=_help("dynamic sampling: extra generation rounds per step at most"))
    mask_truncated: bool = field(default=False, metadata=_help(
        "completions that hit max_new_tokens without EOS get no loss (DAPO overlong filtering)"))
    truncated_reward: float | None = field(default=None, metadata=_help(
        "completions that hit max_new_tokens without EOS score this total reward (and this from each reward "
        "function) instead of what their text scored, e.g. 0: an answer cut off is no answer; none: scored as "
        "they are (single-turn; --env episodes use --truncated)"))
    mu: int = field(default=1, metadata=_help("policy updates per generation batch (paper's mu)"))
    ref_reset_every: int = field(default=0, metadata=_help(
        "iterative GRPO: reset the reference to the policy every R steps; 0: never"))
    entropy_coef: float = field(default=0.0, metadata=_help("entropy bonus coefficient (0: only logged)"))
    # --- algorithm menu (docs/algorithms.md; every name is a registry entry of grpo.core) ----
    advantage_estimator: str = field(default="grpo", metadata=_help(
        "outcome advantages: grpo (paper), rloo, reinforce++, reinforce++-baseline, remax (one greedy completion "
        "per prompt as baseline), opo, grpo-passk, gdpo (each reward normalised in its group, then summed)",
        choices=ADVANTAGE_ESTIMATOR_NAMES))
    policy_loss: str = field(default="clip", metadata=_help(
        "policy surrogate: clip (paper), clip-higher, dual-clip, gspo, cispo, gmpo, sapo, clip-cov, kl-cov, "
        "dppo-tv, dppo-kl", choices=POLICY_LOSS_NAMES))
    policy_loss_args: list[str] | None = field(default=None, metadata=_help(
        "constants of the policy loss as NAME=VALUE (fields of grpo.core.PolicyLossParams, e.g. "
        "sapo_tau_neg=1.05 dual_clip_c=3); none: each paper's"))
    token_selection: str = field(default="all", metadata=_help(
        "tokens the policy gradient trains on: all, or top-entropy (the top_entropy_rho share of the batch's "
        "tokens with the highest entropy, arXiv 2506.01939)", choices=TOKEN_SELECTION_NAMES))
    top_entropy_rho: float = field(default=0.2, metadata=_help("token_selection top-entropy: share of tokens kept"))
    rollout_correction: str = field(default="none", metadata=_help(
        "importance-sampling correction between the sampling engine's log-probs and the trainer's: token- or "
        "sequence-level, truncate (TIS) or mask (MIS/IcePop); acts with engines that return log-probs (vllm)",
        choices=ROLLOUT_CORRECTION_NAMES))
    rollout_correction_cap: float = field(default=3.0, metadata=_help(
        "rollout_correction: ratios above this are truncated to it, or masked (below 1/cap too)"))
    off_policy_mask_delta: float | None = field(default=None, metadata=_help(
        "DeepSeek-V3.2 off-policy sequence masking: drop sequences with negative advantage whose mean log-ratio "
        "of the sampling policy to the current one exceeds this; none: off"))
    max_grad_norm: float | None = field(default=1.0, metadata=_help("gradient clipping; none: off"))
    nonfinite_limit: int = field(default=20, metadata=_help(
        "a non-finite loss or gradient skips the update; this many in a row stop the run"))
    reward_failure: str = field(default="raise", metadata=_help(
        "when a reward function raises, hangs or returns NaN/inf: raise (an error naming it and the "
        "sample), zero (score the sample 0), drop (leave its group out of the update)",
        choices=["raise", "zero", "drop"]))
    reward_timeout_s: float | None = field(default=60.0, metadata=_help(
        "seconds a reward function may take for one batch; none: no limit"))
    optimizer: str = field(default="adamw", metadata=_help(
        "adamw; sgd (momentum 0.9: steps linear in the gradients, for checking that two set-ups give the same "
        "gradients, which Adam's division by their running size turns into +-lr steps where they are near zero)",
        choices=OPTIMIZER_NAMES))
    weight_decay: float = field(default=0.0, metadata=_help("weight decay (AdamW's decoupled; SGD's L2)"))
    # --- scale out (docs/scale-out.md) -------------------------------------------------------
    num_processes: int = field(default=1, metadata=_help(
        "processes to launch through accelerate (one per GPU; on CPU, gloo); ignored inside a launched run"))
    accelerate_config: str | None = field(default=None, metadata=_help(
        "accelerate config file for the launch (FSDP, DeepSpeed: examples/accelerate/); none: DDP"))
    mixed_precision: str = field(default="no", metadata=_help(
        "autocast forward passes in bf16 or fp16 (weights stay float32; fp16 needs CUDA)", choices=MIXED_PRECISION_NAMES))
    gradient_checkpointing: bool = field(default=False, metadata=_help(
        "recompute each layer's activations in the backward pass (less memory, about 30%% more time)"))
    adapter: str | None = field(default=None, metadata=_help(
        "train peft adapters instead of all weights: lora, dora, rslora; the reference is the base "
        "model with adapters off (no second copy); none: full fine-tuning", choices=ADAPTER_NAMES))
    lora_r: int = field(default=16, metadata=_help("adapter rank"))
    lora_alpha: float | None = field(default=None, metadata=_help("adapter scaling alpha; none: 2 x lora_r"))
    lora_target_modules: list[str] | None = field(default=None, metadata=_help(
        "module names to adapt (e.g. q_proj v_proj); none: every linear layer but the output head"))
    save_merged: bool = field(default=False, metadata=_help(
        "adapter runs: also save the merged model as a normal model folder (final-merged/)"))
    vllm_gpu_memory_utilization: float = field(default=0.3, metadata=_help(
        "generation vllm: share of GPU memory the engine may take (the rest trains)"))
    vllm_max_model_len: int | None = field(default=None, metadata=_help(
        "generation vllm: context length of the engine; none: the model's"))
    # --- run ---------------------------------------------------------------------------------
    seed: int = field(default=0, metadata=_help("seed for prompts order, sampling and init"))
    out: str = field(default="runs/llm", metadata=_help("run folder: metrics.jsonl, samples.jsonl, checkpoints, final model"))
    log_every: int = field(default=1, metadata=_help("write metrics every N steps"))
    log_samples: int = field(default=4, metadata=_help("completions per logged step written to samples.jsonl"))
    samples_every: int = field(default=10, metadata=_help("write sample completions every N steps"))
    eval_every: int = field(default=0, metadata=_help("greedy accuracy on eval_split every N steps; 0: only before/after"))
    save_every: int = field(default=0, metadata=_help("checkpoint every N steps; 0: only the final model"))
    time_limit: float | None = field(default=None, metadata=_help(
        "minutes the whole run may take, from the process's start: training stops before a step that would "
        "leave too little time (the slowest of the last 3 steps, a due evaluation, the final evaluation); "
        "none: run every step"))
    keep_checkpoints: int = field(default=2, metadata=_help("keep the last N checkpoints"))
    resume: bool = field(default=False, metadata=_help("continue the run in `out` from its last checkpoint"))
    overwrite: bool = field(default=False, metadata=_help("replace a run already in `out`"))
    report_to: list[str] | None = field(default=None, metadata=_help(
        "trackers for the metrics: tensorboard, wandb, trackio, mlflow (each local/offline by default), "
        "or none; default: tensorboard when installed"))
    tensorboard: bool = field(default=True, metadata=_help(
        "deprecated, use --report-to: false drops TensorBoard from the trackers"))
    progress: bool = field(default=True, metadata=_help("show a progress bar"))

    def __post_init__(self) -> None:
        # The tiny model's presets apply to it given by path too (its folder has tiny_info.json).
        if self.env == "guess-number" and self.model is None:
            self.model = GUESS_MODEL  # (the other presets come with with_presets: given options win)
        guess = self.model == GUESS_MODEL or (self.model is not None and Path(self.model).resolve() == GUESS_FOLDER)
        if guess:
            for name in ("lr", "lr_schedule", "max_new_tokens", "threads"):
                if getattr(self, name) is None:
                    setattr(self, name, GUESS_PRESETS[name])
        tiny = self.model is None or (Path(self.model) / "tiny_info.json").is_file()
        if self.lr is None:
            self.lr = TINY_LR if tiny else 1e-6
        if self.lr_schedule is None:
            self.lr_schedule = TINY_LR_SCHEDULE if tiny else "constant"
        if self.max_new_tokens is None:
            self.max_new_tokens = TINY_MAX_NEW_TOKENS if tiny else 256
        checks = {
            "steps": self.steps >= 0, "prompts_per_step": self.prompts_per_step >= 1,
            "group_size": self.group_size >= 2, "max_new_tokens": self.max_new_tokens >= 1,
            "temperature": self.temperature > 0, "top_p": 0 < self.top_p <= 1, "top_k": self.top_k >= 0,
            "lr": self.lr > 0, "warmup_steps": 0 <= self.warmup_steps and (self.steps == 0 or self.warmup_steps < self.steps),
            "beta": self.beta >= 0, "eps_low": 0 < self.eps_low < 1,
            "eps_high": self.eps_high is None or self.eps_high > 0, "mu": self.mu >= 1,
            "ref_reset_every": self.ref_reset_every >= 0, "max_resample": self.max_resample >= 0,
            "micro_batch": self.micro_batch is None or self.micro_batch >= 1,
            "log_every": self.log_every >= 1, "samples_every": self.samples_every >= 1,
            "eval_every": self.eval_every >= 0, "save_every": self.save_every >= 0,
            "time_limit": self.time_limit is None or self.time_limit > 0,
            "keep_checkpoints": self.keep_checkpoints >= 1, "eval_limit": self.eval_limit >= 1,
            "eval_holdout": self.eval_holdout >= 0 and (self.eval_holdout < 1 or self.eval_holdout == int(self.eval_holdout)),
            "loss_constant": self.loss_constant is None or self.loss_constant > 0,
            "max_grad_norm": self.max_grad_norm is None or self.max_grad_norm > 0,
            "truncated_reward": self.truncated_reward is None or math.isfinite(self.truncated_reward),
            "threads": self.threads is None or self.threads >= 1,
            "nonfinite_limit": self.nonfinite_limit >= 1,
            "reward_failure": self.reward_failure in ("raise", "zero", "drop"),
            "reward_timeout_s": self.reward_timeout_s is None or self.reward_timeout_s > 0,
            "max_turns": self.max_turns >= 1, "truncated": self.truncated in ("keep", "penalize", "mask"),
            "max_episode_tokens": self.max_episode_tokens is None or self.max_episode_tokens >= 2,
            "env_advantage": self.env_advantage in ("outcome", "turn"), "env_gamma": 0 <= self.env_gamma <= 1,
            "env_failure": self.env_failure in ("raise", "zero", "drop"),
            "tool_timeout_s": self.tool_timeout_s is None or self.tool_timeout_s > 0,
            "env_eval_episodes": self.env_eval_episodes >= 0, "env_feedback": self.env_feedback in ("show", "hide"),
            "top_entropy_rho": 0 < self.top_entropy_rho <= 1, "rollout_correction_cap": self.rollout_correction_cap > 1,
            "off_policy_mask_delta": self.off_policy_mask_delta is None or self.off_policy_mask_delta >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid GRPOConfig value(s): " + ", ".join(f"{b}={getattr(self, b)!r}" for b in bad)
                             + " (see --help for the allowed range)")
        from grpo.core import (AGGREGATIONS, KL_NAMES, OUTCOME_ESTIMATORS, POLICY_LOSSES, RATIO_LEVELS, REWARD_SCALES,
                               ROLLOUT_CORRECTIONS, TOKEN_SELECTIONS)

        if self.kl_estimator not in KL_NAMES:
            raise ValueError(f"kl_estimator={self.kl_estimator!r} unknown; choose one of {list(KL_NAMES)}")
        for name, registry in (("ratio_level", RATIO_LEVELS),
                               ("aggregation", AGGREGATIONS), ("advantage_estimator", OUTCOME_ESTIMATORS),
                               ("policy_loss", POLICY_LOSSES), ("token_selection", TOKEN_SELECTIONS),
                               ("rollout_correction", ROLLOUT_CORRECTIONS)):
            if getattr(self, name) not in registry:
                raise ValueError(f"{name}={getattr(self, name)!r} unknown; choose one of {registry.names()}")
        from grpo.core import parse_loss_args

        parse_loss_args(self.policy_loss_args)  # a bad NAME=VALUE fails here, in one line
        if self.generation not in GENERATION_NAMES:
            raise ValueError(f"generation={self.generation!r} unknown; choose one of {list(GENERATION_NAMES)}")
        if self.lr_schedule not in LR_SCHEDULE_NAMES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r} unknown; choose one of {list(LR_SCHEDULE_NAMES)}")
        if self.reward_scale not in REWARD_SCALES:
            raise ValueError(f"reward_scale={self.reward_scale!r} unknown; choose one of {list(REWARD_SCALES)}")
        scale = {"num_processes": self.num_processes >= 1, "lora_r": self.lora_r >= 1,
                 "lora_alpha": self.lora_alpha is None or self.lora_alpha > 0,
                 "vllm_gpu_memory_utilization": 0 < self.vllm_gpu_memory_utilization <= 1,
                 "vllm_max_model_len": self.vllm_max_model_len is None or self.vllm_max_model_len >= 1}
        bad = [name for name, ok in scale.items() if not ok]
        for name, value, names in (("mixed_precision", self.mixed_precision, MIXED_PRECISION_NAMES),
                                   ("adapter", self.adapter, ADAPTER_NAMES + (None,))):
            if value not in names:
                bad.append(name)
        if bad:
            raise ValueError("invalid GRPOConfig value(s): " + ", ".join(f"{b}={getattr(self, b)!r}" for b in bad)
                             + " (see --help for the allowed range)")
        if self.mixed_precision != "no" and self.dtype != "float32":
            raise ValueError(f"mixed_precision={self.mixed_precision} keeps float32 weights and autocasts; "
                             f"dtype={self.dtype} would be cast twice: use dtype float32")
        if self.save_merged and not self.adapter:
            raise ValueError("save_merged applies to adapter runs (--adapter lora): the final model is already merged")
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other: pick one")
        from grpo.utils.trackers import check_report_to

        check_report_to(self.report_to)  # a tracker that is not installed: refused before anything loads
        from grpo.llm.data.rewards.plugins import parse_spec

        for spec in self.reward or []:
            parse_spec(spec)  # a weight that is not a finite number fails here, before any loading

    @property
    def batch_size(self) -> int:
        """Sequences per step: prompts_per_step x group_size."""
        return self.prompts_per_step * self.group_size
