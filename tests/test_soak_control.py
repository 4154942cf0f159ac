"""Soak test: a long classic-control run keeps a flat memory profile (run with -m slow)."""

import numpy as np
import pytest

from grpo.control.train import RunConfig, algo_config, train
from grpo.utils.runtime import current_rss_mb


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_long_run_memory_stays_flat(tmp_path, algo):
    samples: list[tuple[int, float]] = []
    run = RunConfig(env="CartPole-v1", total_steps=300_000, eval_every=25_000, checkpoint_every=5, progress=False)
    train(algo, run, algo_config(algo, run.env), tmp_path / algo,
          on_iteration=lambda steps: samples.append((steps, current_rss_mb())))
    rss = np.array([m for _, m in samples])
    # Compare the second quarter with the last: after warm-up, growth must stay within noise.
    q = len(rss) // 4
    early, late = np.median(rss[q:2 * q]), np.median(rss[-q:])
    assert late - early < 20, f"RSS grew from {early:.1f} MiB to {late:.1f} MiB"
