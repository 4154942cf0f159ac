"""Language models: GRPO and PPO for Hugging Face causal LMs."""
