"""--report-to: one run-log implementation for classic control and language models, its trackers chosen by
name (TensorBoard by default when installed), a missing one refused in one line before anything loads."""

import importlib.machinery
import sys
import types

import pytest

from grpo.cli import main
from grpo.control.train import RunConfig, algo_config, train
from grpo.utils.io import read_jsonl

TINY = ["train", "--algo", "grpo", "--total-steps", "200", "--eval-every", "100", "--eval-episodes", "1",
        "--progress", "false"]


@pytest.fixture
def fake_wandb(monkeypatch):
    """A ``wandb`` module recording init/log/finish, so that the wiring is shown without the package."""
    calls = []
    wandb = types.ModuleType("wandb")
    wandb.__spec__ = importlib.machinery.ModuleSpec("wandb", None)

    class Run:
        def log(self, metrics, step):
            calls.append(("log", step, dict(metrics)))

        def finish(self):
            calls.append(("finish",))

    def init(**kwargs):
        calls.append(("init", kwargs))
        return Run()

    wandb.init = init
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return calls


def test_classic_control_reports_to_wandb_offline_by_env_step(tmp_path, fake_wandb):
    import os

    out = tmp_path / "run"
    assert main([*TINY, "--out", str(out), "--report-to", "wandb"]) == 0
    assert os.environ["WANDB_MODE"] == "offline"  # never the network unless the user asks
    assert fake_wandb[0][0] == "init" and fake_wandb[0][1]["dir"] == str(out)
    assert fake_wandb[0][1]["config"]["algo"] == "grpo" and fake_wandb[-1] == ("finish",)
    logged = [c for c in fake_wandb if c[0] == "log"]
    metrics = read_jsonl(out / "metrics.jsonl")
    train_steps = [step for _, step, m in logged if "iteration" in m]
    assert train_steps == [r["env_steps"] for r in metrics]
    assert [step for _, step, m in logged if "eval/return_mean" in m] == [r["env_steps"] for r in read_jsonl(out / "eval.jsonl")]
    assert not (out / "tb").exists()  # only the trackers asked for


def test_llm_runlog_reports_to_wandb(tmp_path, fake_wandb):
    from grpo.llm.infra.runlog import RunLog

    log = RunLog(tmp_path, report_to=["wandb"], config={"lr": 0.1})
    log.log(0, {"reward/total/mean": 0.5, "eval/greedy_accuracy": float("nan")})
    log.close()
    assert [c[0] for c in fake_wandb] == ["init", "log", "finish"]
    assert fake_wandb[1] == ("log", 0, {"reward/total/mean": 0.5})  # NaN (not measured) left out
    assert read_jsonl(tmp_path / "metrics.jsonl")[0]["reward/total/mean"] == 0.5


@pytest.mark.parametrize("argv", [TINY, ["llm", "train", "--steps", "1"]])
def test_a_tracker_not_installed_is_one_line_before_anything_loads(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # not installed, whatever this machine has
    out = tmp_path / "run"
    assert main([*argv, "--out", str(out), "--report-to", "tensorboard", "mlflow"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install mlflow" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_unknown_tracker_and_none_with_others_are_refused(tmp_path, capsys):
    assert main([*TINY, "--out", str(tmp_path / "a"), "--report-to", "neptune"]) == 2
    assert "unknown tracker" in capsys.readouterr().err
    assert main([*TINY, "--out", str(tmp_path / "b"), "--report-to", "none", "wandb"]) == 2
    assert "'none' disables every tracker" in capsys.readouterr().err


def test_classic_control_tensorboard_by_default_and_a_resume_logs_each_step_once(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    run = RunConfig(total_steps=2500, eval_every=0, checkpoint_every=2, progress=False)
    cfg = algo_config("grpo", run.env, {"groups": 2, "group_size": 8})

    def die(steps):
        if len(read_jsonl(out / "metrics.jsonl")) == 3:  # 3 iterations logged, the checkpoint at 2
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("grpo", run, cfg, out, on_iteration=die)
    train("grpo", run, cfg, out, resume=True)
    steps = [r["env_steps"] for r in read_jsonl(out / "metrics.jsonl")]
    assert len(steps) > 3 and steps == sorted(set(steps))
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("iteration")] == steps  # the redone iteration 3 once
    # --report-to may change on resume (what is logged, not what is trained)
    assert main(["train", "--out", str(out), "--resume", "--total-steps", "3000", "--report-to", "none",
                 "--progress", "false"]) == 0
