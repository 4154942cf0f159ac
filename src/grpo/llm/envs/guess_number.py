"""Guess the number: a secret integer in 1..100, the environment answers "higher", "lower" or "correct".

A text environment in the gymnasium style (issue 14): ``reset(seed, options) -> (messages, info)``
opens the episode with one user message; ``step({"role": "assistant", "content": ...})`` reads the
guess and returns ``(messages, reward, terminated, truncated, info)``, ``messages`` being the new
user messages (the feedback). The secret comes from ``numpy.random.default_rng(seed)``, so a group
of G episodes reset with one seed plays for the same number.

The guess is the last integer in the message ("50", "my guess is 50", or the built-in guess model's
"0<x<101:50"); a message with none gets ``INVALID`` back and still counts as a turn. After
``max_turns`` guesses without the number the episode is truncated.

Reward: ``solve_reward`` on the turn that names the number, minus ``turn_cost`` on every turn, so an
episode solved in k turns returns ``solve_reward - turn_cost * k``. With the defaults (1, 0.1, 15) every
solved episode beats every unsolved one, and among solved ones each guess saved is worth the same 0.1:
a group's relative advantage (return minus the group mean) pushes towards fewer guesses.

Progress (``progress=True``, the default): each turn's reward also carries ``phi(after) - phi(before)``,
``phi`` of an interval of n allowed numbers being ``-turn_cost * T(n)``, T(n) the guesses the random
legal player still needs from it (:func:`random_player_guesses`; 0 once solved, and the first turn
counts from 0, not from phi of the whole range). It is potential-based shaping (Ng, Harada and Russell,
ICML 1999): the terms telescope, so an episode solved in k turns still returns exactly
``solve_reward - turn_cost * k`` (outcome advantages are unchanged), and an unsolved one returns
``-turn_cost * (max_turns + T(n))``, n the numbers it left open. What changes is each turn's share: a
turn's return-to-go is the guesses still to come *minus what the state it starts from is worth*, a
baseline per state that a group comparison at the same turn does not have (its episodes stand in
different intervals); with ``--env-gamma 0`` a turn is judged by its own progress alone.

``hide_feedback=True`` (constructor or ``reset(options={"hide_feedback": True})``) replaces
"higher"/"lower" by ``HIDDEN``, the negative control: a player can then only guess blind.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import numpy as np

LOW, HIGH = 1, 100
HIGHER, LOWER, CORRECT = "higher", "lower", "correct"
INVALID = "a number?"  # the answer to a message without an integer
HIDDEN = "wrong"  # every wrong guess under hide_feedback: says only what the episode going on says anyway
PROMPT = f"Guess my number, {LOW} to {HIGH}."


def parse_guess(text: str) -> int | None:
    """The last integer in ``text``, or None.

    >>> parse_guess("0<x<101:57"), parse_guess("I say 12, no: 13."), parse_guess("no idea")
    (57, 13, None)
    """
    found = re.findall(r"\d+", text)
    return int(found[-1]) if found else None


def random_player_guesses(n: int) -> float:
    """Expected guesses of the random legal player (each guess uniform among the n numbers still
    allowed) to find a secret uniform among them: T(0) = 0 and T(k) = 1 + sum over the k places g of the
    guess of [(g/k) T(g) + ((k-1-g)/k) T(k-1-g)] / k. T(100) = 7.48 (binary search needs 5.8).

    >>> random_player_guesses(1), random_player_guesses(2), round(random_player_guesses(100), 2)
    (1.0, 1.5, 7.48)
    """
    return _random_player_table(max(n, HIGH - LOW + 1))[n]


@lru_cache(maxsize=None)
def _random_player_table(n: int) -> tuple[float, ...]:
    T = [0.0]
    for k in range(1, n + 1):
        T.append(1 + sum((g / k) * T[g] + ((k - 1 - g) / k) * T[k - 1 - g] for g in range(k)) / k)
    return tuple(T)


class GuessNumberEnv:
    """One episode at a time; ``reset`` before the first ``step`` and after the episode ends."""

    def __init__(self, max_turns: int = 15, solve_reward: float = 1.0, turn_cost: float = 0.1,
                 hide_feedback: bool = False, prompt: str = PROMPT, progress: bool = True) -> None:
        if max_turns < 1:
            raise ValueError(f"GuessNumberEnv max_turns={max_turns}: give at least 1")
        self.max_turns, self.solve_reward, self.turn_cost = max_turns, solve_reward, turn_cost
        self.hide_feedback, self.prompt, self.progress = hide_feedback, prompt, progress
        self.secret: int | None = None

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[list[dict], dict]:
        options = options or {}
        self.hidden = bool(options.get("hide_feedback", self.hide_feedback))
        self.secret = int(np.random.default_rng(seed).integers(LOW, HIGH + 1))
        self.turns, self.illegal, self.solved, self.done = 0, 0, False, False
        self.low, self.high = LOW, HIGH  # the interval the true feedback so far allows (inclusive)
        return [{"role": "user", "content": self.prompt}], self._info()

    def step(self, assistant_message: dict) -> tuple[list[dict], float, bool, bool, dict]:
        if self.secret is None or self.done:
            raise RuntimeError("GuessNumberEnv.step called before reset or after the episode ended: call reset()")
        guess = parse_guess(str(assistant_message.get("content", "")))
        before = self._potential() if self.progress and self.turns else 0.0  # the first turn counts from 0
        legal = guess is not None and self.low <= guess <= self.high  # before this guess narrows it
        self.turns += 1
        self.illegal += not legal
        reward = -self.turn_cost
        if guess == self.secret:
            self.solved, reply, reward = True, CORRECT, reward + self.solve_reward
        elif guess is None:
            reply = INVALID
        elif guess < self.secret:
            self.low, reply = max(self.low, guess + 1), HIGHER
        else:
            self.high, reply = min(self.high, guess - 1), LOWER
        if self.hidden and reply in (HIGHER, LOWER):
            reply = HIDDEN
        if self.progress:
            reward += self._potential() - before
        terminated = self.solved
        truncated = not terminated and self.turns >= self.max_turns
        self.done = terminated or truncated
        info = {**self._info(), "guess": guess, "legal": legal}
        return [{"role": "user", "content": reply}], reward, terminated, truncated, info

    def _potential(self) -> float:
        """Minus the cost of the guesses the random legal player still needs from here (0 once solved)."""
        return 0.0 if self.solved else -self.turn_cost * random_player_guesses(self.high - self.low + 1)

    def _info(self) -> dict[str, Any]:
        # "guesses" only once solved, so that its mean over episodes (env/guesses) is over solved games.
        solved = {"guesses": self.turns} if self.solved else {}
        return {"turns": self.turns, "solved": self.solved, **solved, "secret": self.secret,
                "illegal_frac": self.illegal / max(self.turns, 1)}
