"""The CPU demo of issue 14: ``grpo llm train --env guess-number`` alone trains the built-in guess player
with the demo's recipe, prints mean guesses and solve rate before and after, and draws them over steps.

The fast tests check the wiring (presets, the model name, the env's info, one step end to end); the slow
test runs the demo and its negative control (feedback hidden) and checks the bar (docs/guess-number.md).
"""

from __future__ import annotations

import json

import pytest

from grpo.cli import main
from grpo.llm.config import GRPOConfig
from grpo.llm.presets import GUESS_MODEL, GUESS_PRESETS, with_presets
from grpo.llm.envs.guess_number import GuessNumberEnv
from grpo.llm.envs.play import play
from grpo.llm.modeling.models import load_model, load_tokenizer


def test_guess_number_alone_gets_the_demo_recipe_and_given_options_win():
    cfg = GRPOConfig(**with_presets({"env": "guess-number", "steps": 3}))
    assert cfg.model == GUESS_MODEL and cfg.max_new_tokens == 14 and cfg.max_turns == 15
    assert cfg.steps == 3 and cfg.prompts_per_step == GUESS_PRESETS["prompts_per_step"]
    # Another model or another env: no demo presets.
    assert with_presets({"env": "guess-number", "model": "x"}) == {"env": "guess-number", "model": "x"}
    assert GRPOConfig(env="calculator").max_turns == 8
    # Through the Python API the model and its sampling presets still follow (the player needs 14 tokens).
    plain = GRPOConfig(env="guess-number")
    assert plain.model == GUESS_MODEL and plain.max_new_tokens == 14 and plain.threads == 1


def test_guess_tiny_names_the_shipped_player():
    from grpo.llm.modeling.guess_tiny import guess_model_path
    from grpo.llm.modeling.pretrained import resolve_model

    assert resolve_model("guess-tiny", log=None) == str(guess_model_path())
    assert GRPOConfig(model=str(guess_model_path())).max_new_tokens == 14  # given by path: same presets


def test_guesses_is_reported_for_solved_games_only():
    env = GuessNumberEnv()
    env.reset(seed=3)
    secret = env.secret
    _, _, _, _, info = env.step({"role": "assistant", "content": "000<x<101:500"})  # illegal: out of range
    assert "guesses" not in info and info["illegal_frac"] == 1.0
    _, _, done, _, info = env.step({"role": "assistant", "content": f"{secret}"})
    assert done and info["guesses"] == 2 and info["illegal_frac"] == 0.5


def test_one_step_prints_before_after_and_draws_curves(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["llm", "train", "--env", "guess-number", "--out", str(out), "--steps", "1",
                 "--prompts-per-step", "1", "--group-size", "2", "--max-turns", "3", "--env-eval-episodes", "2",
                 "--eval-every", "1", "--num-processes", "1", "--progress", "false", "--report-to", "none"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"].endswith("guess_tiny_model")
    assert "env/solved" in summary["env_eval_before"] and "env/solved" in summary["env_eval_after"]
    assert "before -> after (2 episodes" in printed and "solved" in printed
    assert (out / "curves.png").stat().st_size > 1000
    config = json.loads((out / "run_config.json").read_text())
    assert config["max_new_tokens"] == 14 and config["truncated"] == GUESS_PRESETS["truncated"]
    assert config["env_gamma"] == 0.0 and config["token_selection"] == "top-entropy" and config["beta"] == 0.15
    # The evaluation games are played greedily too: the same turns as play()'s greedy games on those seeds
    assert config["env_eval_greedy"] and "before -> after, greedy (the same 2 seeds)" in printed
    greedy = {k[len("greedy/"):]: v for k, v in summary["env_eval_before"].items() if k.startswith("greedy/")}
    model = summary["model"]
    want = play(load_model(model), load_tokenizer(model), GuessNumberEnv, seeds=[10000, 10001], greedy=True,
                max_turns=3)
    assert greedy["episode/turns_mean"] == want["mean_turns"] and greedy["env/solved"] == want["solve_rate"]



def run_demo(out, *extra: str) -> dict:
    assert main(["llm", "train", "--env", "guess-number", "--out", str(out), "--progress", "false",
                 "--report-to", "none", *extra]) == 0
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo as the CLI runs it (under 10 minutes on two processes), shared by the tests below."""
    return run_demo(tmp_path_factory.mktemp("guess") / "demo")


@pytest.mark.slow
def test_demo_learns_from_the_feedback_and_its_control_does_not(demo, tmp_path):
    """Measured (docs/guess-number.md, run seed 0, the default): guesses per solved game 7.33 -> 6.42, solved
    1.00 -> 1.00, mean return 0.27 -> 0.36 (seeds 1 and 2: guesses 7.18 -> 6.41 and 7.49 -> 6.46). The
    control plays the same recipe with the replies hidden: it solves 11 games before and 14 after, within
    what blind guessing gets (15 distinct guesses of 100 numbers: 15%), and its return stays near -1.6."""
    before, after = demo["env_eval_before"], demo["env_eval_after"]
    assert after["env/guesses"] <= before["env/guesses"] - 0.3, (before, after)
    assert after["episode/return_mean"] >= before["episode/return_mean"] + 0.05, (before, after)
    assert after["env/solved"] >= before["env/solved"] - 0.03, (before, after)
    hidden = run_demo(tmp_path / "hidden", "--env-feedback", "hide")
    for figures in (hidden["env_eval_before"], hidden["env_eval_after"]):
        for mode in ("", "greedy/"):  # sampled at 0.7, and greedy
            # blind guessing solves at most 15% (+ 2.8 standard errors of 100 games)
            assert figures.get(f"{mode}env/solved", 0.0) < 0.25, figures  # no env step at all: no env/solved
            assert figures[f"{mode}episode/return_mean"] < before["episode/return_mean"] - 1.0, figures


@pytest.mark.slow
def test_demo_reaches_the_bar(demo):
    """The bar (issue 14): at most 6.5 guesses per solved game, games solved kept.

    Greedy, the trained player's own choices (docs/guess-number.md): seed 0's 100 games 7.23 -> 5.90, every
    game solved before and after. Sampled at 0.7 the same model sits at the bar: seed 0 gave 7.33 -> 6.42
    (100 solved) on one machine and 6.35 (99 solved) on another; over nine seeds the median is 6.49."""
    before, after = demo["env_eval_before"], demo["env_eval_after"]
    assert after["greedy/env/guesses"] <= 6.5 and after["greedy/env/guesses"] <= before["greedy/env/guesses"] - 0.5
    assert after["greedy/env/solved"] >= before["greedy/env/solved"], (before, after)
    assert after["env/guesses"] <= 6.5, (before, after)
    assert after["env/solved"] >= before["env/solved"] - 0.01, (before, after)  # one game of 100
