"""Demonstrations: episodes an environment's scripted expert plays, laid out token for token as the
rollout lays out the model's own episodes (the data of ``grpo llm sft``, a warm start before GRPO).

An environment may offer ``expert(messages) -> str``: the text a good player writes next, tool calls
in the Hermes format the rollout parses. Each expert turn is encoded, closed with the end-of-turn
token and handed to the rollout's own turn logic (:meth:`EpisodeRunner.take_turn`): tools run, the
environment answers and the template's tokens follow. So ``Episode.trained`` marks exactly the tokens
a model would have sampled there, and a warm-started model meets in GRPO the layout it learnt.
"""

from __future__ import annotations

from typing import Any, Callable

from grpo.llm.envs.base import EnvError, where
from grpo.llm.rollout.episodes import Episode, EpisodeRunner


def expert_of(env: Any, env_name: str) -> Callable[[list[dict]], str]:
    """The environment's ``expert`` method (its own, or under gymnasium wrappers the inner env's); a
    ValueError naming ``env_name`` when it has none."""
    fn = getattr(env, "expert", None) or getattr(getattr(env, "unwrapped", None), "expert", None)
    if not callable(fn):
        raise ValueError(f"env {env_name!r} has no expert(messages) method, so it gives no demonstrations; "
                         "add one that returns the next assistant message as text")
    return fn


def expert_episodes(runner: EpisodeRunner, seeds: list[int], eos_id: int) -> list[Episode]:
    """One episode per seed, every assistant turn written by the environment's expert (``eos_id`` ends
    each turn); an environment without ``expert`` is a ValueError naming it."""
    episodes = []
    for seed in seeds:
        e = runner.open_episode(seed)
        expert = expert_of(e.env, runner.name)
        for turn in range(runner.lim.max_turns):
            try:
                text = expert(list(e.messages))
            except Exception as err:  # noqa: BLE001 - the user's env: one line naming it
                raise EnvError(f"{where(runner.name, seed, turn)}: expert raised {type(err).__name__}: {err}") from None
            if not isinstance(text, str):
                raise EnvError(f"{where(runner.name, seed, turn)}: expert returned {text!r:.80}, not a str")
            runner.take_turn(e, runner.chat.encode(text) + [eos_id], turn, {eos_id}, episode_cap=False)
            if e.done:
                break
        if not e.done:
            e.end("max_turns", truncated=True)
        episodes.append(e)
    return episodes
