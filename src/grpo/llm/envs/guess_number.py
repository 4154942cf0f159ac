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
episode solved in k turns returns ``solve_reward - turn_cost * k`` and an unsolved one
``-turn_cost * max_turns``. With the defaults (1, 0.1, 15) every solved episode beats every unsolved
one, and among solved ones each guess saved is worth the same 0.1: a group's relative advantage
(return minus the group mean) pushes towards fewer guesses, in outcome mode and per turn alike.

``hide_feedback=True`` (constructor or ``reset(options={"hide_feedback": True})``) replaces
"higher"/"lower" by ``HIDDEN``, the negative control: a player can then only guess blind.
"""

from __future__ import annotations

import re
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


class GuessNumberEnv:
    """One episode at a time; ``reset`` before the first ``step`` and after the episode ends."""

    def __init__(self, max_turns: int = 15, solve_reward: float = 1.0, turn_cost: float = 0.1,
                 hide_feedback: bool = False, prompt: str = PROMPT) -> None:
        if max_turns < 1:
            raise ValueError(f"GuessNumberEnv max_turns={max_turns}: give at least 1")
        self.max_turns, self.solve_reward, self.turn_cost = max_turns, solve_reward, turn_cost
        self.hide_feedback, self.prompt = hide_feedback, prompt
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
        terminated = self.solved
        truncated = not terminated and self.turns >= self.max_turns
        self.done = terminated or truncated
        info = {**self._info(), "guess": guess, "legal": legal}
        return [{"role": "user", "content": reply}], reward, terminated, truncated, info

    def _info(self) -> dict[str, Any]:
        # "guesses" only once solved, so that its mean over episodes (env/guesses) is over solved games.
        solved = {"guesses": self.turns} if self.solved else {}
        return {"turns": self.turns, "solved": self.solved, **solved, "secret": self.secret,
                "illegal_frac": self.illegal / max(self.turns, 1)}
