"""Text environments in the gymnasium style: reset(seed) -> (messages, info), step(assistant message) -> (messages, reward, terminated, truncated, info)."""
