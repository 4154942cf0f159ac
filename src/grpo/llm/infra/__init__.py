"""Where and how a run executes: distributed runtime, run folder and checkpoints, logs, learning-rate schedules, the code sandbox."""
