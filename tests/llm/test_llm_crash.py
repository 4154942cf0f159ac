"""SIGKILL an LLM run mid-run and mid-checkpoint; resume; nothing before the last checkpoint is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from grpo.llm.checkpoint import list_checkpoints
from grpo.utils.io import read_json, read_jsonl


def train_args(tiny_path, out, steps=10):
    return ["llm", "train", "--model", str(tiny_path), "--steps", str(steps), "--save-every", "2",
            "--prompts-per-step", "4", "--group-size", "4", "--max-new-tokens", "4", "--eval-split", "none",
            "--threads", "1", "--progress", "false", "--tensorboard", "false", "--out", str(out)]


def env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}


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
    import grpo.llm.checkpoint as C
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


def test_sigkill_while_writing_a_checkpoint(tiny_path, tmp_path):
    out = tmp_path / "run"
    script = tmp_path / "die.py"
    script.write_text(DIE_IN_CHECKPOINT)
    result = subprocess.run([sys.executable, str(script), *train_args(tiny_path, out)], env=env(),
                            capture_output=True, timeout=600)
    assert result.returncode == -signal.SIGKILL
    ckpts = list_checkpoints(out)
    assert [c.name for c in ckpts] == ["checkpoint-000002"]  # the half-written one is not listed
    assert_resumes_to_the_end(tiny_path, out, 10, 2)
