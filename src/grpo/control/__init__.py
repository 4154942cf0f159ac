"""Classic control (gymnasium): GRPO, PPO and the article's naive variant."""
