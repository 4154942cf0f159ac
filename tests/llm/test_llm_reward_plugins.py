"""``--reward MODULE:FUNCTION[:WEIGHT]``: parsing, the signature check at start-up, and a run scored by it."""

from __future__ import annotations

import re

import pytest

from grpo.cli import main
from grpo.llm.data.rewards.plugins import check_reward_fn, is_plugin_spec, load_reward, parse_plugin_spec, reward_set
from grpo.utils.io import read_jsonl

REWARD_MODULE = '''
def quarter(prompts, completions, **columns):
    return [0.25] * len(completions)

def right_answer(prompts, completions, answer, **columns):
    return [float(c.strip() == a) for c, a in zip(completions, answer)]
right_answer.accuracy = True

def one_completion(completion: str) -> float:
    return 0.0

def no_kwargs(prompts, completions):
    return [0.0] * len(completions)

def scalar(prompts, completions, **columns) -> float:
    return 0.0

NOT_CALLABLE = 3
'''

FAST = ["--prompts-per-step", "2", "--group-size", "4", "--max-new-tokens", "4", "--eval-limit", "8",
        "--progress", "false", "--tensorboard", "false", "--threads", "1"]


@pytest.fixture()
def rewards_module(tmp_path, monkeypatch):
    (tmp_path / "my_test_rewards.py").write_text(REWARD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_test_rewards"


@pytest.mark.parametrize("spec, plugin", [("exact", False), ("format:0.5", False), ("format:-1e-2", False),
                                          ("mod:fn", True), ("pkg.mod:fn:0.5", True), ("mod:fn:2", True)])
def test_spec_kinds(spec, plugin):
    assert is_plugin_spec(spec) is plugin


def test_weights_and_columns(rewards_module):
    assert parse_plugin_spec(f"{rewards_module}:quarter:0.5") == (f"{rewards_module}:quarter", 0.5)
    with pytest.raises(ValueError, match="WEIGHT"):
        parse_plugin_spec(f"{rewards_module}:quarter:heavy")
    rs = reward_set([f"{rewards_module}:quarter:2", "format:0.5", f"{rewards_module}:right_answer"])
    assert rs.weights == {"quarter": 2.0, "format": 0.5, "right_answer": 1.0}
    assert rs.accuracy_name == "right_answer"  # its `accuracy` attribute is kept
    with pytest.raises(ValueError, match=r"needs column\(s\) \['answer'\]"):
        rs.check_columns(["question"])
    scored = rs(["1+1="], ["2"], answer=["2"], completion_lengths=[1], max_new_tokens=4)
    assert scored.total.tolist() == [pytest.approx(2 * 0.25 + 1.0 + 0.5 * float(scored.per_fn[0, 1]))]


@pytest.mark.parametrize("name, message", [
    ("one_completion", "takes no **kwargs"), ("no_kwargs", "takes no **kwargs"),
    ("scalar", "returns one value"), ("NOT_CALLABLE", "int is not callable"),
    ("missing", "has no attribute 'missing'")])
def test_wrong_callables_are_refused(rewards_module, name, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_reward(f"{rewards_module}:{name}")


def test_protocol_check_accepts_named_columns_and_lambdas():
    check_reward_fn(lambda prompts, completions, **kw: [], "x:y")
    check_reward_fn(lambda prompts, completions, answer, *, lang="en", **kw: [], "x:y")
    with pytest.raises(ValueError, match="cannot be called"):
        check_reward_fn(lambda prompts, **kw: [], "x:y")


def test_train_with_a_plugin_reward(tiny_path, rewards_module, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["llm", "train", "--model", str(tiny_path), "--out", str(out), "--steps", "2", *FAST,
                 "--reward", "exact", f"{rewards_module}:quarter:2"]) == 0
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["reward/quarter/mean"] for m in metrics] == [0.25, 0.25]
    for m in metrics:  # total = exact + 2 x 0.25
        assert m["reward/total/mean"] == pytest.approx(m["reward/exact/mean"] + 0.5, abs=1e-6)


@pytest.mark.parametrize("spec, message", [
    ("no_such_rewards_xyz:fn", "no module named 'no_such_rewards_xyz'"),
    ("{m}:one_completion", "takes no **kwargs"), ("{m}:quarter:x", "WEIGHT"), ("{m}:quarter:nan", "finite number"),
    ("nosuchname", "unknown reward")])
def test_train_refuses_bad_reward_before_anything(tiny_path, rewards_module, tmp_path, capsys, monkeypatch,
                                                  spec, message):
    def no_loading(*args, **kwargs):
        raise AssertionError("the tokenizer was loaded before the reward was checked")

    monkeypatch.setattr("grpo.llm.run.load_tokenizer", no_loading)
    out = tmp_path / "run"
    assert main(["llm", "train", "--model", str(tiny_path), "--out", str(out), "--steps", "1", *FAST,
                 "--reward", spec.format(m=rewards_module)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_eval_with_a_plugin_answer_check(tiny_path, rewards_module, capsys):
    args = ["llm", "eval", "--model", str(tiny_path), "--limit", "10", "--max-new-tokens", "4"]
    assert main([*args, "--reward", f"{rewards_module}:right_answer"]) == 0
    plugin = capsys.readouterr().out
    assert main([*args, "--reward", "exact"]) == 0
    assert plugin.split("greedy accuracy")[1] == capsys.readouterr().out.split("greedy accuracy")[1]
    assert main([*args, "--reward", f"{rewards_module}:quarter"]) == 0  # never >= 1: nothing right
    assert "greedy accuracy 0.0%" in capsys.readouterr().out
