"""``grpo train`` and ``grpo eval`` end to end on a tiny budget."""

import subprocess
import sys

import pytest

from grpo.cli import main
from grpo.utils.io import read_json, read_jsonl

SUMMARY_KEYS = {"algo", "env", "seed", "total_steps", "train_wall_s", "final_eval", "stable_solve_step", "peak_rss_mb"}
METRIC_KEYS = {"env_steps", "train_wall_s", "train/episode_return_mean", "loss/total", "kl/ref",
               "clip/low_frac", "clip/high_frac", "policy/entropy"}


def test_train_then_eval(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--algo", "grpo", "--env", "CartPole-v1", "--seed", "1", "--total-steps", "2500",
            "--eval-every", "1000", "--eval-episodes", "3", "--group-size", "4", "--out", str(out), "--progress", "false"]
    assert main(argv) == 0
    summary = read_json(out / "summary.json")
    assert SUMMARY_KEYS <= set(summary)
    assert summary["algo"] == "grpo" and summary["seed"] == 1 and summary["total_steps"] == 2500
    metrics = read_jsonl(out / "metrics.jsonl")
    assert metrics and all(METRIC_KEYS <= set(m) for m in metrics)
    assert [m["env_steps"] for m in metrics] == sorted(m["env_steps"] for m in metrics)
    evals = read_jsonl(out / "eval.jsonl")
    assert [e["env_steps"] for e in evals] == [1000, 2000, 2500]
    assert all(len(e["returns"]) == 3 for e in evals)
    assert summary["final_eval"] == evals[-1]["eval_return_mean"]
    assert read_json(out / "config.json")["algo_config"]["group_size"] == 4
    assert (out / "checkpoint" / "model.safetensors").exists()

    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--episodes", "3"]) == 0
    assert "mean return" in capsys.readouterr().out

    # A second run into the same folder is refused, with a message that says what to do.
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err


def test_bad_input_is_one_line_error(tmp_path, capsys):
    assert main(["train", "--env", "NoSuchEnv-v0", "--out", str(tmp_path / "x")]) == 2
    assert "unknown gymnasium environment" in capsys.readouterr().err
    assert main(["train", "--algo", "ppo", "--group-size", "4", "--out", str(tmp_path / "y")]) == 2
    assert "--group-size" in capsys.readouterr().err
    assert main(["train", "--group-size", "1", "--out", str(tmp_path / "z")]) == 2
    assert "group_size must be >= 2" in capsys.readouterr().err
    assert main(["train", "--env", "Blackjack-v1", "--out", str(tmp_path / "w")]) == 2
    assert "only flat Box observations" in capsys.readouterr().err


def test_yaml_config_with_flag_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("algo: ppo\nenv: CartPole-v1\ntotal_steps: 512\nn_envs: 2\nn_steps: 64\nbatch_size: 64\nepochs: 2\neval_every: 0\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--n-envs", "4", "--out", str(out), "--progress", "false"]) == 0
    saved = read_json(out / "config.json")
    assert saved["algo"] == "ppo" and saved["algo_config"]["n_envs"] == 4 and saved["algo_config"]["epochs"] == 2


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "grpo", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "train" in result.stdout and "eval" in result.stdout
