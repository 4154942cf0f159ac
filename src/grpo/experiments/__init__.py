"""Experiments: GRPO vs PPO comparisons, tables and plots."""
