"""The shipped guess-the-number player: it loads, and plays legal games by the feedback (issue 14).

The weights in ``grpo/llm/modeling/guess_tiny_model`` are built by
``python -m grpo.llm.modeling.guess_tiny --build`` (one thread), which records in ``tiny_info.json``
what the build measured over 200 games (mean guesses, solve rate, illegal rate, with the feedback
shown and hidden). The fast tests play 16 games each way; the slow one rebuilds the weights and compares.
"""

from __future__ import annotations

from dataclasses import asdict

import pytest

import grpo.llm.modeling.guess_tiny as gt
from grpo.llm.envs.guess_number import GuessNumberEnv
from grpo.llm.envs.play import play
from grpo.llm.modeling.models import load_model, load_tokenizer
from grpo.llm.modeling.tiny import save_tiny, shipped_info, weights_sha256

SEEDS = list(range(16))


@pytest.fixture(scope="module")
def player():
    return load_model(str(gt.SHIPPED)), load_tokenizer(str(gt.SHIPPED))


def test_shipped_folder_holds_the_default_spec_with_its_recorded_hash():
    info = shipped_info(gt.SHIPPED)
    assert info is not None, "guess_tiny_model is missing: run python -m grpo.llm.modeling.guess_tiny --build"
    assert info["spec"] == asdict(gt.GuessSpec())  # a changed default spec needs a rebuild
    assert weights_sha256(gt.SHIPPED) == info["weights_sha256"]
    assert sum(f.stat().st_size for f in gt.SHIPPED.iterdir()) < 5_000_000
    assert gt.guess_model_path(log=None) == gt.SHIPPED


def test_shipped_tokenizer_keeps_the_chat_template(player):
    _, tok = player
    assert tok.chat_template == gt.CHAT_TEMPLATE and tok.eos_token == "<eos>"


@pytest.fixture(scope="module")
def games(player):
    """The shipped player over SEEDS at temperature 1, with the feedback shown and hidden."""
    model, tok = player
    return {hidden: play(model, tok, lambda: GuessNumberEnv(hide_feedback=hidden), SEEDS, temperature=1.0,
                         max_turns=15) for hidden in (False, True)}


def test_shipped_player_plays_by_the_feedback(games):
    shown, hidden = games[False], games[True]
    assert shown["episodes"] == len(SEEDS)
    # Recorded over 200 games by the build: illegal 0.063, solved 0.985 (7.6 guesses); hidden: 0.69, 0.14.
    assert shown["illegal_rate"] <= 0.35, shown["illegal_rate"]
    assert shown["solve_rate"] >= 0.7, shown["solve_rate"]


def test_with_the_feedback_hidden_the_player_cannot_narrow_the_interval(games):
    shown, hidden = games[False], games[True]
    assert hidden["solve_rate"] <= 0.35 and hidden["solve_rate"] < shown["solve_rate"] - 0.4, hidden["solve_rate"]
    assert hidden["illegal_rate"] > shown["illegal_rate"] + 0.3


def test_play_is_reproducible_under_its_sample_seed_and_leaves_torch_rng_alone(player):
    import torch

    model, tok = player
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = play(model, tok, GuessNumberEnv, SEEDS[:3], sample_seed=3)
    after = torch.rand(1)
    b = play(model, tok, GuessNumberEnv, SEEDS[:3], sample_seed=3)
    assert a["transcripts"] == b["transcripts"] and torch.equal(before, after)


@pytest.mark.slow
def test_build_reproduces_the_shipped_weights(tmp_path):
    """Bit for bit on the machine that built them (its CPU, torch and transformers are recorded)."""
    from grpo.llm.modeling.tiny import machine

    shipped = shipped_info(gt.SHIPPED)
    if machine() != {k: v for k, v in shipped["machine"].items() if k != "threads"}:
        pytest.skip(f"weights built on {shipped['machine']}: another CPU or library sums floats in another order")
    info = gt.build(tmp_path / "guess", threads=1, log=None)
    assert info["weights_sha256"] == shipped["weights_sha256"]


def test_a_build_is_deterministic_on_one_machine(tmp_path):
    spec = gt.GuessSpec(hidden=16, intermediate=32, layers=1, heads=2, max_steps=3, decay_steps=2, batch=4)
    hashes = []
    for name in ("a", "b"):
        model, tok, info = gt.pretrain(spec, eval_seeds=None)
        save_tiny(tmp_path / name, model, tok, info)
        hashes.append(weights_sha256(tmp_path / name))
    assert hashes[0] == hashes[1]
    other = gt.pretrain(gt.GuessSpec(**{**asdict(spec), "seed": 1}), eval_seeds=None)[0]
    save_tiny(tmp_path / "c", other, tok, {})
    assert weights_sha256(tmp_path / "c") != hashes[0]  # the hash sees a different build


def test_an_episode_that_fills_the_context_ends_truncated_instead_of_failing(player):
    model, tok = player
    long = lambda: GuessNumberEnv(prompt="Guess my number. " * 22)  # 374 characters: no room for 16 more
    res = play(model, tok, long, SEEDS[:4], max_turns=15)
    assert res["truncation_rate"] == 1.0 and res["mean_turns"] == 0 and res["solve_rate"] == 0


def test_length_buckets_batch_games_of_similar_length_and_one_bucket_draws_games_in_order():
    import numpy as np

    batches = gt._length_batches(np.random.default_rng(0), gt.GuessSpec(batch=4, buckets=3))
    assert [len(b) for b in batches] == [4, 4, 4]
    spans = sorted((min(map(len, b)), max(map(len, b))) for b in batches)  # (shortest, longest) game per batch
    assert all(hi <= lo for (_, hi), (lo, _) in zip(spans, spans[1:])), spans
    assert len({len(g) for b in batches for g in b}) > 1  # games of several lengths to group
    # One bucket: the games drawn one at a time, in order (the first shipped weights were built so).
    rng = np.random.default_rng(5)
    assert gt._length_batches(np.random.default_rng(5), gt.GuessSpec(batch=4, buckets=1)) == [
        [gt.random_game(rng, 15) for _ in range(4)]]
