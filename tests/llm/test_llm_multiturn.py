"""Multi-turn rollouts (issue 14): token-exact trajectories, masks, group seeding, limits, bad envs."""

from __future__ import annotations

import math

import pytest
import torch

from grpo.llm.envs.base import EnvError
from grpo.llm.rollout.episode_batch import dropped_groups, episode_batch, episode_records
from grpo.llm.rollout.episodes import EpisodeRunner, Limits
from grpo.llm.rollout.seeding import group_seeds

from multiturn_helpers import FakeModel, TwoTurnEnv, char_tokenizer, merging_tokenizer, scripted


def run(env_cls, tok, turns, seeds=(7,), G=2, **limits):
    lim = Limits(**{"max_turns": 4, "max_episode_tokens": 200, "max_new_tokens": 8, **limits})
    gen = scripted(tok, turns)
    runner = EpisodeRunner("toy", env_cls, tok, lim, gen, seed=0)
    return runner.run(FakeModel(tok.eos_token_id), list(seeds), G, step=0), gen


def test_sampled_tokens_are_kept_as_sampled_across_turns():
    tok = merging_tokenizer()
    a, b, ab, eos = (tok.convert_tokens_to_ids(t) for t in ("a", "b", "ab", "<eos>"))
    assert tok("ab", add_special_tokens=False).input_ids == [ab]  # re-encoding would merge them
    (ep, _), gen = run(TwoTurnEnv, tok, [[a, b, eos]])
    enc = lambda s: tok(s, add_special_tokens=False).input_ids  # noqa: E731
    want = enc("u:go7\na:") + [a, b, eos] + enc("\nu:x\na:") + [a, b, eos]
    assert ep.ids == want
    assert ab not in ep.ids
    # the second turn's prompt was these very ids, not a re-encoding of the transcript
    assert gen.calls[1][0].tolist() == want[:len(want) - 3]
    assert ep.rewards == [1.0, 1.0] and ep.terminated and not ep.truncated


def test_hidden_feedback_replaces_the_env_text_only():
    tok = char_tokenizer()
    (e, _), _ = run(TwoTurnEnv, tok, ["ab"], hide_feedback=True)
    assert e.messages == [{"role": "user", "content": "go7"}, {"role": "assistant", "content": "ab"},
                          {"role": "user", "content": "..."}, {"role": "assistant", "content": "ab"},
                          {"role": "user", "content": "..."}]  # the last reply: in the transcript, not the ids
    assert tok.decode(e.ids) == "u:go7\na:ab<eos>\nu:...\na:ab<eos>" and e.rewards == [1.0, 1.0]


def test_env_tokens_are_masked_out_of_loss():
    tok = merging_tokenizer()
    a, b, eos = (tok.convert_tokens_to_ids(t) for t in ("a", "b", "<eos>"))
    eps, _ = run(TwoTurnEnv, tok, [[a, b, eos]])
    batch = episode_batch(eps, [7], tok, "keep", 1.0, 0.0)
    n_prompt = len(tok("u:go7\na:", add_special_tokens=False).input_ids)
    n_reply = len(tok("\nu:x\na:", add_special_tokens=False).input_ids)
    want = [1.0] * 3 + [0.0] * n_reply + [1.0] * 3
    assert batch.loss_mask[0].tolist() == want
    assert batch.rollout.completion_mask[0].tolist() == [1] * len(want)  # env tokens are context
    assert batch.rollout.prompt_ids.shape[1] == n_prompt
    assert batch.turn_index[0].tolist() == [0] * (3 + n_reply) + [1] * 3
    spans = episode_records(batch, tok, 0, 1)[0]["tokens"]
    assert [s for s in spans if s[0]] == [[True, "ab<eos>"], [True, "ab<eos>"]]
    assert [False, "\nu:x\na:"] in spans


def test_group_seeding():
    tok = char_tokenizer()
    eps, _ = run(TwoTurnEnv, tok, ["ab"], seeds=(3, 5), G=2)
    first = [e.ids[:e.prompt_len] for e in eps]
    assert first[0] == first[1] and first[2] == first[3] and first[0] != first[2]
    assert [e.seed for e in eps] == [3, 3, 5, 5]
    seeds = group_seeds(0, 4, 16)
    assert len(set(seeds)) == 16 and seeds == group_seeds(0, 4, 16)
    assert seeds != group_seeds(1, 4, 16) and not set(seeds) & set(group_seeds(0, 5, 16))


def test_limits_truncate():
    class Forever(TwoTurnEnv):
        def step(self, message):
            return [{"role": "user", "content": "x"}], 0.5, False, False, {}

    tok = char_tokenizer()
    (e, _), _ = run(Forever, tok, ["ab"], max_turns=3)
    assert e.stop == "max_turns" and e.truncated and e.turns == 3
    (e, _), _ = run(Forever, tok, ["ab"], max_episode_tokens=20)
    assert e.stop == "max_episode_tokens" and e.truncated and len(e.ids) <= 20
    with pytest.raises(ValueError, match=r"opening messages are 8 tokens, leaving none of max_episode_tokens=8"):
        run(Forever, tok, ["ab"], max_episode_tokens=8)
    (e, _), _ = run(Forever, tok, ["abcdefghij"], max_new_tokens=4)  # no end of turn within 4 tokens
    assert e.stop == "no end of turn" and e.truncated and e.turns == 1
    b = episode_batch([e, e], [1], tok, "penalize", 2.0, 0.0)
    assert b.returns.tolist() == [0.0 - 2.0] * 2  # the cut turn's reward 0, minus the penalty
    assert float(episode_batch([e, e], [1], tok, "mask", 2.0, 0.0).loss_mask.sum()) == 0.0


def test_an_episode_the_env_truncates_keeps_its_reward_under_every_truncation_policy():
    class TimeLimit(TwoTurnEnv):  # the environment's own limit, with the reward it chose for running out
        def step(self, message):
            return [{"role": "user", "content": "x"}], -1.5, False, True, {}

    tok = char_tokenizer()
    (e, _), _ = run(TimeLimit, tok, ["ab"])
    assert e.stop == "env truncated" and e.truncated and not e.cut
    for policy in ("keep", "penalize", "mask"):
        b = episode_batch([e, e], [1], tok, policy, 2.0, 0.0)
        assert b.returns.tolist() == [-1.5, -1.5] and float(b.loss_mask.sum()) > 0, policy
    (cut, _), _ = run(TimeLimit, tok, ["abcdefghij"], max_new_tokens=4)  # cut by the rollout: the policy applies
    assert cut.cut and episode_batch([cut, cut], [1], tok, "penalize", 2.0, 0.0).returns.tolist() == [-2.0] * 2


class Raising(TwoTurnEnv):
    def step(self, message):
        raise RuntimeError("boom")


class NotMessages(TwoTurnEnv):
    def step(self, message):
        return "x", 1.0, False, False, {}


class NaNReward(TwoTurnEnv):
    def step(self, message):
        return [], float("nan"), True, False, {}


class NotBool(TwoTurnEnv):
    def step(self, message):
        return [], 1.0, 1, False, {}


class NumpyOk(TwoTurnEnv):
    def step(self, message):
        import numpy as np

        new, reward, done, trunc, info = super().step(message)
        return new, np.float32(reward), np.bool_(done), np.bool_(trunc), info


def test_numpy_scalars_are_accepted():
    tok = merging_tokenizer()
    a, b, eos = (tok.convert_tokens_to_ids(t) for t in ("a", "b", "<eos>"))
    eps, _ = run(NumpyOk, tok, [[a, b, eos]])
    assert eps[0].rewards == [1.0, 1.0] and eps[0].terminated


class NoInit(TwoTurnEnv):
    def __init__(self):
        raise OSError("no such file")


class BadReset:
    def reset(self, seed=None, options=None):
        return [{"role": "robot", "content": "hi"}], {}


@pytest.mark.parametrize("env, words", [(Raising, "step raised RuntimeError: boom"),
                                        (NotMessages, "returned 'x' (str), not a list of messages"),
                                        (NaNReward, "reward nan, not a finite number"),
                                        (NotBool, "terminated=1, not a bool"),
                                        (BadReset, "not a message"),
                                        (NoInit, "creating the environment raised OSError: no such file")])
def test_bad_env_raises_one_line_naming_env_and_episode(env, words):
    with pytest.raises(EnvError) as err:
        run(env, char_tokenizer(), ["ab"], seeds=(11,))
    text = str(err.value)
    assert "env 'toy'" in text and words in text and "\n" not in text
    assert "episode seed 11" in text or env is NoInit  # made once before any episode, to read its tools


def test_bad_env_policies_zero_and_drop():
    tok = char_tokenizer()
    eps, _ = run(NaNReward, tok, ["ab"], seeds=(1, 2), env_failure="zero")
    assert all(e.failed and e.stop == "failed" and e.ret == 0.0 for e in eps)

    class FailsOnSeed2(TwoTurnEnv):
        def reset(self, seed=None, options=None):
            self.seed = seed
            return super().reset(seed)

        def step(self, message):
            if self.seed == 2:
                raise ValueError("bad")
            return super().step(message)

    eps, _ = run(FailsOnSeed2, tok, ["ab"], seeds=(1, 2), env_failure="drop")
    b = episode_batch(eps, [1, 2], tok, "keep", 1.0, 0.0)
    assert dropped_groups(b, 2).tolist() == [False, False, True, True]
    assert eps[0].ret == 2.0 and math.isclose(b.returns[0], 2.0)


def test_tool_calls_run_and_errors_go_back_as_tool_messages():
    from grpo.llm.envs.calculator import CalculatorEnv

    tok = char_tokenizer()
    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "2+3"}}</tool_call>'
    bad = '<tool_call>{"name": "calculator", "arguments": </tool_call>'
    eps, _ = run(CalculatorEnv, tok, [call, bad, "7"], G=1, max_episode_tokens=2000, max_new_tokens=100)
    e = eps[0]
    tool_msgs = [m for m in e.messages if m["role"] == "tool"]
    assert tool_msgs[0]["content"] == "5" and tool_msgs[1]["content"].startswith("error: malformed tool call")
    assert e.tool_calls == 2 and e.tool_errors == 1 and e.turns == 3 and e.terminated
    assert e.messages[2]["tool_calls"][0]["function"] == {"name": "calculator", "arguments": {"expression": "2+3"}}
    b = episode_batch(eps, [7], tok, "keep", 1.0, 0.0)
    trained = "".join(t for m, t in episode_records(b, tok, 0, 1)[0]["tokens"] if m)
    assert trained == call + "<eos>" + bad + "<eos>" + "7<eos>"  # tool results are never trained on


def test_outcome_and_turn_advantages_by_hand():
    from types import SimpleNamespace

    from grpo.llm.algorithms.multiturn import MultiTurnTrainer

    class Script(TwoTurnEnv):  # episode 0 of the group: rewards [0, 1]; episode 1: [0] then truncated
        count = 0

        def reset(self, seed=None, options=None):
            self.k, Script.count = Script.count, Script.count + 1
            return super().reset(seed)

        def step(self, message):
            self.t += 1
            if self.k == 1:
                return [{"role": "user", "content": "x"}], 0.0, False, True, {}
            return [{"role": "user", "content": "x"}], float(self.t == 2), self.t >= 2, False, {}

    tok = char_tokenizer()
    eps, _ = run(Script, tok, ["ab"], seeds=(1,), G=2)
    assert [e.rewards for e in eps] == [[0.0, 1.0], [0.0]]
    b = episode_batch(eps, [1], tok, "keep", 1.0, 0.0)
    a = 0.5 / (0.5 ** 0.5 + 1e-4)  # centred return / (group std + eps)
    half = 0.25 / (0.5 * 0.5 ** 0.5 + 1e-4)  # gamma 0.5: turn 0's returns-to-go are 0.5 and 0
    for mode, gamma, first, second in (("outcome", 1.0, [a, a], [-a]), ("turn", 1.0, [a, 0.0], [-a]),
                                       ("turn", 0.5, [half, 0.0], [-half]),
                                       ("turn", 0.0, [0.0, 0.0], [0.0])):  # gamma 0: turn 0's rewards tie
        cfg = SimpleNamespace(group_size=2, env_advantage=mode, reward_scale="group", env_gamma=gamma)
        adv = MultiTurnTrainer.advantages(SimpleNamespace(cfg=cfg, device="cpu"), b)  # [N, C]
        sampled = b.loss_mask.bool()
        turn = b.turn_index
        got0 = [float(adv[0][sampled[0] & (turn[0] == k)].unique()) for k in (0, 1)]
        got1 = [float(adv[1][sampled[1] & (turn[1] == 0)].unique())]
        assert got0 == pytest.approx(first, abs=1e-5) and got1 == pytest.approx(second, abs=1e-5), mode


def test_tools_are_described_when_the_template_ignores_them():
    from grpo.llm.envs.calculator import CalculatorEnv

    eps, _ = run(CalculatorEnv, char_tokenizer(), ["1"], G=1, max_episode_tokens=5000)
    system = eps[0].messages[0]
    assert system["role"] == "system" and '"name": "calculator"' in system["content"]
    assert system["content"].startswith("Solve the problem.") and "<tool_call>" in system["content"]
    eps, _ = run(TwoTurnEnv, char_tokenizer(), ["ab"], G=1)  # no tools: the opening is the env's own
    assert eps[0].messages[0] == {"role": "user", "content": "go7"}


def test_chatml_tool_turns_match_the_template_rendering():
    """A model that writes calls in the template's own form: its trajectory reads exactly as the template
    renders the whole conversation (tool results grouped in one user turn), though built turn by turn."""
    from grpo.llm.envs.calculator import CalculatorEnv

    from multiturn_helpers import chatml_tokenizer

    tok = chatml_tokenizer()
    one = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2+3"}}\n</tool_call>'
    two = one + "\n" + one.replace("2+3", "4*5")
    eps, _ = run(CalculatorEnv, tok, [one, two, "42"], G=1, max_episode_tokens=5000, max_new_tokens=200)
    e = eps[0]
    assert [m["role"] for m in e.messages] == ["system", "user", "assistant", "tool", "assistant", "tool", "tool",
                                               "assistant"]
    assert [m["content"] for m in e.messages if m["role"] == "tool"] == ["5", "5", "20"]
    assert '<tools>\n{"type": "function", "function": {"name": "calculator"' in tok.decode(e.ids)  # the template's
    assert "<tools>" not in e.messages[0]["content"]  # so no description of our own in the system message
    rendered = tok.apply_chat_template(e.messages, tools=eps_schemas(), tokenize=False)
    assert tok.decode(e.ids) == rendered.removesuffix("\n")
    trained = [t for m, t in episode_records(episode_batch(eps, [7], tok, "keep", 0.0, 0.0), tok, 0, 1)[0]["tokens"]
               if m]
    assert trained == [one + "<|im_end|>", two + "<|im_end|>", "42<|im_end|>"]


def eps_schemas():
    from grpo.llm.envs.calculator import CalculatorEnv
    from grpo.llm.envs.tools import tool_schemas

    return tool_schemas(CalculatorEnv.tools)
