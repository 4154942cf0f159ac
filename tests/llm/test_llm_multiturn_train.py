"""End to end (issue 14): ``train`` with ``env=`` runs the tiny model through multi-turn episodes."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from multiturn_helpers import chat_tiny_folder

ENV_MODULE = '''
class AddEnv:
    """Two additions of one digit each; reward 1 per right answer."""

    def reset(self, seed=None, options=None):
        self.seed, self.t = seed or 0, 0
        return [{"role": "user", "content": self.question()}], {}

    def question(self):
        return f"{(self.seed + self.t) % 10}+{(self.seed // 10 + self.t) % 10}="

    def step(self, message):
        a, b = (self.seed + self.t) % 10, (self.seed // 10 + self.t) % 10
        right = message["content"].strip() == str(a + b)
        self.t += 1
        done = self.t >= 2
        return ([] if done else [{"role": "user", "content": self.question()}]), float(right), done, False, \\
            {"right": float(right)}
'''


@pytest.fixture
def chat_tiny(tmp_path, monkeypatch):
    """The shipped tiny model with a chat template, and a module defining a toy env on the path."""
    yield chat_tiny_folder(tmp_path, monkeypatch, "toy_add_env", ENV_MODULE)
    sys.modules.pop("toy_add_env", None)


def test_two_steps_of_multi_turn_training(chat_tiny, tmp_path, advantage="turn"):
    from grpo.llm.config import GRPOConfig
    from grpo.llm.run import train

    out = tmp_path / f"run-{advantage}"
    cfg = GRPOConfig(model=str(chat_tiny), env="toy_add_env:AddEnv", steps=2, prompts_per_step=2, group_size=4,
                     max_turns=3, max_new_tokens=4, max_episode_tokens=48, env_advantage=advantage,
                     env_eval_episodes=4, out=str(out), progress=False, report_to=["none"], samples_every=1,
                     log_samples=2, lr=1e-3)
    summary = train(cfg, log=lambda *_: None)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1]
    for m in metrics:
        assert 1 <= m["episode/turns_mean"] <= 3
        assert 0 <= m["episode/truncated_frac"] <= 1 and "tools/calls_per_episode" in m
        assert m["episode/return_mean"] == m["reward/total/mean"] and 0 <= m.get("env/right", 0.0) <= 1
        assert "loss/policy" in m or m["groups/zero_std_frac"] == 1.0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and samples[0]["messages"][0]["role"] == "user"
    assert any(t for t, _ in samples[0]["tokens"]) and any(not t for t, _ in samples[0]["tokens"])
    assert "episode/return_mean" in summary["env_eval_before"] and "episode/turns_mean" in summary["env_eval_after"]


@pytest.mark.parametrize("policy, want", [("keep", 0.0), ("penalize", -5.0)])
def test_the_evaluation_return_counts_the_truncation_penalty_as_training_does(chat_tiny, tmp_path, policy, want):
    """One new token per turn leaves no room for an end of turn: every episode is cut at its first turn
    (reward 0), so the evaluated return is exactly minus the penalty, or 0 when truncation is kept."""
    from grpo.llm.config import GRPOConfig
    from grpo.llm.run import train

    cfg = GRPOConfig(model=str(chat_tiny), env="toy_add_env:AddEnv", steps=1, prompts_per_step=1, group_size=2,
                     max_turns=2, max_new_tokens=1, truncated=policy, truncated_penalty=5.0, env_eval_episodes=3,
                     out=str(tmp_path / policy), progress=False, report_to=["none"])
    before = train(cfg, log=lambda *_: None)["env_eval_before"]
    assert before["episode/truncated_frac"] == 1.0 and before["episode/return_mean"] == want
