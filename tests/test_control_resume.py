"""The classic-control run folder: --overwrite deletes only the run's files, --resume is refused without
a saved run, and a run killed before or after its first checkpoint resumes to exactly the uninterrupted run."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from grpo.cli import main
from grpo.control.train import RunConfig, algo_config, train
from grpo.utils.io import load_tensors, read_json, read_jsonl, resolve_dir

DIE_AT_CALL = Path(__file__).parent / "die_at_call.py"
COMMON = ["--env", "CartPole-v1", "--seed", "3", "--eval-every", "250", "--eval-episodes", "2",
          "--checkpoint-every", "1", "--progress", "false"]
# 4 to 5 iterations each, of a few hundred env steps
ALGO_ARGS = {"grpo": ["--total-steps", "1600", "--groups", "2", "--group-size", "8"],
             "ppo": ["--total-steps", "1280", "--n-envs", "4", "--n-steps", "64", "--epochs", "4"]}
TINY = ["train", "--algo", "grpo", "--total-steps", "200", "--eval-every", "0", "--progress", "false"]


def train_args(algo, out, *extra):
    return ["train", "--algo", algo, *COMMON, *ALGO_ARGS[algo], "--out", str(out), *extra]


def run_cli(out, algo, *extra, die_at=0):
    """``grpo train`` in a subprocess that SIGKILLs itself as its ``die_at``-th checkpoint begins (0: never)."""
    cmd = [sys.executable, str(DIE_AT_CALL), "grpo.control.train:save_checkpoint", str(die_at), *train_args(algo, out, *extra)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def without_wall_time(records):
    return [{k: v for k, v in r.items() if k != "train_wall_s"} for r in records]


def assert_same_run(a: Path, b: Path) -> None:
    """Same final weights, bit for bit, and the same logs line for line (wall times aside)."""
    wa, wb = load_tensors(a / "checkpoint" / "model.safetensors"), load_tensors(b / "checkpoint" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    for name in ("metrics.jsonl", "eval.jsonl"):
        assert without_wall_time(read_jsonl(a / name)) == without_wall_time(read_jsonl(b / name)), name


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_killed_before_and_after_the_first_checkpoint_resumes_to_the_uninterrupted_run(tmp_path, algo):
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert main(train_args(algo, ref)) == 0  # the uninterrupted run, in this process
    # Killed as the first checkpoint begins: an iteration and an evaluation logged, no checkpoint.
    assert run_cli(out, algo, die_at=1).returncode == -signal.SIGKILL
    assert resolve_dir(out / "checkpoint") is None
    assert [m["iteration"] for m in read_jsonl(out / "metrics.jsonl")] == [1] and read_jsonl(out / "eval.jsonl")
    # Resumed (so started again clean), then killed as its third checkpoint begins: logs run past the second.
    assert run_cli(out, algo, "--resume", die_at=3).returncode == -signal.SIGKILL
    assert read_json(resolve_dir(out / "checkpoint") / "state.json")["iteration"] == 2
    assert [m["iteration"] for m in read_jsonl(out / "metrics.jsonl")] == [1, 2, 3]
    result = run_cli(out, algo, "--resume")
    assert result.returncode == 0, result.stderr
    assert_same_run(out, ref)


def test_overwrite_deletes_only_the_runs_files(tmp_path):
    out = tmp_path / "d"
    (out / "docs").mkdir(parents=True)
    (out / "docs" / "thesis.tex").write_text("mine")
    (out / "notes.txt").write_text("mine too")
    run = RunConfig(total_steps=200, eval_every=0, progress=False)
    train("grpo", run, algo_config("grpo", run.env), out)
    (out / ".checkpoint.tmp").mkdir()  # left by a crash while writing a checkpoint
    with pytest.raises(FileExistsError, match="already holds a run"):
        train("grpo", run, algo_config("grpo", run.env), out)
    train("grpo", run, algo_config("grpo", run.env), out, overwrite=True)
    assert (out / "docs" / "thesis.tex").read_text() == "mine" and (out / "notes.txt").read_text() == "mine too"
    assert not (out / ".checkpoint.tmp").exists()
    assert len(read_jsonl(out / "metrics.jsonl")) == 1  # the new run's, not appended to the old one's


def test_out_dot_keeps_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "code.py").write_text("x = 1\n")
    # (no tracker, so that the listing below is the same with or without TensorBoard installed)
    assert main([*TINY, "--out", ".", "--report-to", "none"]) == 0  # a folder with only the user's files takes a fresh run
    assert main([*TINY, "--out", ".", "--overwrite", "--report-to", "none"]) == 0
    assert (tmp_path / "src" / "code.py").read_text() == "x = 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "config.json", "eval.jsonl", "metrics.jsonl",
                                                          "src", "summary.json"]


def test_resume_with_overwrite_is_refused_in_one_line(tmp_path, capsys):
    assert main([*TINY, "--out", str(tmp_path / "d")]) == 0
    before = sorted(p.name for p in (tmp_path / "d").iterdir())
    capsys.readouterr()
    assert main([*TINY, "--out", str(tmp_path / "d"), "--resume", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume and --overwrite" in err
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == before


@pytest.mark.parametrize("folder", ["empty", "user-files", "missing"])
def test_resume_without_a_saved_run_is_refused_in_one_line(tmp_path, capsys, folder):
    out = tmp_path / "d"
    if folder != "missing":
        out.mkdir()
    if folder == "user-files":
        (out / "notes.txt").write_text("mine")
    assert main([*TINY, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out} holds no config.json" in err
    left = sorted(p.name for p in out.iterdir()) if out.exists() else None  # nothing created, nothing deleted
    assert left == {"empty": [], "user-files": ["notes.txt"], "missing": None}[folder]
    assert main([*TINY, "--resume"]) == 2  # and with no --out at all
    assert "--resume needs --out" in capsys.readouterr().err
