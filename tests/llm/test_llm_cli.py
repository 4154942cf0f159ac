"""End to end through the ``grpo llm`` CLI on the session's tiny model: files, metrics, resume, errors."""

from __future__ import annotations

import json

import pytest

from grpo.cli import main
from grpo.utils.io import read_jsonl

FAST = ["--prompts-per-step", "2", "--group-size", "4", "--max-new-tokens", "4", "--eval-limit", "8",
        "--progress", "false", "--tensorboard", "false", "--threads", "1"]


def test_train_writes_metrics_samples_checkpoints_and_resumes(tiny_path, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["llm", "train", "--model", str(tiny_path), "--out", str(out), "--save-every", "2", "--steps", "3", *FAST]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "greedy accuracy before" in printed and "greedy accuracy after 3 steps" in printed
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1, 2]
    for key in ("reward/exact/mean", "reward/exact/std", "train/accuracy", "kl/ref", "clip/low_frac", "clip/high_frac",
                "policy/entropy", "completions/mean_length", "groups/zero_std_frac", "time/step_s",
                "time/generation_frac", "time/tokens_per_s", "loss/total"):
        assert key in metrics[0], key
    sample = read_jsonl(out / "samples.jsonl")[0]
    assert {"prompt", "completion", "rewards", "total"} <= set(sample)
    assert (out / "final" / "model.safetensors").exists() and (out / "checkpoint-000002").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and 0.0 <= summary["accuracy_after"] <= 1.0
    assert summary["peak_rss_mb"] > 0 and "peak_gpu_mb" in summary  # None on CPU
    assert f"peak memory: {summary['peak_rss_mb']:,.0f} MiB resident" in printed

    # a second run into the same folder must say what to do
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    # resume from checkpoint-000002 to step 5: steps 2..4 are (re)written once each
    assert main(["llm", "train", "--model", str(tiny_path), "--out", str(out), "--resume", "true",
                 "--save-every", "2", "--steps", "5", *FAST]) == 0
    steps = [m["step"] for m in read_jsonl(out / "metrics.jsonl")]
    assert steps == [0, 1, 2, 3, 4]


def test_train_with_options_beta0_dynamic_sampling_micro_batches(tiny_path, tmp_path):
    out = tmp_path / "run"
    assert main(["llm", "train", "--model", str(tiny_path), "--out", str(out), "--steps", "3", *FAST, "--beta", "0",
                 "--dynamic-sampling", "--micro-batch", "3", "--mu", "2", "--aggregation", "token-mean",
                 "--eps-high", "0.28", "--reward-scale", "none", "--mask-truncated", "--reward", "exact", "digits:0.5",
                 "format:0.1", "length:0.1", "--ref-reset-every", "2"]) == 0
    m = read_jsonl(out / "metrics.jsonl")[-1]
    assert "kl/ref" not in m  # beta = 0 loads no reference model
    assert {"reward/digits/mean", "reward/format/mean", "reward/length/mean"} <= set(m)
    assert m["sampling/rounds"] in {1.0, 2.0, 3.0, 4.0}  # the first round and at most max_resample=3 more


@pytest.mark.parametrize("extra,message", [
    (["--reward", "nope"], "unknown reward 'nope'"),
    (["--group-size", "1"], "group_size=1"),
    (["--task", "missing.jsonl"], "does not exist"),
    (["--reward", "math", "--task", "{data}"], "needs column"),
    (["--max-new-tokens", "100"], "exceeds the model's context"),
])
def test_train_bad_input_is_one_line(tiny_path, tmp_path, capsys, extra, message):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "1+1=", "solution": "2"}\n')
    extra = [e.replace("{data}", str(data)) for e in extra]
    code = main(["llm", "train", "--model", str(tiny_path), "--out", str(tmp_path / "r"), "--steps", "1", *FAST, *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_eval_prints_greedy_accuracy_and_pass_at_k(tiny_path, capsys):
    assert main(["llm", "eval", "--model", str(tiny_path), "--samples", "4", "--limit", "10",
                 "--max-new-tokens", "4", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "greedy accuracy" in out and "pass@1:" in out and "pass@4:" in out
