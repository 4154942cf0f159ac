"""Setting up and running a GRPO training run from a GRPOConfig (what ``grpo llm train`` calls)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from grpo.llm.algos import build_trainer
from grpo.llm.checkpoint import load_trainer_state, prepare_run_dir, save_checkpoint, save_model
from grpo.llm.config import GRPOConfig
from grpo.llm.data import default_rewards, load_rows
from grpo.llm.evaluation import greedy_accuracy
from grpo.llm.models import frozen_copy, load_model, load_tokenizer, pick_device
from grpo.llm.rewards import RewardSet, SequenceClassifierReward
from grpo.llm.runlog import RunLog
from grpo.llm.trainer import sample_records
from grpo.utils.config import to_dict
from grpo.utils.io import write_json
from grpo.utils.runtime import peak_rss_mb, seed_everything


def build_rewards(cfg: GRPOConfig, device: torch.device) -> RewardSet:
    """The run's rewards: --reward names (or the task's own), plus the reward model if given."""
    specs = cfg.reward if cfg.reward is not None else list(default_rewards(cfg.task) or [])
    extra = {"model": SequenceClassifierReward(cfg.reward_model, device)} if cfg.reward_model else {}
    if not specs and not extra:
        raise ValueError(f"task {cfg.task!r} has no default reward: pass --reward NAME (e.g. math, numeric, format)")
    return RewardSet.from_specs(specs, extra, on_failure=cfg.reward_failure, timeout_s=cfg.reward_timeout_s)


def model_path(cfg: GRPOConfig, log: Callable[[str], None] = print) -> str:
    if cfg.model is not None:
        return cfg.model
    from grpo.llm.tiny import tiny_model_path

    return str(tiny_model_path(log=log))


def train(cfg: GRPOConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run GRPO (PPO for a PPOConfig) as ``cfg`` says; returns (and writes to ``summary.json``) accuracy before/after and timings."""
    out = Path(cfg.out)
    resume_from = prepare_run_dir(out, cfg.resume, cfg.overwrite)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    path = model_path(cfg, log)
    tok = load_tokenizer(path)
    rows = load_rows(cfg.task, cfg.split, cfg.prompt_column)
    eval_rows = load_rows(cfg.task, cfg.eval_split, cfg.prompt_column, cfg.eval_limit) if cfg.eval_split else None
    rewards = build_rewards(cfg, device)
    policy = load_model(str(resume_from or path), cfg.dtype, device)
    ref = None
    if cfg.beta > 0:  # beta = 0 loads no reference model
        saved_ref = resume_from / "reference" if resume_from else None
        ref = frozen_copy(load_model(str(saved_ref), cfg.dtype, device)) if saved_ref and saved_ref.exists() else (
            frozen_copy(load_model(path, cfg.dtype, device)) if resume_from else frozen_copy(policy))
    trainer = build_trainer(cfg, policy, tok, rows, rewards, ref, resume_from)  # GRPO, or PPO for a PPOConfig
    state = load_trainer_state(resume_from, trainer.opt) if resume_from else {}
    start = int(state.get("step", 0))
    check = rewards.fns.get(rewards.accuracy_name) if rewards.accuracy_name else None

    def evaluate() -> float | None:
        if eval_rows is None or check is None:
            return None
        return greedy_accuracy(policy, tok, eval_rows, cfg.max_new_tokens, check)

    before = state.get("accuracy_before") if resume_from else evaluate()
    if before is not None:
        log(f"greedy accuracy before: {before:.1%} ({len(eval_rows)} {cfg.eval_split} prompts)")
    write_json(out / "run_config.json", {**to_dict(cfg), "model_path": path})
    runlog = RunLog(out, cfg.tensorboard, start)
    keep_ref = ref if cfg.ref_reset_every else None
    t_train = time.perf_counter()
    bar = _progress(range(start, cfg.steps), cfg.progress)
    try:
        for step in bar:
            metrics, groups = trainer.step(step)
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0:
                metrics["eval/greedy_accuracy"] = evaluate() or float("nan")
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                runlog.log(step, metrics)
            if step % cfg.samples_every == 0:
                runlog.log_samples(sample_records(groups, step, cfg.log_samples))
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(reward=f"{metrics['reward/total/mean']:.3f}", kl=f"{metrics.get('kl/ref', 0):.4f}")
            if cfg.save_every and (step + 1) % cfg.save_every == 0:
                save_checkpoint(out, step + 1, policy, tok, trainer.opt, {"accuracy_before": before}, keep_ref,
                                cfg.keep_checkpoints, trainer.checkpoint_modules())
    finally:
        runlog.close()
    train_s = time.perf_counter() - t_train
    save_model(out / "final", policy, tok)
    after = evaluate()
    if after is not None:
        log(f"greedy accuracy after {cfg.steps} steps: {after:.1%}")
    summary = {"model": path, "steps": cfg.steps, "accuracy_before": before, "accuracy_after": after,
               "train_seconds": round(train_s, 2), "seconds_per_step": round(train_s / max(cfg.steps - start, 1), 4),
               "peak_rss_mb": round(peak_rss_mb(), 1), "final_model": str(out / "final")}
    write_json(out / "summary.json", summary)
    return summary


def _progress(it: range, enabled: bool) -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc="grpo llm", unit="step", initial=0, total=len(it))
