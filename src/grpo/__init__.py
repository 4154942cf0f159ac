"""grpo-lab: Group Relative Policy Optimization (DeepSeekMath, arXiv 2402.03300) and PPO.

Layout (dependencies point one way, core <- control, llm <- experiments <- cli):
  grpo.core         pure tensor math shared by every trainer (advantages, losses, KL)
  grpo.control      gymnasium trainers: GRPO and PPO
  grpo.llm          Hugging Face causal-LM trainers: GRPO and PPO
  grpo.experiments  GRPO vs PPO comparisons, tables and plots
"""

__version__ = "0.1.0"
