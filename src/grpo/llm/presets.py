"""The guess-the-number CPU demo's recipe (issue 14): ``--env guess-number`` with no ``--model`` (or
``guess-tiny``) fills every option not given from :data:`GUESS_PRESETS` (docs/guess-number.md)."""

from __future__ import annotations

import os
from pathlib import Path

# --model guess-tiny: the built-in guess-the-number player (grpo.llm.modeling.guess_tiny). With
# --env guess-number and no --model (or this one) the CPU demo's recipe fills every option not given
# (docs/guess-number.md); a message of the player is 7 tokens and <eos> (one token per number): 14 new tokens leave room.
GUESS_MODEL = "guess-tiny"
GUESS_FOLDER = Path(__file__).resolve().parent / "modeling" / "guess_tiny_model"  # its shipped weights
GUESS_PRESETS = {
    "model": GUESS_MODEL, "max_new_tokens": 14, "max_turns": 15, "lr": 3e-4, "lr_schedule": "constant",
    # 190 steps fit 10 minutes on two processes of one core each (1.2-2.9 s a step on the machines measured,
    # evaluations and start-up included: 4-10 minutes).
    "steps": 190, "num_processes": min(2, os.cpu_count() or 1),
    # 16 secrets a step, 4 episodes each: more secrets average out where each group's secret pulls the guesses.
    "prompts_per_step": 16, "group_size": 4,
    # Each turn judged by its own progress: the environment's potential-based term (docs/guess-number.md)
    # gives each turn a baseline for its interval, so gamma 0 compares what the turns' guesses achieved.
    "env_advantage": "turn", "env_gamma": 0.0,
    # The gradient on the guess (the high-entropy token of a message) only: the interval restated before it
    # is a copy, which the KL (beta 0.15) holds in place; at beta 0.04 or on every token, copies broke.
    "token_selection": "top-entropy", "top_entropy_rho": 0.15, "beta": 0.15,
    # At 0.7 the shipped player needs 7.2 guesses (4% illegal), fewer than the random legal player it imitates
    # (7.5); 0.7 was chosen for the 3,000-step player, whose rare wrong copies of the interval lost games at 1.
    "temperature": 0.7,
    # A turn without <eos> ends the episode at once with the turns so far (about -0.1): with no penalty that
    # is cheaper than an unsolved game (-1.5) and the policy learns to break off. Penalised by 1.5 on top it
    # costs at least what an unsolved game does (the environment's own truncation at 15 turns is not cut).
    "truncated": "penalize", "truncated_penalty": 1.5,
    "threads": 1, "env_eval_episodes": 100, "eval_every": 100,
    # The evaluation games played at the training temperature and again greedily (the convention of the
    # classic-control and single-turn evaluations): the bar of issue 14 is read on both.
    "env_eval_greedy": True,
    # The demo's budget (issue 14: 10 minutes on 2 cores): a machine slower than those measured stops training
    # early, saves and evaluates, instead of running past it.
    "time_limit": 10.0,
}


def with_presets(values: dict) -> dict:
    """``values`` (the options given) completed by :data:`GUESS_PRESETS` for ``--env guess-number``
    with no model or ``guess-tiny``; other values as given.

    >>> with_presets({"env": "guess-number", "steps": 5})["steps"], with_presets({"steps": 5}) == {"steps": 5}
    (5, True)
    """
    if values.get("env") == "guess-number" and values.get("model") in (None, GUESS_MODEL):
        return GUESS_PRESETS | values
    return values
