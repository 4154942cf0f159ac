"""Sampling: prompts -> G completions each (engines: cached, hf, vllm), per-prompt seeding, scoring -> one Batch."""
