"""The GRPO vs PPO memory report: medians, computed model state and ratios from synthetic results."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"llm_memory_{name}", ROOT / "benchmarks" / "llm_memory" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(system, seed, peak, params, acc=0.4):
    return {"model": "tiny", "system": system, "seed": seed, "steps": 10, "peak_rss_mb": peak, "floor_rss_mb": 300.0,
            "median_step_s": 0.5, "params": params, "loadavg_1m": [1.0, 2.0], "accuracy_before": 0.3,
            "accuracy_after": acc, "curve": [{"step": 0, "wall_s": 0.0, "accuracy": 0.3},
                                             {"step": 10, "wall_s": 5.0, "accuracy": acc}]}


def test_report_medians_model_state_and_ratios(tmp_path):
    plot = _load("plot")
    P = 2**20  # parameters: 16 MiB trained, 4 MiB frozen
    grpo = {"policy": P, "value_trained": 0, "reference": P}
    ppo = {"policy": P, "value_trained": P, "reference": P}
    rows = [_row("grpo", s, peak, grpo) for s, peak in enumerate((400, 500, 450))]
    rows += [_row("ppo", s, peak, ppo) for s, peak in enumerate((800, 700, 900))]
    assert plot.model_state_mb(grpo) == pytest.approx(20.0) and plot.model_state_mb(ppo) == pytest.approx(36.0)
    summary = plot.summarise(rows)
    assert summary["tiny"]["grpo"]["peak_rss_mb"] == 450 and summary["tiny"]["ppo"]["above_floor_mb"] == 500
    text = plot.report(summary)
    assert "| grpo / ppo | 0.56 | 0.30 | 0.56 | 1.00 |" in text  # 450/800, 150/500, 20/36, same s/step
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    import sys

    argv, sys.argv = sys.argv, ["plot.py", str(results), "--out", str(tmp_path / "out")]
    try:
        plot.main()
    finally:
        sys.argv = argv
    for name in ("report.md", "summary.json", "accuracy.png", "accuracy.svg", "memory.png", "memory.svg"):
        assert (tmp_path / "out" / name).exists(), name


def test_launcher_sizes_the_100m_model_and_shares_options():
    run = _load("run")
    c = run.LLAMA_100M
    h, f, n, vocab = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], 99
    params = n * (4 * h * h + 3 * h * f + 2 * h) + 2 * vocab * h + h  # untied embeddings, RMSNorm weights
    assert 95e6 < params < 105e6
    assert {a for a, _ in run.SYSTEMS.values()} == {"grpo", "ppo"}
    assert set(run.COMMON["tiny"]) >= {"prompts_per_step", "group_size", "max_new_tokens", "lr", "beta"}
