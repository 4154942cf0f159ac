"""``grpo llm sft``: expert demonstrations laid out as the rollout lays out sampled turns, the loss on
the assistant's tokens only, a model that learns the expert's answer (and a control that does not)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from multiturn_helpers import FakeModel, char_tokenizer, chat_tiny_folder, chatml_tokenizer, scripted

WORD_ENV = '''
class WordEnv:
    """The user asks for the word; reward 1 for "zebra", which nothing in the prompt gives away."""

    def reset(self, seed=None, options=None):
        return [{"role": "user", "content": f"word {(seed or 0) % 10}?"}], {}

    def step(self, message):
        right = float(message["content"] == "zebra")
        return [], right, True, False, {"right": right}

    def expert(self, messages):
        return "zebra"


class NoExpertEnv(WordEnv):
    expert = None
'''


def _runner(env, tok, max_new=200):
    from grpo.llm.rollout.episodes import EpisodeRunner, Limits

    return EpisodeRunner("test-env", env, tok, Limits(4, 4096, max_new, greedy=True), generate=None, seed=0)


def test_expert_turns_are_laid_out_token_for_token_as_sampled_turns():
    """The calculator's expert (a tool call, then the answer) against the same texts sampled by a
    scripted engine through the rollout: the same ids, the same trained mask, the same transcript."""
    from grpo.llm.envs.calculator import CalculatorEnv
    from grpo.llm.rollout.demonstrations import expert_episodes

    tok = chatml_tokenizer()
    model = FakeModel(tok.eos_token_id)
    [demo] = expert_episodes(_runner(CalculatorEnv, tok), [7], tok.eos_token_id)
    env = CalculatorEnv()
    env.reset(seed=7)
    call = env.expert([{"role": "user", "content": "?"}])
    runner = _runner(CalculatorEnv, tok)
    runner.generate = scripted(tok, [call, f"The answer is {env.answer}."])
    [played] = runner.run(model, [7], 1, step=0)
    assert demo.ids == played.ids and demo.trained == played.trained and demo.messages == played.messages
    assert demo.ret == 1.0 and demo.tool_calls == 1 and demo.tool_errors == 0 and demo.terminated
    trained = tok.decode([t for t, k in zip(demo.ids, demo.trained) if k])
    assert trained == f"{call}<|im_end|>The answer is {env.answer}.<|im_end|>"  # the tool's reply is not trained


def test_the_calculator_expert_solves_every_problem_through_the_tool():
    from grpo.llm.envs.calculator import CalculatorEnv
    from grpo.llm.rollout.demonstrations import expert_episodes

    tok = chatml_tokenizer()
    episodes = expert_episodes(_runner(CalculatorEnv, tok), list(range(40)), tok.eos_token_id)
    assert [e.ret for e in episodes] == [1.0] * 40
    assert {e.tool_calls for e in episodes} == {1} and {e.tool_errors for e in episodes} == {0}
    # each template appears, and the answer came back from the tool, not from the expert's own arithmetic
    assert len({e.messages[1]["content"].split()[1] for e in episodes}) == 5
    assert all(e.messages[-1]["content"] == f"The answer is {e.messages[-2]['content']}." for e in episodes)


def test_an_env_without_an_expert_is_refused_in_one_line(tmp_path, monkeypatch):
    from grpo.llm.rollout.demonstrations import expert_episodes

    (tmp_path / "word_env.py").write_text(textwrap.dedent(WORD_ENV))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("word_env", None)
    import word_env

    tok = char_tokenizer()
    with pytest.raises(ValueError, match=r"env 'test-env' has no expert\(messages\) method"):
        expert_episodes(_runner(word_env.NoExpertEnv, tok), [0], tok.eos_token_id)
    sys.modules.pop("word_env", None)


@pytest.mark.parametrize("through_head", [True, False])
def test_the_loss_is_the_mean_nll_of_the_trained_tokens_only(random_tiny, monkeypatch, through_head):
    """Against cross-entropy on the full logits at the trained positions; both paths (chunked head, logits)."""
    import grpo.llm.modeling.hidden as hidden
    from grpo.llm.sft import sft_loss

    model, _ = random_tiny
    if not through_head:
        monkeypatch.setattr(hidden, "lm_head_of", lambda m: None)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 40, (3, 9), generator=g)  # [n, T]
    att = torch.ones_like(ids)
    att[2, 6:] = 0  # a right-padded row
    trained = torch.zeros_like(ids, dtype=torch.bool)
    trained[0, 4:7], trained[1, 2], trained[1, 8], trained[2, 3:6] = True, True, True, True
    loss = sft_loss(model, ids, att, trained)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=att).logits  # [n, T, V]
    want = torch.nn.functional.cross_entropy(logits[:, :-1][trained[:, 1:]], ids[:, 1:][trained[:, 1:]])
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)


@pytest.fixture
def word_tiny(tmp_path, monkeypatch):
    """The shipped tiny model with a chat template, and the toy word env's module on the path."""
    yield chat_tiny_folder(tmp_path, monkeypatch, "word_env", WORD_ENV)
    sys.modules.pop("word_env", None)


@pytest.mark.parametrize("on", ["assistant", "context"])
def test_sft_teaches_the_experts_answer_and_the_context_mask_does_not(word_tiny, on):
    """The claim: training on the assistant's tokens makes the model write the expert's answer. The
    control trains the same steps on every other token of the same episodes instead."""
    import word_env
    from grpo.llm.modeling.models import load_model, load_tokenizer
    from grpo.llm.rollout.demonstrations import expert_episodes
    from grpo.llm.rollout.generation import GENERATORS
    from grpo.llm.sft import demonstration_batch, sft_loss

    torch.manual_seed(0)
    model, tok = load_model(str(word_tiny)), load_tokenizer(str(word_tiny))
    runner = _runner(word_env.WordEnv, tok, max_new=8)
    demos = expert_episodes(runner, list(range(8)), tok.eos_token_id)
    ids, att, trained = demonstration_batch(demos, tok.pad_token_id)
    mask = trained if on == "assistant" else att.bool() & ~trained
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(60):  # lr 1e-2 overshoots; 3e-3 and 60 steps take the loss below 0.05
        loss = sft_loss(model, ids, att, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    runner.generate = GENERATORS.get("cached")
    with torch.no_grad():
        played = runner.run(model, list(range(100, 110)), 1, step=0)  # reset seeds never demonstrated
    solved = sum(e.ret for e in played) / len(played)
    assert solved == 1.0 if on == "assistant" else solved == 0.0


def test_the_sft_command_writes_a_loadable_model_and_guards_its_folder(word_tiny, tmp_path):
    out = tmp_path / "sft"
    cmd = [sys.executable, "-m", "grpo", "llm", "sft", "--env", "word_env:WordEnv", "--model", str(word_tiny),
           "--episodes", "6", "--batch-size", "4", "--lr", "1e-3", "--threads", "1", "--out", str(out)]
    env = {"PYTHONPATH": f"{tmp_path}:{':'.join(sys.path)}"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["demonstrations"] == 6 and summary["trained_on"] == 6 and summary["steps"] == 2
    assert summary["demonstration_return_mean"] == 1.0
    assert len((out / "demonstrations.jsonl").read_text().splitlines()) == 6
    assert len((out / "sft_metrics.jsonl").read_text().splitlines()) == 2
    from grpo.llm.modeling.models import load_model

    assert load_model(str(out / "final")) is not None
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)  # the folder holds a run
    assert again.returncode != 0 and "--overwrite" in again.stderr
    bad = subprocess.run(cmd[:6] + ["word_env:NoExpertEnv"] + cmd[7:-1] + [str(tmp_path / "other")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode != 0 and "has no expert(messages) method" in bad.stderr
