"""FSDP2 executed: two CPU processes (gloo) shard the model and give the one-process result.

``accelerate launch --config_file examples/accelerate/fsdp.yaml`` on CPU processes: accelerate offers
FSDP on accelerators only, so grpo applies ``fully_shard`` itself (:mod:`grpo.llm.infra.fsdp`). Each
two-process launch costs ~30-60 s on two busy cores: one equality run stays in the default suite,
the kill-and-resume and LoRA runs are slow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from grpo.llm.config import GRPOConfig
from grpo.llm.infra.checkpoint import list_checkpoints
from grpo.llm.infra.fsdp import requested_strategy
from grpo.llm.infra.launch import launch_command
from grpo.llm.run import train
from grpo.utils.io import read_jsonl

REPO = Path(__file__).resolve().parents[2]
FSDP_YAML = str(REPO / "examples" / "accelerate" / "fsdp.yaml")
DIE_AT_CALL = REPO / "tests" / "die_at_call.py"
OPTS = {"steps": 3, "prompts_per_step": 4, "group_size": 4, "micro_batch": 2, "mu": 2, "max_new_tokens": 4,
        "aggregation": "token-mean", "reward_scale": "batch", "eval_split": None, "tensorboard": False,
        "threads": 1, "device": "cpu", "seed": 5, "mixed_precision": "no",
        # SGD with momentum: weights linear in the gradients, so equal gradients give equal weights (AdamW turns
        # float noise on near-zero gradients into steps of +-lr); its momentum is the state a resume restores.
        "optimizer": "sgd", "lr": 0.05}


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def _flags(opts: dict) -> list[str]:
    return [f"--{k.replace('_', '-')}={'none' if v is None else v}" for k, v in opts.items()]


def _launch(tmp_path: Path, out: Path, opts: dict, *prefix: str) -> subprocess.CompletedProcess:
    """Two FSDP2 processes running ``grpo llm train`` (or ``prefix`` + its arguments, e.g. die_at_call)."""
    cmd = launch_command(2, FSDP_YAML, "no", [])[:-2]  # without "-m grpo"
    cmd += [*prefix, "llm", "train"] if prefix else ["-m", "grpo", "llm", "train"]
    return subprocess.run(cmd + ["--out", str(out), *_flags(opts)], capture_output=True, text=True, env=_env(),
                          timeout=600, cwd=tmp_path)


@pytest.fixture(scope="module")
def one_process(tiny_path, tmp_path_factory):
    """The reference: the same run in one process (no checkpoints)."""
    out = tmp_path_factory.mktemp("one") / "run"
    train(GRPOConfig(**OPTS, model=str(tiny_path), out=str(out), progress=False), log=lambda *_: None)
    return out


def _assert_same_weights(a_dir: Path, b_dir: Path, name: str = "model.safetensors") -> None:
    a, b = load_file(a_dir / name), load_file(b_dir / name)
    assert sorted(a) == sorted(b)
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=5e-6, rtol=1e-4, msg=key)


def _same_metric(got, want) -> bool:
    """Equal within float noise; a step that kept no group has no reward mean (NaN) and no gradient norm
    (absent) in either run, which is the same result."""
    if got is None or want is None:
        return got is want
    return got == pytest.approx(want, rel=1e-4, abs=1e-6, nan_ok=True)


def test_fsdp2_on_two_gloo_processes_equals_one_process(tiny_path, tmp_path, one_process):
    """Sharded for real (parameters per process about half, summary says FSDP2), gathered final model and
    per-step metrics equal to one process with the same seed and global batch."""
    proc = _launch(tmp_path, tmp_path / "two", {**OPTS, "model": str(tiny_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    total = summary["trainable_parameters"]
    assert summary["distributed"] == "FSDP2" and summary["processes"] == 2
    assert total / 2 <= summary["parameters_per_process"] < total / 2 + 1000  # dim-0 shards, a little padding
    assert proc.stdout.count("distributed: FSDP2, 2 process(es)") == 1  # the start-up log, once
    state = summary["state_mb_per_process"]  # rank 0's shards: about half of every kind of state
    assert state["gradients"] == pytest.approx(state["parameters"]) and state["optimizer"] == pytest.approx(
        state["parameters"])  # one momentum buffer (AdamW: two moments)
    assert state["parameters"] == pytest.approx(total * 4 / 2**20 / 2, rel=0.01)
    _assert_same_weights(one_process / "final", tmp_path / "two" / "final")
    m1, m2 = read_jsonl(one_process / "metrics.jsonl"), read_jsonl(tmp_path / "two" / "metrics.jsonl")
    assert [m["step"] for m in m2] == [0, 1, 2]
    for x, y in zip(m1, m2):  # same samples (keyed), same gradients (norm before clipping)
        for key in ("reward/total/mean", "completions/mean_length", "policy/grad_norm", "loss/policy", "kl/ref"):
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-6), key


@pytest.mark.slow
def test_fsdp2_sigkill_then_resume_equals_uninterrupted(tiny_path, tmp_path, one_process):
    """Rank 0 is SIGKILLed as it begins writing the second checkpoint; the launcher stops rank 1; --resume
    continues from checkpoint-000001 (gathered full model + optimizer state, loaded back into the shards)."""
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    opts = {**OPTS, "model": str(tiny_path), "save_every": 1}
    died = _launch(tmp_path, out, opts, str(DIE_AT_CALL), "grpo.llm.run:save_checkpoint", "2")
    assert died.returncode != 0
    assert [c.name for c in list_checkpoints(out)] == ["checkpoint-000001"]
    state = torch.load(out / "checkpoint-000001" / "optimizer.pt", weights_only=True)
    assert state["state"] and all(isinstance(k, str) for k in state["state"])  # full tensors by parameter name
    resumed = _launch(tmp_path, out, {**opts, "resume": True})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [m["step"] for m in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2]
    _assert_same_weights(one_process / "final", out / "final")
    model = AutoModelForCausalLM.from_pretrained(out / "final")  # a normal folder, one process
    ref = load_file(one_process / "final" / "model.safetensors")
    got = model.state_dict()
    for key, value in ref.items():
        torch.testing.assert_close(got[key], value, atol=5e-6, rtol=1e-4)


@pytest.mark.slow
def test_fsdp2_lora_with_adapters_off_reference_equals_one_process(tiny_path, tmp_path):
    """LoRA adapters sharded with the frozen base; the reference is the same module with adapters off."""
    opts = {**OPTS, "model": str(tiny_path), "adapter": "lora", "lora_r": 4, "beta": 0.1}
    train(GRPOConfig(**opts, out=str(tmp_path / "one"), progress=False), log=lambda *_: None)
    proc = _launch(tmp_path, tmp_path / "two", opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["distributed"] == "FSDP2"
    _assert_same_weights(tmp_path / "one" / "final", tmp_path / "two" / "final", "adapter_model.safetensors")
    m1, m2 = read_jsonl(tmp_path / "one" / "metrics.jsonl"), read_jsonl(tmp_path / "two" / "metrics.jsonl")
    for x, y in zip(m1, m2):
        assert y["kl/ref"] == pytest.approx(x["kl/ref"], rel=1e-4, abs=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("adapter", [None, "lora"])
def test_fsdp2_exact_kl_equals_one_process(tiny_path, tmp_path, adapter):
    """kl_estimator full under FSDP2: the reference's forward runs inside every micro-batch (collective), its
    logits beside the policy's (sharded weights: the models' own logits, not the chunked head); mu 2 takes
    it twice. With LoRA the reference is the policy's own module with adapters off."""
    opts = {**OPTS, "model": str(tiny_path), "kl_estimator": "full", "beta": 0.2}
    if adapter == "lora":
        opts.update(adapter="lora", lora_r=4)
    train(GRPOConfig(**opts, out=str(tmp_path / "one"), progress=False), log=lambda *_: None)
    proc = _launch(tmp_path, tmp_path / "two", opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["distributed"] == "FSDP2"
    name = "adapter_model.safetensors" if adapter == "lora" else "model.safetensors"
    _assert_same_weights(tmp_path / "one" / "final", tmp_path / "two" / "final", name)
    m1, m2 = read_jsonl(tmp_path / "one" / "metrics.jsonl"), read_jsonl(tmp_path / "two" / "metrics.jsonl")
    assert max(m["kl/ref"] for m in m1) > 0
    for x, y in zip(m1, m2):
        for key in ("kl/ref", "policy/grad_norm", "loss/total"):
            assert _same_metric(y.get(key), x.get(key)), key


@pytest.mark.slow
def test_fsdp2_dynamic_sampling_equals_one_process(tiny_path, tmp_path):
    """Dynamic sampling under FSDP2: the processes keep different numbers of groups (on this seed one runs 3
    micro-batches where the other has 1), so the one with fewer repeats a micro-batch with weight 0 to run as
    many collective passes; the same rounds, metrics and final weights as one process. Without the fill-ins
    the launch hangs."""
    opts = {**OPTS, "model": str(tiny_path), "dynamic_sampling": True, "max_resample": 3, "micro_batch": 4,
            "mu": 1, "steps": 4, "lr": 0.01}  # at 0.05 step 3 keeps no group
    train(GRPOConfig(**opts, out=str(tmp_path / "one"), progress=False), log=lambda *_: None)
    proc = _launch(tmp_path, tmp_path / "two", opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["distributed"] == "FSDP2"
    _assert_same_weights(tmp_path / "one" / "final", tmp_path / "two" / "final")
    m1, m2 = read_jsonl(tmp_path / "one" / "metrics.jsonl"), read_jsonl(tmp_path / "two" / "metrics.jsonl")
    assert max(m["sampling/rounds"] for m in m1) > 1  # resampling happened
    for x, y in zip(m1, m2):
        for key in ("sampling/rounds", "groups/used", "reward/total/mean", "policy/grad_norm", "kl/ref"):
            assert _same_metric(y.get(key), x.get(key)), key


PARITY_ENV = '''
import re


class Parity:
    """1 + seed % 4 turns (so one process's episodes can all end while another's go on); each turn pays 1 for an
    even guess on reset seeds divisible by 3 only (other groups have no spread)."""

    def reset(self, seed=None, options=None):
        self.seed, self.turn = seed, 0
        return [{"role": "user", "content": "Guess my number, 1 to 100."}], {}

    def step(self, message):
        numbers = re.findall(r"[0-9]+", message["content"])
        self.turn += 1
        reward = float(self.seed % 3 == 0 and bool(numbers) and int(numbers[-1]) % 2 == 0)
        done = self.turn > self.seed % 4
        return [] if done else [{"role": "user", "content": "again"}], reward, done, False, {}
'''


@pytest.mark.slow
@pytest.mark.parametrize("env", ["guess-number", "parity_env:Parity"])
def test_fsdp2_multi_turn_equals_one_process(tmp_path, monkeypatch, env):
    """--env under FSDP2: every forward pass is collective, so a turn is played while any process has an
    episode going (one with none samples and drops a turn) and every process evaluates. guess-number: episodes
    of 1-4 turns; Parity with dynamic sampling: episodes of 1-4 turns by reset seed, and a quarter of the groups
    with spread, so the processes keep different numbers of them (rounds, fill-in micro-batches). Without the
    processes' turns kept in step, the Parity launch fails (mismatched collectives). Per step the same episode metrics,
    gradient norm, loss and KL as one process, the same evaluation and final weights (SGD: AdamW would turn
    float noise on the near-zero gradients of layer 0's queries and keys, 1e-7 here, into steps of +-lr)."""
    from grpo.llm.modeling.guess_tiny import guess_model_path

    (tmp_path / "parity_env.py").write_text(PARITY_ENV)
    monkeypatch.syspath_prepend(str(tmp_path))  # the launched processes import it from their working folder
    dynamic = env != "guess-number"
    opts = {"model": str(guess_model_path()), "env": env, "steps": 3 if dynamic else 2, "prompts_per_step": 4,
            "group_size": 3, "micro_batch": 3, "mu": 2, "max_turns": 4, "max_new_tokens": 9, "temperature": 1.0,
            "optimizer": "sgd", "lr": 0.05, "env_advantage": "turn", "env_eval_episodes": 4, "tensorboard": False, "threads": 1,
            "device": "cpu", "seed": 11, "mixed_precision": "no", "dynamic_sampling": dynamic, "max_resample": 3}
    train(GRPOConfig(**opts, out=str(tmp_path / "one"), progress=False), log=lambda *_: None)
    proc = _launch(tmp_path, tmp_path / "two", opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    assert two["distributed"] == "FSDP2"
    assert two["env_eval_after"] == pytest.approx(one["env_eval_after"], rel=1e-4, abs=1e-6)
    _assert_same_weights(tmp_path / "one" / "final", tmp_path / "two" / "final")
    m1, m2 = read_jsonl(tmp_path / "one" / "metrics.jsonl"), read_jsonl(tmp_path / "two" / "metrics.jsonl")
    assert len(m1) == len(m2) == opts["steps"]
    keys = ["episode/return_mean", "episode/turns_mean", "kl/ref", "loss/policy", "policy/grad_norm"]
    for x, y in zip(m1, m2):
        for key in keys + (["sampling/rounds", "groups/used"] if dynamic else ["env/solved"]):
            assert _same_metric(y.get(key), x.get(key)), key
    if dynamic:
        assert max(m["sampling/rounds"] for m in m1) > 1  # resampled


def test_requested_strategy_is_read_from_the_launch_environment():
    assert requested_strategy({}) is None
    assert requested_strategy({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}) == "FSDP2"
    assert requested_strategy({"ACCELERATE_USE_FSDP": "true"}) == "FSDP1"
    assert requested_strategy({"ACCELERATE_USE_DEEPSPEED": "true"}) == "DeepSpeed"


def test_a_strategy_that_cannot_run_is_refused_once_before_processes_start(tmp_path, capsys, monkeypatch):
    import importlib.util

    from grpo.cli import main

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real_find_spec(name, *a))

    zero2 = str(REPO / "examples" / "accelerate" / "deepspeed_zero2.yaml")
    assert main(["llm", "train", "--num-processes", "2", "--device", "cpu", "--accelerate-config", zero2,
                 "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'grpo-lab[deepspeed]'" in err and len(err.strip().splitlines()) == 1
    fsdp1 = tmp_path / "fsdp1.yaml"
    fsdp1.write_text(Path(FSDP_YAML).read_text().replace("fsdp_version: 2", "fsdp_version: 1"))
    assert main(["llm", "train", "--num-processes", "2", "--device", "cpu", "--accelerate-config", str(fsdp1),
                 "--out", str(tmp_path / "f1")]) == 2
    assert "set fsdp_version: 2" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists() and not (tmp_path / "f1").exists()


RUNTIME_IN_A_LAUNCH = """
import os, sys
from grpo.llm.infra.distributed import AccelerateRuntime
os.environ.update(ACCELERATE_USE_FSDP="true", FSDP_VERSION="1")
try:
    AccelerateRuntime("cpu")
except ValueError as err:
    print("REFUSED", err)
"""


def test_the_runtime_refuses_a_strategy_it_would_not_run(tmp_path):
    """Launched by hand (``accelerate launch --config_file``), the check runs in the processes too."""
    proc = subprocess.run([sys.executable, "-c", RUNTIME_IN_A_LAUNCH], capture_output=True, text=True, env=_env(),
                          timeout=120, cwd=tmp_path)
    assert "REFUSED FSDP: set fsdp_version: 2" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.slow
def test_deepspeed_zero2_on_two_cpu_processes_equals_one_process(tiny_path, tmp_path):
    """DeepSpeed's CPU accelerator (gloo) through accelerate: optimizer state partitioned, same result.
    Needs deepspeed in this interpreter (a separate environment: docs/scale-out.md)."""
    pytest.importorskip("deepspeed")
    zero2 = str(REPO / "examples" / "accelerate" / "deepspeed_zero2.yaml")
    # DeepSpeed: one backward per step; AdamW, the optimizer whose partitioned state is checked below
    opts = {**OPTS, "model": str(tiny_path), "micro_batch": None, "optimizer": "adamw", "lr": None}
    train(GRPOConfig(**opts, out=str(tmp_path / "one"), progress=False), log=lambda *_: None)
    cmd = launch_command(2, zero2, "no", ["llm", "train", "--out", str(tmp_path / "two"), *_flags(opts)])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["distributed"] == "DeepSpeed ZeRO-2" and summary["processes"] == 2
    assert summary["state_mb_per_process"]["optimizer"] == pytest.approx(summary["state_mb_per_process"]["parameters"],
                                                                         rel=0.01)  # 2 moments, half of each
    _assert_same_weights(tmp_path / "one" / "final", tmp_path / "two" / "final")
    m1, m2 = read_jsonl(tmp_path / "one" / "metrics.jsonl"), read_jsonl(tmp_path / "two" / "metrics.jsonl")
    for x, y in zip(m1, m2):
        for key in ("reward/total/mean", "completions/mean_length", "loss/policy", "kl/ref"):
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-6), key
