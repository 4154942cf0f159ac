"""Reward functions: plain callables ``fn(prompts, completions, **columns) -> list[float | None]``.

``prompts`` and ``completions`` are lists of strings of equal length (one per sample); every
other dataset column (``answer``, ...) arrives as a keyword list of the same length, and so do
``completion_lengths`` (tokens) and ``max_new_tokens`` (one int). Functions must accept
``**kwargs`` for the columns they ignore. ``None`` means "does not apply to this sample"; it
counts as 0 in the weighted sum and is left out of that function's logged mean.

A *process* reward returns :class:`StepRewards` per sample instead (DeepSeekMath 4.1.3): one
reward per reasoning step and the character offset at which each step ends in the completion.

Built-in rewards are registered by name in :data:`REWARDS`; those that check a final answer are
flagged ``accuracy`` so the trainer can log accuracy from them.
"""

from grpo.llm.data.rewards.base import REWARD_FAILURE_POLICIES, REWARDS, RewardError, RewardFn, RewardSet, StepRewards, parse_reward_spec
from grpo.llm.data.rewards import answer, execution, fmt, length, process  # noqa: F401  (registers built-ins)
from grpo.llm.data.rewards.model import SequenceClassifierReward

__all__ = ["REWARD_FAILURE_POLICIES", "REWARDS", "RewardError", "RewardFn", "RewardSet", "SequenceClassifierReward", "StepRewards", "parse_reward_spec"]
