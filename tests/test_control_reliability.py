"""Crashes and numerical faults: SIGKILL mid-run and mid-checkpoint, NaN rewards."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import gymnasium as gym
import pytest
import torch

from grpo.control.train import RunConfig, algo_config, train
from grpo.errors import NonFiniteError
from grpo.utils.io import AtomicDir, load_tensors, read_json, read_jsonl, resolve_dir
from grpo.utils.optim import GuardedStep, make_optimizer

TRAIN_ARGS = ["--algo", "grpo", "--env", "CartPole-v1", "--seed", "3", "--total-steps", "6000",
              "--eval-every", "2000", "--eval-episodes", "2", "--checkpoint-every", "1", "--progress", "false"]


def grpo_cmd(out, *extra):
    return [sys.executable, "-m", "grpo", "train", *TRAIN_ARGS, "--out", str(out), *extra]


def assert_same_final_run(a, b):
    wa, wb = load_tensors(a / "checkpoint" / "model.safetensors"), load_tensors(b / "checkpoint" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ea, eb = read_jsonl(a / "eval.jsonl"), read_jsonl(b / "eval.jsonl")
    assert [(e["env_steps"], e["returns"]) for e in ea] == [(e["env_steps"], e["returns"]) for e in eb]
    ma, mb = read_jsonl(a / "metrics.jsonl"), read_jsonl(b / "metrics.jsonl")
    assert [m["env_steps"] for m in ma] == [m["env_steps"] for m in mb]  # nothing lost, nothing twice


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    subprocess.run(grpo_cmd(out), check=True, capture_output=True, timeout=300)
    return out


def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path, reference_run):
    out = tmp_path / "run"
    proc = subprocess.Popen(grpo_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        ckpt = resolve_dir(out / "checkpoint")
        if ckpt is not None and (ckpt / "state.json").exists() and read_json(ckpt / "state.json")["env_steps"] >= 1500:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = read_json(resolve_dir(out / "checkpoint") / "state.json")["env_steps"]
    assert killed_at < 6000, "the run finished before it could be killed"
    subprocess.run(grpo_cmd(out, "--resume"), check=True, capture_output=True, timeout=300)
    assert_same_final_run(out, reference_run)


KILL_IN_CHECKPOINT = textwrap.dedent("""
    import os, signal, sys
    import grpo.control.train as T
    from grpo.cli import main
    real, calls = T.save_tensors, {"n": 0}
    def save_then_die(path, tensors):
        calls["n"] += 1
        if calls["n"] == 4:  # the 4th checkpoint: die with a half-written weights file
            open(path, "wb").write(b"half a file")
            os.kill(os.getpid(), signal.SIGKILL)
        real(path, tensors)
    T.save_tensors = save_then_die
    sys.exit(main(sys.argv[1:]))
""")


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, reference_run):
    out = tmp_path / "run"
    script = tmp_path / "die.py"
    script.write_text(KILL_IN_CHECKPOINT)
    result = subprocess.run([sys.executable, str(script), "train", *TRAIN_ARGS, "--out", str(out)],
                            capture_output=True, timeout=300)
    assert result.returncode == -signal.SIGKILL
    ckpt = resolve_dir(out / "checkpoint")
    assert read_json(ckpt / "state.json")["iteration"] == 3  # the last complete one
    load_tensors(ckpt / "model.safetensors")  # loads: not the half-written file
    subprocess.run(grpo_cmd(out, "--resume"), check=True, capture_output=True, timeout=300)
    assert_same_final_run(out, reference_run)
    assert not (out / ".checkpoint.tmp").exists()


def test_crash_between_renames_falls_back_to_the_old_checkpoint(tmp_path):
    with AtomicDir(tmp_path / "ckpt") as d:
        (d / "v").write_text("1")
    os.replace(tmp_path / "ckpt", tmp_path / ".ckpt.old")  # as if killed between the two renames
    assert (resolve_dir(tmp_path / "ckpt") / "v").read_text() == "1"
    with AtomicDir(tmp_path / "ckpt") as d:
        (d / "v").write_text("2")
    assert (resolve_dir(tmp_path / "ckpt") / "v").read_text() == "2"
    assert not (tmp_path / ".ckpt.old").exists()


def test_guarded_step_skips_non_finite_updates_and_gives_up_after_the_limit():
    layer = torch.nn.Linear(2, 1)
    before = [p.detach().clone() for p in layer.parameters()]
    step = GuardedStep(torch.optim.SGD(layer.parameters(), lr=0.1), max_grad_norm=1.0, limit=3)
    x = torch.ones(1, 2)
    assert not torch.isfinite(step(layer(x).sum() * float("nan")))
    assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters()))  # untouched
    step(layer(x).sum())  # a good step resets the streak
    assert step.skipped_in_a_row == 0 and step.skipped_total == 1
    step(layer(x).sum() * float("inf"))
    step(layer(x).sum() * float("nan"))
    with pytest.raises(NonFiniteError, match="3 updates in a row"):
        step(layer(x).sum() * float("nan"))


def test_sgd_steps_are_linear_in_the_gradient_where_adamw_is_not():
    """--optimizer sgd: a gradient scaled by s moves the weights s times as far (momentum 0.9 kept as state);
    AdamW's first step is about lr x sign(gradient) whatever its size. Unknown names are refused in one line."""
    moves = {}
    for name in ("sgd", "adamw"):
        for scale in (1e-6, 1e-3):
            w = torch.nn.Parameter(torch.zeros(3))
            opt = make_optimizer(name, [w], lr=0.1)
            w.grad = torch.tensor([1.0, -2.0, 0.5]) * scale
            opt.step()
            moves[name, scale] = w.detach().clone()
            if name == "sgd":
                assert opt.defaults["momentum"] == 0.9 and "momentum_buffer" in opt.state[w]  # state to resume
    torch.testing.assert_close(moves["sgd", 1e-3], 1000 * moves["sgd", 1e-6])
    for scale in (1e-6, 1e-3):  # a thousandfold gradient, the same step: -lr x sign (up to Adam's eps 1e-8)
        torch.testing.assert_close(moves["adamw", scale], torch.tensor([-0.1, 0.1, -0.1]), atol=5e-3, rtol=0)
    with pytest.raises(ValueError, match="unknown optimizer 'lion': use one of adamw, sgd"):
        make_optimizer("lion", [torch.nn.Parameter(torch.ones(1))], 0.1)
    from grpo.llm.config import OPTIMIZER_NAMES
    from grpo.utils.optim import OPTIMIZERS

    assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES  # the CLI's choices, spelled out so --help does not import torch


class NaNRewardAfter(gym.Wrapper):
    """CartPole whose rewards turn NaN once the process has taken ``after`` steps."""

    steps = 0

    def __init__(self, after: int):
        super().__init__(gym.make("CartPole-v1", disable_env_checker=True))
        self.after = after

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        NaNRewardAfter.steps += 1
        return obs, float("nan") if NaNRewardAfter.steps > self.after else r, term, trunc, info


def test_nan_rewards_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path):
    gym.register("grpo-test/NaNReward-v0", entry_point=lambda: NaNRewardAfter(1500), max_episode_steps=200)
    try:
        NaNRewardAfter.steps = 0
        run = RunConfig(env="grpo-test/NaNReward-v0", total_steps=50_000, eval_every=0, checkpoint_every=1,
                        progress=False, nonfinite_limit=5)
        with pytest.raises(NonFiniteError, match="non-finite"):
            train("grpo", run, algo_config("grpo", run.env, {"groups": 1, "group_size": 4, "epochs": 2}), tmp_path / "run")
        weights = load_tensors(resolve_dir(tmp_path / "run" / "checkpoint") / "model.safetensors")
        assert all(torch.isfinite(w).all() for w in weights.values())
        assert read_jsonl(tmp_path / "run" / "metrics.jsonl")  # iterations before the fault were logged
    finally:
        gym.registry.pop("grpo-test/NaNReward-v0", None)
