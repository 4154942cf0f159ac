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


@pytest.mark.parametrize("name", ["constant", "linear", "cosine"])
def test_rates_equal_transformers_schedulers_without_warmup(name):
    """TRL's ``lr_scheduler_type`` goes through transformers' get_scheduler: same rate at every optimizer step."""
    from transformers import get_scheduler

    steps = 7
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_scheduler(name, opt, num_warmup_steps=0, num_training_steps=steps)
    theirs = []
    for _ in range(steps):
        theirs.append(opt.param_groups[0]["lr"])  # the rate the next optimizer.step() uses
        opt.step()
        sched.step()
    assert [lr_factor(name, s, steps) for s in range(steps)] == pytest.approx(theirs, abs=1e-12)


def test_config_names_match_the_registry_and_defaults():
    from grpo.llm.config import LR_SCHEDULE_NAMES

    assert sorted(LR_SCHEDULE_NAMES) == LR_SCHEDULES.names()
    assert GRPOConfig().lr_schedule == "linear"  # the built-in tiny model
    assert GRPOConfig(model="some/hub-model").lr_schedule == "constant"  # the paper: a constant 1e-6
    with pytest.raises(ValueError, match="lr_schedule"):
        GRPOConfig(lr_schedule="step")


def test_train_logs_the_scheduled_rate_and_resume_continues_it(tiny_path, tmp_path):
    out = tmp_path / "run"
    args = ["llm", "train", "--model", str(tiny_path), "--out", str(out), "--lr", "1e-3", "--lr-schedule", "linear",
            "--save-every", "2", *FAST]
    assert main([*args, "--steps", "4"]) == 0
    full = [m["train/lr"] for m in read_jsonl(out / "metrics.jsonl")]
    assert full == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])
    # as if stopped after step 2: resume from checkpoint-000002, whose optimizer state holds step 1's rate
    shutil.rmtree(out / "checkpoint-000004")
    assert main([*args, "--steps", "4", "--resume", "true"]) == 0
    resumed = {m["step"]: m["train/lr"] for m in read_jsonl(out / "metrics.jsonl")}
    assert [resumed[s] for s in range(4)] == pytest.approx(full)
