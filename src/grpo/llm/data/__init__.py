"""What to train on and how it is scored: tasks (prompt rows) and reward functions."""
