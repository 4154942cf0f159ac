"""Multi-turn episodes, run in lockstep: every turn, the assistant's next message is sampled for all
episodes still going (one batch through the run's engine), then each environment (or tool) answers.

A group is G episodes of environments reset with the same seed (the classic-control side's group);
episodes are group-major (episode ``b * G + g``). Limits: ``max_turns`` assistant turns,
``max_episode_tokens`` tokens in all, ``max_new_tokens`` per turn; an episode stopped by one of them,
or by a turn that ends without an end-of-turn token, is truncated. Sampling randomness is keyed by
(run seed, step, turn, episode) (:mod:`grpo.llm.rollout.seeding`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from grpo.llm.envs.base import EnvError, check_messages, check_step, env_tools, where
from grpo.llm.envs.tools import ParsedTurn, assistant_message, parser_for, run_tool_calls, tool_schemas
from grpo.llm.rollout.chat_tokens import ChatTokens
from grpo.llm.rollout.generation import eos_ids_of, synced_max, synced_processes
from grpo.llm.rollout.seeding import prompt_keys

ENV_FAILURES = ("raise", "zero", "drop")
HIDDEN = "..."  # what the model reads instead of the environment's replies with hide_feedback


@dataclass
class Limits:
    """What bounds an episode and how it samples (from the run's config)."""

    max_turns: int
    max_episode_tokens: int
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    greedy: bool = False
    env_failure: str = "raise"  # raise | zero (end the episode, return 0) | drop (its group leaves the update)
    tool_timeout_s: float | None = 10.0
    hide_feedback: bool = False  # negative control: the env's replies reach the model as HIDDEN


@dataclass
class Episode:
    """One episode's token trajectory (``ids``; ``trained`` true on sampled tokens; ``turn_of`` the
    assistant turn each token belongs to, -1 in the first prompt) and its transcript and rewards."""

    seed: int
    env: Any
    ids: list[int]
    prompt_len: int
    messages: list[dict]
    prompted: str  # the template's text of ``messages`` with the generation prompt (reused next turn)
    trained: list[bool] = field(default_factory=list)
    turn_of: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)  # one per assistant turn (0 for tool turns)
    terminated: bool = False
    truncated: bool = False
    stop: str = ""  # why it ended: terminated, env truncated, max_turns, max_episode_tokens, no end of turn, failed
    failed: str | None = None  # the EnvError's text, when the failure policy let the run go on
    tool_calls: int = 0
    tool_errors: int = 0
    info: dict = field(default_factory=dict)  # the info of the environment's last step

    def __post_init__(self) -> None:
        self.trained = [False] * len(self.ids)
        self.turn_of = [-1] * len(self.ids)

    @property
    def done(self) -> bool:
        return bool(self.stop)

    @property
    def turns(self) -> int:
        return len(self.rewards)

    @property
    def cut(self) -> bool:
        """Truncated by the rollout's limits (turns, tokens, a turn without an end-of-turn token), not by the
        environment itself: an environment's own truncation carries the reward it chose for it."""
        return self.truncated and self.stop != "env truncated"

    @property
    def ret(self) -> float:
        return float(sum(self.rewards))

    def add(self, ids: list[int], trained: bool, turn: int) -> None:
        self.ids += ids
        self.trained += [trained] * len(ids)
        self.turn_of += [turn] * len(ids)

    def end(self, why: str, truncated: bool = False, terminated: bool = False) -> None:
        self.stop, self.truncated, self.terminated = why, truncated, terminated
        close = getattr(self.env, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 - an env that fails to close has already done its work
                pass


def _left_pad(seqs: list[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    P = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), P), pad, dtype=torch.long)  # [n, P]
    mask = torch.zeros((len(seqs), P), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, P - len(s):], mask[i, P - len(s):] = torch.tensor(s), 1
    return ids.to(device), mask.to(device)


class EpisodeRunner:
    """Runs G episodes per reset seed with ``generate`` (an engine of :mod:`grpo.llm.rollout.engines`)."""

    def __init__(self, env_name: str, make_env: Callable[[], Any], tokenizer: Any, limits: Limits,
                 generate: Callable, seed: int):
        if limits.env_failure not in ENV_FAILURES:
            raise ValueError(f"env_failure={limits.env_failure!r}; choose one of {ENV_FAILURES}")
        self.name, self.make_env, self.tok, self.lim, self.generate, self.seed = \
            env_name, make_env, tokenizer, limits, generate, seed
        probe = self._make(None)
        self.tools = env_tools(probe)  # the schemas shown to the model; calls run on each episode's own env
        if callable(getattr(probe, "close", None)):
            probe.close()
        self.chat = ChatTokens(tokenizer, tool_schemas(self.tools) if self.tools else None)
        self.parse = parser_for(tokenizer)

    def _make(self, seed: int | None) -> Any:
        try:
            return self.make_env()
        except Exception as err:  # noqa: BLE001 - the user's env class: one line naming it
            raise EnvError(f"{where(self.name, seed)}: creating the environment raised {type(err).__name__}: {err}") \
                from None

    def open_episode(self, seed: int) -> Episode:
        """A new environment reset with ``seed``: the episode's opening messages and their tokens."""
        env = self._make(seed)
        try:
            out = env.reset(seed=seed)
        except Exception as err:  # noqa: BLE001 - the user's env: one line naming it and the seed
            raise EnvError(f"{where(self.name, seed)}: reset raised {type(err).__name__}: {err}") from None
        if not (isinstance(out, tuple) and len(out) == 2):
            raise EnvError(f"{where(self.name, seed)}: reset returned {out!r:.100}; expected (messages, info)")
        messages = check_messages(out[0], f"{where(self.name, seed)}: reset")
        if not messages:
            raise EnvError(f"{where(self.name, seed)}: reset returned no message to open the episode")
        messages = self.chat.opening(messages)
        ids, text = self.chat.first_prompt(messages)
        if len(ids) >= self.lim.max_episode_tokens:
            raise ValueError(f"{where(self.name, seed)}: the opening messages are {len(ids)} tokens, leaving none of "
                             f"max_episode_tokens={self.lim.max_episode_tokens} to answer; raise --max-episode-tokens "
                             "(or use a model of a longer context)")
        return Episode(seed, env, ids, len(ids), list(messages), text)  # info: the last step's (reset's stays out)

    def run(self, model: Any, seeds: list[int], group_size: int, step: int, first: int = 0) -> list[Episode]:
        """G episodes per seed (group-major), played to their end; ``first``: the place of the first of them
        in the step's global batch (a process's share starts there), which keys their sampling."""
        eps = [self.open_episode(s) for s in seeds for _ in range(group_size)]
        eos = set(eos_ids_of(self.tok, model))
        device = next(model.parameters()).device
        # Under FSDP every forward pass is collective: the processes play a turn while any of them has an episode
        # going, with the same token budget (the largest, as one process would use); one with none rides along.
        synced = synced_processes(model)
        for turn in range(self.lim.max_turns):
            for e in eps:
                if not e.done and self.lim.max_episode_tokens - len(e.ids) < 1:
                    e.end("max_episode_tokens", truncated=True)
            live = [i for i, e in enumerate(eps) if not e.done]
            budget = [min(self.lim.max_new_tokens, self.lim.max_episode_tokens - len(eps[i].ids)) for i in live]
            most = synced_max(max(budget, default=0), synced)  # 0: no episode going anywhere
            if not most:
                break
            if not live:  # another process still plays: sample (and drop) a turn of the first opening
                ids, mask = _left_pad([eps[0].ids[:eps[0].prompt_len]], self.tok.pad_token_id, device)
                self.generate(model, self.tok, ids, mask, 1, most, self.lim.temperature, self.lim.top_p,
                              self.lim.top_k, self.lim.greedy, prompt_keys(self.seed, step, turn, [first]))
                continue
            ids, mask = _left_pad([eps[i].ids for i in live], self.tok.pad_token_id, device)
            keys = prompt_keys(self.seed, step, turn, [first + i for i in live])  # [n]: the turn's randomness
            roll = self.generate(model, self.tok, ids, mask, 1, most, self.lim.temperature, self.lim.top_p,
                                 self.lim.top_k, self.lim.greedy, keys)
            for row, (i, cap) in enumerate(zip(live, budget)):
                n = min(int(roll.completion_mask[row].sum()), cap)
                self.take_turn(eps[i], roll.completion_ids[row, :n].tolist(), turn, eos, cap < self.lim.max_new_tokens)
        for e in eps:
            if not e.done:
                e.end("max_turns", truncated=True)
        return eps

    def take_turn(self, e: Episode, sampled: list[int], turn: int, eos: set[int], episode_cap: bool) -> None:
        """Append the sampled tokens (trained) as sampled; the environment (or the tools) answer. ``episode_cap``:
        the turn's token budget was what the episode had left."""
        e.add(sampled, trained=True, turn=turn)
        e.rewards.append(0.0)
        if not sampled or sampled[-1] not in eos:
            e.end("max_episode_tokens" if episode_cap else "no end of turn", truncated=True)
            return
        text = self.tok.decode(sampled, skip_special_tokens=True)
        parsed = self.parse(text) if self.tools else ParsedTurn(text)
        msg = assistant_message(parsed) if parsed.wants_tools else {"role": "assistant", "content": text}
        if parsed.wants_tools:
            new, errors = run_tool_calls(parsed, env_tools(e.env), self.lim.tool_timeout_s)  # this episode's tools
            e.tool_calls += len(parsed.calls) + len(parsed.errors)
            e.tool_errors += errors
            reward, terminated, truncated = 0.0, False, False
        else:
            what = where(self.name, e.seed, turn)
            try:
                try:
                    result = e.env.step(msg)
                except Exception as err:  # noqa: BLE001 - the user's env: one line naming it
                    raise EnvError(f"{what}: step raised {type(err).__name__}: {err}") from None
                new, reward, terminated, truncated, info = check_step(result, what)
            except EnvError as err:
                if self.lim.env_failure == "raise":
                    raise
                e.failed, e.rewards = str(err), [0.0] * len(e.rewards)
                e.end("failed")
                return
            e.info = info
            if self.lim.hide_feedback:  # the rewards still count; the model learns nothing from the text
                new = [{**m, "content": HIDDEN} for m in new]
        e.rewards[-1] = reward
        history = list(e.messages)
        e.messages += [msg] + new
        if terminated or truncated:
            e.end("terminated" if terminated else "env truncated", truncated=truncated and not terminated,
                  terminated=terminated)
            return
        reply, e.prompted = self.chat.reply(history, msg, new, sampled[-1], e.prompted)
        if len(e.ids) + len(reply) >= self.lim.max_episode_tokens:
            e.end("max_episode_tokens", truncated=True)
            return
        e.add(reply, trained=False, turn=turn)
