"""SIGKILL an LLM run mid-run, mid-checkpoint and before its first checkpoint; resume; nothing before the
last checkpoint is lost, nothing is logged twice, and the final weights are those of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from grpo.cli import main
from grpo.llm.infra.checkpoint import list_checkpoints
from grpo.utils.io import load_tensors, read_json, read_jsonl

DIE_AT_CALL = Path(__file__).parents[1] / "die_at_call.py"


def train_args(tiny_path, out, steps=10):
    return ["llm", "train", "--model", str(tiny_path), "--steps", str(steps), "--save-every", "2",
            "--prompts-per-step", "4", "--group-size", "4", "--max-new-tokens", "4", "--eval-split", "none",
            "--threads", "1", "--progress", "false", "--tensorboard", "false", "--out", str(out)]


def env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}


@pytest.fixture(scope="module")
def uninterrupted(tiny_path, tmp_path_factory):
    """The 10-step run, uninterrupted, in this process."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main(train_args(tiny_path, out, 10)) == 0
    return out


def assert_same_final_weights(a, b):
    wa, wb = load_tensors(a / "final" / "model.safetensors"), load_tensors(b / "final" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def assert_resumes_to_the_end(tiny_path, out, steps, saved_before):
    """Every step in metrics.jsonl exactly once, and the checkpointed steps' records unchanged."""
    kept = {r["step"]: r for r in read_jsonl(out / "metrics.jsonl", skip_bad_lines=True)}
    subprocess.run([sys.executable, "-m", "grpo", *train_args(tiny_path, out, steps), "--resume"],
                   check=True, capture_output=True, timeout=600, env=env())
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(steps))
    for r in records[:saved_before]:
        assert r == kept[r["step"]]  # logged before the checkpoint: kept, not redone
    assert read_json(out / "summary.json")["steps"] == steps


def test_sigkill_mid_run_then_resume(tiny_path, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "grpo", *train_args(tiny_path, out, 40)], env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list_checkpoints(out)) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = list_checkpoints(out)[-1]
    saved = read_json(last / "trainer_state.json")["step"]
    assert 2 <= saved < 40
    assert_resumes_to_the_end(tiny_path, out, 40, saved)


DIE_IN_CHECKPOINT = textwrap.dedent("""
    import os, signal, sys
    import grpo.llm.infra.checkpoint as C
    from grpo.cli import main
    real, calls = C.torch_save, {"n": 0}
    def save_then_die(path, obj):
        if str(path).endswith("optimizer.pt"):
            calls["n"] += 1
            if calls["n"] == 2:  # the second checkpoint: die with half an optimizer file written
                open(path, "wb").write(b"half")
                os.kill(os.getpid(), signal.SIGKILL)
        real(path, obj)
    C.torch_save = save_then_die
    sys.exit(main(sys.argv[1:]))
""")


def test_sigkill_while_writing_a_checkpoint(tiny_path, tmp_path, uninterrupted):
    out = tmp_path / "run"
    script = tmp_path / "die.py"
    script.write_text(DIE_IN_CHECKPOINT)
    result = subprocess.run([sys.executable, str(script), *train_args(tiny_path, out)], env=env(),
                            capture_output=True, timeout=600)
    assert result.returncode == -signal.SIGKILL
    ckpts = list_checkpoints(out)
    assert [c.name for c in ckpts] == ["checkpoint-000002"]  # the half-written one is not listed
    assert_resumes_to_the_end(tiny_path, out, 10, 2)
    assert_same_final_weights(out, uninterrupted)


def test_sigkill_before_the_first_checkpoint_then_resume_starts_again_clean(tiny_path, tmp_path, uninterrupted):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, str(DIE_AT_CALL), "grpo.llm.run:save_checkpoint", "1",
                             *train_args(tiny_path, out)], env=env(), capture_output=True, timeout=600)
    assert result.returncode == -signal.SIGKILL
    assert not list_checkpoints(out) and [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1]
    assert_resumes_to_the_end(tiny_path, out, 10, 0)
    assert_same_final_weights(out, uninterrupted)


def test_a_resumed_runlog_holds_each_step_once_in_every_log(tmp_path):
    """Steps logged after the checkpoint by the run that died are dropped: JSON lines and TensorBoard."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from grpo.llm.infra.runlog import RunLog

    log = RunLog(tmp_path, tensorboard=True, start_step=0)
    for step in range(6):  # the run that dies after step 5, its last checkpoint at 3 steps done
        log.log(step, {"reward/total/mean": step})
        log.log_samples([{"step": step, "completion": "x"}])
    log.close()
    log = RunLog(tmp_path, tensorboard=True, start_step=3)  # resumed: steps 3.. again
    for step in range(3, 6):
        log.log(step, {"reward/total/mean": 10 + step})
        log.log_samples([{"step": step, "completion": "y"}])
    log.close()
    redone = [0, 1, 2, 13, 14, 15]
    assert [r["reward/total/mean"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == redone
    assert [(r["step"], r["completion"]) for r in read_jsonl(tmp_path / "samples.jsonl")] == [
        (s, "x" if s < 3 else "y") for s in range(6)]
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("reward/total/mean")] == list(enumerate(redone))
