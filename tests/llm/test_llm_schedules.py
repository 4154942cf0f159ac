"""Learning-rate schedules: the same rates as Hugging Face's (TRL's) schedulers, applied per step, resumable."""

from __future__ import annotations

import shutil

import pytest
import torch

from grpo.cli import main
from grpo.llm.config import GRPOConfig
from grpo.llm.infra.schedules import LR_SCHEDULES, lr_factor
from grpo.utils.io import read_jsonl

FAST = ["--prompts-per-step", "2", "--group-size", "4", "--max-new-tokens", "4", "--eval-limit", "8",
        "--progress", "false", "--tensorboard", "false", "--threads", "1"]


@pytest.mark.parametrize("warmup", [0, 3])
@pytest.mark.parametrize("name", ["constant", "linear", "cosine"])
def test_rates_equal_transformers_schedulers(name, warmup):
    """TRL's ``lr_scheduler_type`` and ``warmup_steps`` go through transformers' get_scheduler: the same rate
    at every optimizer step (our ``constant`` with a warmup is its ``constant_with_warmup``)."""
    from transformers import get_scheduler

    steps = 7
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    theirs_name = "constant_with_warmup" if name == "constant" and warmup else name
    sched = get_scheduler(theirs_name, opt, num_warmup_steps=warmup, num_training_steps=steps)
    theirs = []
    for _ in range(steps):
        theirs.append(opt.param_groups[0]["lr"])  # the rate the next optimizer.step() uses
        opt.step()
        sched.step()
    ours = [lr_factor(name, s, steps, warmup) for s in range(steps)]
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert ours[:warmup] == pytest.approx([s / warmup for s in range(warmup)])  # the warmup: from 0, linearly


def test_config_names_match_the_registry_and_defaults():
    from grpo.llm.config import LR_SCHEDULE_NAMES

    assert sorted(LR_SCHEDULE_NAMES) == LR_SCHEDULES.names()
    assert GRPOConfig().lr_schedule == "linear"  # the built-in tiny model
    assert GRPOConfig(model="some/hub-model").lr_schedule == "constant"  # the paper: a constant 1e-6
    with pytest.raises(ValueError, match="lr_schedule"):
        GRPOConfig(lr_schedule="step")
    for bad in (-1, 10):  # a warmup as long as the run would never reach the base rate
        with pytest.raises(ValueError, match="warmup_steps"):
            GRPOConfig(steps=10, warmup_steps=bad)


@pytest.mark.parametrize("warmup, rates", [(0, [1e-3, 7.5e-4, 5e-4, 2.5e-4]), (1, [0.0, 1e-3, 2e-3 / 3, 1e-3 / 3])])
def test_train_logs_the_scheduled_rate_and_resume_continues_it(tiny_path, tmp_path, warmup, rates):
    out = tmp_path / "run"
    args = ["llm", "train", "--model", str(tiny_path), "--out", str(out), "--lr", "1e-3", "--lr-schedule", "linear",
            "--warmup-steps", str(warmup), "--save-every", "2", *FAST]
    assert main([*args, "--steps", "4"]) == 0
    full = [m["train/lr"] for m in read_jsonl(out / "metrics.jsonl")]
    assert full == pytest.approx(rates)
    # as if stopped after step 2: resume from checkpoint-000002, whose optimizer state holds step 1's rate
    shutil.rmtree(out / "checkpoint-000004")
    assert main([*args, "--steps", "4", "--resume", "true"]) == 0
    resumed = {m["step"]: m["train/lr"] for m in read_jsonl(out / "metrics.jsonl")}
    assert [resumed[s] for s in range(4)] == pytest.approx(full)
