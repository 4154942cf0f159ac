"""The guess-the-number environment's rules and the guess player's chat template (issue 14)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import grpo.llm.envs.guess_number as gn
from grpo.llm.envs.guess_number import GuessNumberEnv
from grpo.llm.modeling.guess_tiny import encode_game, guess_tokenizer, random_game


def say(text: str) -> dict:
    return {"role": "assistant", "content": text}


def test_the_secret_is_drawn_from_the_seed_uniformly_in_1_to_100():
    env = GuessNumberEnv()
    secrets = [env.reset(seed=s)[1]["secret"] for s in range(2000)]
    assert secrets[:50] == [GuessNumberEnv().reset(seed=s)[1]["secret"] for s in range(50)]  # same seed, same number
    assert secrets[7] == int(np.random.default_rng(7).integers(1, 101))
    assert min(secrets) == 1 and max(secrets) == 100 and len(set(secrets)) == 100
    assert abs(np.mean(secrets) - 50.5) < 2.5


def test_reset_opens_with_one_user_message_and_fresh_counters():
    env = GuessNumberEnv()
    messages, info = env.reset(seed=3)
    assert messages == [{"role": "user", "content": gn.PROMPT}]
    assert info["turns"] == 0 and info["solved"] is False


def test_feedback_points_at_the_secret_and_the_reward_counts_turns():
    env = GuessNumberEnv(solve_reward=1.0, turn_cost=0.1, progress=False)
    _, info = env.reset(seed=11)
    s = info["secret"]
    assert 1 < s < 100  # seed 11 has room on both sides
    out = env.step(say(str(s - 1)))
    assert out[0] == [{"role": "user", "content": "higher"}] and out[1] == pytest.approx(-0.1)
    assert out[2:4] == (False, False) and out[4]["turns"] == 1 and out[4]["legal"]
    msgs, reward, terminated, truncated, info = env.step(say(f"then {s + 1}"))
    assert msgs[0]["content"] == "lower" and not terminated
    msgs, reward, terminated, truncated, info = env.step(say(f"0<x<101:{s}"))
    assert msgs[0]["content"] == "correct" and terminated and not truncated
    assert reward == pytest.approx(0.9) and info["solved"] and info["turns"] == 3


def test_random_player_guesses_is_what_the_random_legal_player_needs():
    rng = np.random.default_rng(0)
    for n in (1, 7, 100):
        played = []
        for _ in range(20_000):
            low, high, secret, k = 1, n, int(rng.integers(1, n + 1)), 0
            while True:
                k += 1
                guess = int(rng.integers(low, high + 1))
                if guess == secret:
                    break
                low, high = (guess + 1, high) if guess < secret else (low, guess - 1)
            played.append(k)
        # std of the guesses < 2.5, so the mean of 20,000 games is within 0.06 at 3.4 sigma
        assert abs(np.mean(played) - gn.random_player_guesses(n)) < 0.06, n


@pytest.mark.parametrize("guesses", [[50, 25, 37, 31, 34, 33], [90, 3, 60, 33], [33, 33, 70, 10, 33]])
def test_the_progress_term_is_potential_based_and_leaves_solved_returns_alone(guesses):
    """Each turn: -0.1 plus phi(after) - phi(before), phi = -0.1 T(numbers allowed), 0 once solved; a solved
    episode returns 1 - 0.1 k exactly, as without the term; an unsolved one also pays for what it left open."""
    phi = lambda low, high: -0.1 * gn.random_player_guesses(high - low + 1)  # noqa: E731
    plain, shaped = GuessNumberEnv(progress=False, max_turns=5), GuessNumberEnv(max_turns=5)
    s = 33  # the secret of seed 120
    assert plain.reset(seed=120)[1]["secret"] == shaped.reset(seed=120)[1]["secret"] == s
    low, high, before, total = 1, 100, 0.0, 0.0
    for turn, g in enumerate(guesses):
        _, r0, done, cut, _ = plain.step(say(str(g)))
        _, r1, done1, cut1, _ = shaped.step(say(str(g)))
        assert (done, cut) == (done1, cut1)
        if g < s:
            low = max(low, g + 1)
        elif g > s:
            high = min(high, g - 1)
        after = 0.0 if g == s else phi(low, high)
        assert r1 == pytest.approx(r0 + after - before, abs=1e-12)
        before, total = after, total + r1
        if done or cut:
            break
    k = turn + 1
    if done:
        assert total == pytest.approx(1 - 0.1 * k, abs=1e-9)
    else:
        assert total == pytest.approx(-0.1 * k + phi(low, high), abs=1e-9)


def test_legal_means_inside_the_interval_the_feedback_allows():
    env = GuessNumberEnv()
    s = env.reset(seed=11)[1]["secret"]
    assert env.step(say(str(s + 1)))[4]["legal"]  # everything allowed at first
    assert not env.step(say(str(s + 1)))[4]["legal"]  # repeated: "lower" excluded it
    assert not env.step(say(str(s + 5)))[4]["legal"]
    assert env.step(say(str(s - 1)))[4]["legal"]


def test_an_unparseable_guess_gets_feedback_and_counts_as_a_turn():
    env = GuessNumberEnv(progress=False)
    env.reset(seed=0)
    msgs, reward, terminated, truncated, info = env.step(say("no idea"))
    assert msgs == [{"role": "user", "content": gn.INVALID}] and reward == pytest.approx(-0.1)
    assert info["turns"] == 1 and info["guess"] is None and not info["legal"] and not (terminated or truncated)


def test_the_turn_limit_truncates_and_the_episode_must_be_reset():
    env = GuessNumberEnv(max_turns=3)
    s = env.reset(seed=5)[1]["secret"]
    wrong = str(s % 100 + 1)
    ends = [env.step(say(wrong))[2:4] for _ in range(3)]
    assert ends == [(False, False), (False, False), (False, True)]
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(say(str(s)))
    env.reset(seed=5)
    assert env.step(say(str(s)))[2] is True  # solved after a reset


def test_hidden_feedback_says_the_same_thing_whatever_the_guess():
    for env, options in ((GuessNumberEnv(hide_feedback=True), None), (GuessNumberEnv(), {"hide_feedback": True})):
        s = env.reset(seed=11, options=options)[1]["secret"]
        replies = {env.step(say(str(g)))[0][0]["content"] for g in (s - 1, s + 1, 1, 100)}
        assert replies == {gn.HIDDEN}
        assert env.step(say(str(s)))[2] is True  # solving still ends it
    env = GuessNumberEnv()
    s = env.reset(seed=11, options={"hide_feedback": False})[1]["secret"]
    assert env.step(say(str(s - 1)))[0][0]["content"] == "higher"


def test_parse_examples():
    result = doctest.testmod(gn)
    assert result.attempted > 0 and result.failed == 0


def test_random_games_are_legal_and_end_solved_or_at_the_turn_limit():
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(300):
        game = random_game(rng, max_turns=15)
        lo, hi = 0, 101
        for reply, feedback in zip(game[1::2], game[2::2]):
            assert reply["role"] == "assistant" and reply["content"].startswith(f"{lo:03d}<x<{hi:03d}:")
            guess = gn.parse_guess(reply["content"])
            assert lo < guess < hi
            lo, hi = (guess, hi) if feedback["content"] == "higher" else (lo, guess) if feedback["content"] == "lower" else (lo, hi)
        assert game[-1]["content"] == "correct" or len(game) == 1 + 2 * 15
        lengths.append(len(game) // 2)
    assert 6.8 < np.mean(lengths) < 8.2  # the random legal player needs 7.5 guesses on average


@pytest.mark.parametrize("number_tokens", [False, True])
def test_chat_template_renders_prefix_stably_and_ends_assistant_turns_with_eos(number_tokens):
    tok = guess_tokenizer(number_tokens)
    game = random_game(np.random.default_rng(1), max_turns=15)
    assert len(game) >= 5
    for k in range(1, len(game), 2):  # history up to a user message, then the assistant's reply and feedback
        prompt = tok.apply_chat_template(game[:k], tokenize=False, add_generation_prompt=True)
        reply = tok(game[k]["content"], add_special_tokens=False).input_ids + [tok.eos_token_id]
        after = tok(tok.apply_chat_template(game[:k + 2], tokenize=False, add_generation_prompt=True),
                    add_special_tokens=False).input_ids
        before = tok(prompt, add_special_tokens=False).input_ids
        assert after[:len(before) + len(reply)] == before + reply  # sampled tokens stay as sampled


@pytest.mark.parametrize("number_tokens", [False, True])
def test_training_ids_are_the_chat_template_rendering_and_labels_cover_assistant_tokens(number_tokens):
    tok = guess_tokenizer(number_tokens)
    game = random_game(np.random.default_rng(2), max_turns=15)
    ids, labels = encode_game(tok, game)
    text = tok.apply_chat_template(game, tokenize=False)
    assert ids == tok(text, add_special_tokens=False).input_ids
    trained = tok.decode([t for t in labels if t != -100])
    assert trained == "".join(m["content"] + "<eos>" for m in game if m["role"] == "assistant")


def test_number_tokens_make_each_number_of_a_message_one_token():
    tok = guess_tokenizer(number_tokens=True)
    ids = tok("025<x<063:041", add_special_tokens=False).input_ids
    assert tok.convert_ids_to_tokens(ids) == ["025", "<", "x", "<", "063", ":", "041"]
    assert tok.decode(ids) == "025<x<063:041"
    # Other digits stay characters; without number tokens every digit is one.
    assert tok.convert_ids_to_tokens(tok("1 to 1000", add_special_tokens=False).input_ids)[:3] == ["1", " ", "t"]
    assert len(guess_tokenizer(number_tokens=False)("025<x<063:041", add_special_tokens=False).input_ids) == 13
