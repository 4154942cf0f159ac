"""``--resume`` continues the saved run (issue 11, section 3): its saved configuration is loaded, options
that would change it are refused by name, and the safe ones (a longer budget, logging, progress) apply."""

from __future__ import annotations

import dataclasses
import json

import pytest

from grpo.cli import build_parser, main
from grpo.utils.config import ConfigError, parse_args_with_config


def _args(argv):
    return parse_args_with_config(build_parser(), argv)


@pytest.fixture()
def llm_run(tmp_path):
    """A run folder whose run_config.json says what ``grpo llm train`` saved (GRPO, non-default values)."""
    from grpo.llm.config import GRPOConfig

    cfg = GRPOConfig(task="addition", seed=3, lr=1e-3, group_size=4, steps=20, out=str(tmp_path / "old-path"))
    (tmp_path / "run_config.json").write_text(json.dumps({**dataclasses.asdict(cfg), "model_path": "x", "world_size": 1}))
    return tmp_path


def _llm(argv):
    from grpo.llm.ppo_config import config_from_args

    return config_from_args(_args(["llm", "train", *argv]))


def test_llm_resume_loads_the_saved_config(llm_run):
    cfg = _llm(["--resume", "--out", str(llm_run)])
    assert (cfg.seed, cfg.lr, cfg.group_size, cfg.steps) == (3, 1e-3, 4, 20)
    assert cfg.out == str(llm_run) and cfg.resume  # where it was found, not the path saved then


def test_llm_resume_takes_the_safe_options(llm_run):
    cfg = _llm(["--resume", "--out", str(llm_run), "--steps", "40", "--progress", "no", "--log-every", "5",
                "--seed", "3", "--lr", "0.001"])  # values equal to the saved ones change nothing
    assert (cfg.steps, cfg.progress, cfg.log_every, cfg.lr) == (40, False, 5, 1e-3)


@pytest.mark.parametrize("flags,named", [
    (["--task", "x.jsonl"], "--task 'x.jsonl' (saved: 'addition')"),
    (["--seed", "1", "--lr", "1e-4"], "--seed 1 (saved: 3), --lr 0.0001 (saved: 0.001)"),
    (["--group-size", "8"], "--group-size 8 (saved: 4)"),
    (["--steps", "10"], "--steps 10 (saved: 20)"),  # a budget only grows
    (["--algo", "ppo"], "is --algo grpo, not ppo"),
])
def test_llm_resume_refuses_options_that_change_the_run(llm_run, capsys, flags, named):
    before = (llm_run / "run_config.json").read_text()
    assert main(["llm", "train", "--resume", "--out", str(llm_run), *flags]) == 2
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1
    assert (llm_run / "run_config.json").read_text() == before  # the saved config is left as it was


def test_llm_resume_refuses_a_config_file_that_changes_the_run(llm_run):
    path = llm_run / "c.yaml"
    path.write_text("beta: 0.1\n")
    with pytest.raises(ConfigError, match=r"--beta 0\.1 \(saved: 0\.04\)"):
        _llm(["--resume", "--out", str(llm_run), "--config", str(path)])


@pytest.fixture()
def control_run(tmp_path):
    """A run folder whose config.json says what ``grpo train`` saved (GRPO on CartPole, lr 2e-3)."""
    from grpo.control.train import RunConfig, algo_config

    run = RunConfig(seed=5, total_steps=4_000, eval_every=2_000)
    cfg = algo_config("grpo", run.env, {"lr": 2e-3})
    (tmp_path / "config.json").write_text(json.dumps(
        {"algo": "grpo", "run": dataclasses.asdict(run), "algo_config": dataclasses.asdict(cfg), "env_info": {}}))
    return tmp_path


def _control(argv):
    from grpo.control.cli import train_config

    return train_config(_args(["train", *argv]))


def test_control_resume_loads_the_saved_config_and_takes_the_safe_options(control_run):
    algo, run, cfg = _control(["--resume", "--out", str(control_run), "--total-steps", "8e3", "--progress", "no"])
    assert (algo, run.seed, run.total_steps, run.progress, cfg.lr) == ("grpo", 5, 8_000, False, 2e-3)


@pytest.mark.parametrize("flags,named", [
    (["--lr", "1e-3"], "--lr 0.001 (saved: 0.002)"),
    (["--seed", "0"], "--seed 0 (saved: 5)"),
    (["--env", "Acrobot-v1"], "--env 'Acrobot-v1' (saved: 'CartPole-v1')"),
    (["--total-steps", "2000"], "--total-steps 2000 (saved: 4000)"),
])
def test_control_resume_refuses_options_that_change_the_run(control_run, flags, named):
    with pytest.raises(ConfigError) as err:
        _control(["--resume", "--out", str(control_run), *flags])
    assert named in str(err.value)
