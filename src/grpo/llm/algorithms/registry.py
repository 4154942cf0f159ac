"""The trainer for a run's config: GRPOTrainer for a GRPOConfig, PPOTrainer for a PPOConfig.

Both expose ``opt``, ``step(step) -> (metrics, batch)`` and ``checkpoint_modules()`` (modules saved
in each checkpoint beside the policy), which is all :func:`grpo.llm.run.train` uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from grpo.llm.config import GRPOConfig
from grpo.llm.data.tasks import Row
from grpo.llm.algorithms.ppo import PPOTrainer
from grpo.llm.ppo_config import PPOConfig
from grpo.llm.data.rewards import RewardSet
from grpo.llm.algorithms.grpo import GRPOTrainer


def _grpo(cfg: GRPOConfig, policy: Any, tok: Any, rows: list[Row], rewards: RewardSet, ref: Any | None,
          resume_from: Path | None, optimizer: Any = None, runtime: Any = None) -> GRPOTrainer:
    return GRPOTrainer(cfg, policy, tok, rows, rewards, ref, optimizer, runtime)


def _ppo(cfg: PPOConfig, policy: Any, tok: Any, rows: list[Row], rewards: RewardSet, ref: Any | None,
         resume_from: Path | None, optimizer: Any = None, runtime: Any = None) -> PPOTrainer:
    # PPO builds its own optimizer (policy and value groups) and runs in one process (run.check_scale_out).
    trainer = PPOTrainer(cfg, policy, tok, rows, rewards, ref)
    for name, module in trainer.checkpoint_modules().items():
        if resume_from is not None:
            if not (resume_from / name).exists():
                raise ValueError(f"--resume: {resume_from} holds no {name}/ (was it a GRPO run?)")
            module.load_saved(resume_from / name)
    return trainer


# Config class -> trainer builder; all share (cfg, policy, tokenizer, rows, rewards, ref, resume_from,
# optimizer, runtime); the last two are the prepared optimizer and grpo.llm.infra.distributed's Runtime.
TRAINERS: dict[type, Callable[..., Any]] = {GRPOConfig: _grpo, PPOConfig: _ppo}


def build_trainer(cfg: GRPOConfig, policy: Any, tok: Any, rows: list[Row], rewards: RewardSet, ref: Any | None,
                  resume_from: Path | None = None, optimizer: Any = None, runtime: Any = None) -> Any:
    """The trainer for ``cfg``'s type; on resume, the extra modules are restored from the checkpoint.
    With ``cfg.env``, GRPO on the environment's episodes (:mod:`grpo.llm.algorithms.multiturn`)."""
    if getattr(cfg, "env", None):
        from grpo.llm.algorithms.multiturn import MultiTurnTrainer

        return MultiTurnTrainer(cfg, policy, tok, ref, optimizer, runtime)
    return TRAINERS[type(cfg)](cfg, policy, tok, rows, rewards, ref, resume_from, optimizer, runtime)
