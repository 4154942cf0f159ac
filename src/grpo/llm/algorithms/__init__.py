"""Batch -> policy update through grpo.core: GRPO, PPO with its value model, and the registry that builds a run's trainer."""
