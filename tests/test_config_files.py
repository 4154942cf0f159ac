"""Every command takes ``--config FILE.yaml`` with flags on top; every shipped example config loads
into its dataclass (field names and values checked as the command line checks them)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from grpo.cli import build_parser, main
from grpo.utils.config import parse_args_with_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONFIGS = sorted((EXAMPLES / "configs").glob("*.yaml"))
ACCELERATE = sorted((EXAMPLES / "accelerate").glob("*.yaml"))


def _parse(argv):
    return parse_args_with_config(build_parser(), argv)


def _is_control(values: dict) -> bool:
    return "env" in values or "total_steps" in values


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_loads_into_its_dataclass(path):
    values = {k.replace("-", "_"): v for k, v in yaml.safe_load(path.read_text()).items()}  # PyYAML's own types
    if _is_control(values):
        from grpo.control.cli import split_options
        from grpo.control.train import RunConfig, algo_config

        args = _parse(["train", "--config", str(path)])
        run_opts, algo_opts = split_options(values["algo"], args)
        run = RunConfig(**run_opts)
        cfg = algo_config(values["algo"], run.env, algo_opts)
        assert all(getattr(cfg, k) == v for k, v in algo_opts.items())
        return
    from grpo.llm.ppo_config import config_from_args

    cfg = config_from_args(_parse(["llm", "train", "--config", str(path)]))
    for key, value in values.items():
        assert getattr(cfg, key) == value, key
    if cfg.accelerate_config:
        assert (EXAMPLES.parent / cfg.accelerate_config).is_file()


def test_shipped_examples_cover_demo_math_and_multi_gpu():
    names = {p.stem for p in CONFIGS}
    assert {"demo", "gsm8k", "multi_gpu"} <= names
    assert {"ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"} <= {p.stem for p in ACCELERATE}


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_config_is_valid(path):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(path))  # unknown keys raise
    assert cfg.num_machines == 1 and cfg.mixed_precision == "bf16"
    if cfg.distributed_type == "FSDP":
        assert cfg.fsdp_config["fsdp_version"] == 2  # the runtime requires FSDP2


def test_llm_train_config_with_flags_on_top(tmp_path):
    from grpo.llm.ppo_config import config_from_args

    f = tmp_path / "c.yaml"
    f.write_text("steps: 7\nlr: 1.0e-4\nreward: [exact, digits:0.5]\nadapter: lora\n")
    cfg = config_from_args(_parse(["llm", "train", "--config", str(f), "--steps", "9"]))
    assert (cfg.steps, cfg.lr, cfg.reward, cfg.adapter) == (9, 1e-4, ["exact", "digits:0.5"], "lora")


@pytest.mark.parametrize("argv,yaml_text,flag,expected", [
    (["llm", "eval"], "samples: 4\nlimit: 10\n", ["--limit", "3"], {"samples": 4, "limit": 3}),
    (["eval"], "checkpoint: runs/x\nepisodes: 5\n", ["--episodes", "2"], {"checkpoint": "runs/x", "episodes": 2}),
    (["compare"], "seeds: 5\nalgos: [grpo]\nno_progress: true\n", ["--seeds", "2"],
     {"seeds": 2, "algos": ["grpo"], "no_progress": True}),
])
def test_plain_commands_read_config_files_under_flags(tmp_path, argv, yaml_text, flag, expected):
    f = tmp_path / "c.yaml"
    f.write_text(yaml_text)
    args = _parse([*argv, "--config", str(f), *flag])
    assert {k: getattr(args, k) for k in expected} == expected


def test_every_command_takes_config():
    parser = build_parser()
    commands = [["train"], ["eval"], ["compare"], ["llm", "train"], ["llm", "eval"]]
    for path in commands:
        sub = parser
        for name in path:
            action = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction")
            sub = action.choices[name]
        assert "--config" in sub._option_string_actions, path


def test_unknown_keys_in_a_config_file_are_one_line_errors(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("sample: 3\n")
    assert main(["llm", "eval", "--config", str(f)]) == 2
    assert "unknown option(s) ['sample']" in capsys.readouterr().err
    f.write_text("stepz: 3\n")
    assert main(["llm", "train", "--config", str(f)]) == 2
    assert "stepz" in capsys.readouterr().err


def test_llm_config_fields_have_help_text():
    from grpo.llm.ppo_config import PPOConfig

    assert all(f.metadata.get("help") for f in dataclasses.fields(PPOConfig) if f.init)
