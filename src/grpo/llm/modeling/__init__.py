"""Hugging Face plumbing: loading models, log-probs, activation checkpointing, adapters (LoRA), the built-in tiny model."""
