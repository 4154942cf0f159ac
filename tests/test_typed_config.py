"""One typed loader for YAML files and flags (issue 11, section 4): lossless numbers, one rule for
booleans, and one line naming the key, the value and the type for anything else, on both CLIs."""

from __future__ import annotations

import pytest

from grpo.cli import build_parser, main
from grpo.utils.config import ConfigError, coerce, parse_args_with_config, parse_bool


def _args(argv):
    return parse_args_with_config(build_parser(), argv)


def control(argv):
    """(algo, RunConfig, algorithm config) as ``grpo train ARGV`` would build them (nothing trains)."""
    from grpo.control.cli import train_config

    return train_config(_args(["train", *argv]))


def llm(argv):
    from grpo.llm.ppo_config import config_from_args

    return config_from_args(_args(["llm", "train", *argv]))


def _yaml(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return ["--config", str(path)]


@pytest.mark.parametrize("word,value", [("true", True), ("Yes", True), ("ON", True), ("1", True),
                                        ("false", False), ("NO", False), ("off", False), ("0", False)])
def test_one_boolean_rule(word, value):
    assert parse_bool(word) is value
    assert coerce("x", word, bool) is value


@pytest.mark.parametrize("word", ["maybe", "2", "y", "t", "", "none"])
def test_anything_else_is_not_a_boolean(word):
    with pytest.raises(ConfigError, match=r"x: .* is not a boolean \(true/false, yes/no, on/off, 1/0\)"):
        coerce("x", word, bool)


def test_numbers_convert_only_when_nothing_is_lost():
    assert coerce("lr", "1e-6", float) == 1e-6
    assert coerce("n", "2e3", int) == 2000 and coerce("n", 2000.0, int) == 2000
    assert coerce("eps_high", "none", float | None) is None and coerce("eps_high", "0.3", float | None) == 0.3
    assert coerce("hidden", ["32", "1e2"], list[int]) == [32, 100]
    for bad, tp in (("4.7", int), (4.7, int), ("true", int), ("ten", float), (1.5, str), ("nan5", float)):
        with pytest.raises(ConfigError):
            coerce("k", bad, tp)


def test_yaml_numbers_and_booleans_on_the_control_cli(tmp_path):
    # PyYAML alone reads 1e-6 as a string and "no" as a true string
    _, run, cfg = control(_yaml(tmp_path, 'lr: 1e-6\nanneal_lr: "no"\nprogress: "no"\ntotal_steps: 2e3\n'))
    assert (cfg.lr, cfg.anneal_lr, run.progress, run.total_steps) == (1e-6, False, False, 2000)
    assert type(run.total_steps) is int


def test_flags_follow_the_same_rules_on_the_control_cli():
    _, run, cfg = control(["--lr", "1e-6", "--anneal-lr", "no", "--progress", "OFF", "--total-steps", "2e3"])
    assert (cfg.lr, cfg.anneal_lr, run.progress, run.total_steps) == (1e-6, False, False, 2000)
    _, run, cfg = control(["--anneal-lr", "--algo", "grpo"])  # a bare boolean flag is true
    assert cfg.anneal_lr is True


def test_yaml_and_flags_on_the_llm_cli(tmp_path):
    cfg = llm(_yaml(tmp_path, 'lr: 1e-6\nprogress: "no"\ndynamic_sampling: "yes"\nsteps: 2e3\neps_high: null\n'))
    assert (cfg.lr, cfg.progress, cfg.dynamic_sampling, cfg.steps, cfg.eps_high) == (1e-6, False, True, 2000, None)
    cfg = llm(["--lr", "1e-6", "--progress", "no", "--steps", "2e3", "--eps-high", "none"])
    assert (cfg.lr, cfg.progress, cfg.steps, cfg.eps_high) == (1e-6, False, 2000, None)


@pytest.mark.parametrize("command", [["train"], ["llm", "train"]])
@pytest.mark.parametrize("key,value,kind", [("group_size", "4.7", "an integer"), ("lr", "fast", "a number"),
                                            ("progress", "maybe", "a boolean")])
def test_a_value_that_does_not_fit_is_one_line_naming_key_value_and_type(tmp_path, capsys, command, key, value, kind):
    assert main([*command, *_yaml(tmp_path, f"{key}: {value}\n")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"c.yaml: {key}: '{value}' is not {kind}" in err
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--" + key.replace("_", "-"), value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"--{key.replace('_', '-')}: '{value}' is not {kind}" in err


@pytest.mark.parametrize("command", [["train"], ["llm", "train"], ["eval", "--checkpoint", "x"], ["llm", "eval"],
                                     ["compare"]])
def test_an_unknown_key_is_one_line(tmp_path, capsys, command):
    assert main([*command, *_yaml(tmp_path, "group_sise: 4\n")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "group_sise" in err and "unknown option" in err
    with pytest.raises(SystemExit):
        main([*command, "--group-sise", "4"])
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "unrecognized arguments: --group-sise" in err


def test_plain_commands_type_their_yaml_and_flags(tmp_path, capsys):
    args = _args(["eval", *_yaml(tmp_path, 'checkpoint: x\nepisodes: 2e3\n')])
    assert args.episodes == 2000
    assert _args(["eval", "--checkpoint", "x", "--episodes", "2e3"]).episodes == 2000
    assert _args(["compare", *_yaml(tmp_path, 'no_progress: "no"\nseeds: 2\n')]).no_progress is False
    assert main(["eval", *_yaml(tmp_path, "checkpoint: x\nepisodes: 4.7\n")]) == 2
    assert "episodes: '4.7' is not an integer" in capsys.readouterr().err
    assert main(["compare", *_yaml(tmp_path, "algos: [grpo, sac]\n")]) == 2
    assert "algos: 'sac' is not one of" in capsys.readouterr().err


def test_compare_set_values_are_typed_by_the_field():
    from grpo.experiments.cli import parse_sets

    assert parse_sets(["grpo.anneal_lr=off", "ppo.n_envs=1e1"]) == {"grpo": {"anneal_lr": False}, "ppo": {"n_envs": 10}}
    with pytest.raises(ConfigError, match=r"--set grpo\.group_size: '4\.7' is not an integer"):
        parse_sets(["grpo.group_size=4.7"])


def test_plain_options_whose_default_is_none_take_none(tmp_path):
    args = _args(["llm", "eval", *_yaml(tmp_path, "limit: null\nmax_new_tokens: 1e1\nmodel: ~\n")])
    assert (args.limit, args.max_new_tokens, args.model) == (None, 10, None)
