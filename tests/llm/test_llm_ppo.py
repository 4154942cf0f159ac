"""LLM PPO: value model shapes, GAE on token sequences by hand, forward passes, learning, CLI."""

from __future__ import annotations

import json

import pytest
import torch

import grpo.llm.algorithms.ppo as ppo_mod
from grpo.cli import main
from grpo.llm.data.tasks import load_rows
from grpo.llm.evaluation import greedy_accuracy
from grpo.llm.rollout.generation import generate
from grpo.llm.modeling.logprobs import completion_logprobs
from grpo.llm.modeling.models import frozen_copy, load_model, load_tokenizer
from grpo.llm.algorithms.ppo import PPOTrainer, token_gae, token_rewards
from grpo.llm.ppo_config import PPOConfig
from grpo.llm.data.rewards import RewardSet
from grpo.llm.algorithms.value import build_value_model
from grpo.utils.io import read_jsonl


def _rollout(model, tok, prompts=("12+34=", "5+6=", "77+8="), G=3, C=5, seed=0):
    torch.manual_seed(seed)
    enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    return generate(model, tok, enc.input_ids, enc.attention_mask, G, C)


# ---------------------------------------------------------------------------- value model
def test_separate_critic_shapes_and_parameters(random_tiny):
    model, tok = random_tiny
    roll = _rollout(model, tok)
    critic = build_value_model("critic", model)
    v = critic.completion_values(roll.prompt_ids, roll.prompt_mask, roll.completion_ids, roll.completion_mask, 3)
    assert v.shape == roll.completion_ids.shape and v.dtype == torch.float32  # [N, C]
    assert torch.all(v == 0)  # zero head: V = 0 at the start
    # Same size as the policy's backbone, no storage shared with the policy.
    policy_ptrs = {p.data_ptr() for p in model.parameters()}
    own = critic.own_parameters()
    assert not policy_ptrs & {p.data_ptr() for p in own}
    n_backbone = sum(p.numel() for p in model.base_model.parameters())
    assert sum(p.numel() for p in own) == n_backbone + model.config.hidden_size + 1


def test_shared_head_adds_only_the_head(random_tiny):
    model, _ = random_tiny
    shared = build_value_model("shared", model)
    assert shared.backbone is model.base_model
    assert [p.shape for p in shared.own_parameters()] == [torch.Size([1, model.config.hidden_size]), torch.Size([1])]


def test_grouped_hidden_states_equal_a_plain_forward_pass(random_tiny):
    """The shared-prompt KV path gives the hidden states (and gradients) of the plain forward pass."""
    model, tok = random_tiny
    roll = _rollout(model, tok)
    critic = build_value_model("critic", model)
    torch.nn.init.normal_(critic.head.weight)
    args = (roll.prompt_ids, roll.prompt_mask, roll.completion_ids, roll.completion_mask)
    grouped = critic.completion_values(*args, 3)
    grouped.sum().backward()
    g1 = [p.grad.clone() for p in critic.parameters()]
    critic.zero_grad()
    plain = critic.completion_values(*args, 1)
    plain.sum().backward()
    m = roll.completion_mask.bool()
    torch.testing.assert_close(grouped[m], plain[m], atol=1e-5, rtol=1e-5)
    for a, b in zip(g1, [p.grad for p in critic.parameters()]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_shared_mode_logprobs_equal_the_policy_logprobs(random_tiny):
    model, tok = random_tiny
    roll = _rollout(model, tok)
    rows = [{"prompt": "1+1=", "answer": "2"}]
    trainer = PPOTrainer(PPOConfig(group_size=3, value_model="shared", beta=0), model, tok, rows,
                         RewardSet.from_specs(["exact"]))
    logp, values, ent = trainer.forward(roll, with_entropy=True)
    ref, ref_ent, _ = completion_logprobs(model, roll.prompt_ids, roll.prompt_mask, roll.completion_ids,
                                       roll.completion_mask, with_entropy=True)
    m = roll.completion_mask.bool()
    torch.testing.assert_close(logp[m], ref[m], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent[m], ref_ent[m], atol=1e-5, rtol=1e-5)
    assert values.shape == logp.shape


def test_value_model_save_and_load_round_trip(random_tiny, tmp_path):
    model, _ = random_tiny
    critic = build_value_model("critic", model)
    torch.nn.init.normal_(critic.head.weight)
    critic.save_pretrained(tmp_path / "v")
    other = build_value_model("critic", model)
    for p in other.backbone.parameters():
        p.data.add_(1.0)
    other.load_saved(tmp_path / "v")
    for a, b in zip(critic.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------- rewards and GAE on tokens
def _hand_gae(rewards, values, length, gamma, lam):
    """Plain-loop GAE over one completion of ``length`` real tokens; terminal after the last one."""
    adv, running = [0.0] * len(rewards), 0.0
    for t in reversed(range(length)):
        next_v = values[t + 1] if t + 1 < length else 0.0
        delta = rewards[t] + gamma * next_v - values[t]
        running = delta + gamma * lam * running
        adv[t] = running
    return adv, [a + values[t] if t < length else 0.0 for t, a in enumerate(adv)]


def test_token_rewards_put_the_score_on_the_last_real_token_and_kl_on_every_token():
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])  # full, early EOS, one token
    kl = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 9.0, 9.0], [0.7, 9.0, 9.0, 9.0]])  # 9: padding
    r = token_rewards(torch.tensor([1.0, 2.0, 3.0]), mask, kl, beta=0.5)
    expected = [[-0.05, -0.1, -0.15, 1.0 - 0.2], [-0.25, 2.0 - 0.3, 0.0, 0.0], [3.0 - 0.35, 0.0, 0.0, 0.0]]
    torch.testing.assert_close(r, torch.tensor(expected))


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0)])
def test_token_gae_matches_hand_computation_with_padding_and_early_eos(gamma, lam):
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    values = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5], [0.6, 0.7, 50.0, 50.0, 50.0], [0.2, -0.1, 0.3, -7.0, 9.0]])
    kl = torch.rand(3, 5)
    scores = torch.tensor([1.0, -1.0, 0.5])
    rewards = token_rewards(scores, mask, kl, beta=0.1)
    adv, ret = token_gae(rewards, values, mask, gamma, lam)
    for i in range(3):
        n = int(mask[i].sum())
        hand_adv, hand_ret = _hand_gae(rewards[i].tolist(), values[i].tolist(), n, gamma, lam)
        torch.testing.assert_close(adv[i], torch.tensor(hand_adv), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(ret[i], torch.tensor(hand_ret), atol=1e-6, rtol=1e-6)
    assert torch.all(adv[mask == 0] == 0) and torch.all(ret[mask == 0] == 0)


def test_token_gae_with_gamma_lambda_one_is_score_minus_value_and_ignores_padding_values():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    values = torch.tensor([[0.2, 0.4, 0.6, 123.0], [0.3, float("nan"), 5.0, 5.0]])
    adv, ret = token_gae(token_rewards(torch.tensor([1.0, 0.0]), mask), values, mask, 1.0, 1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.8, 0.6, 0.4, 0.0], [-0.3, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))


# ---------------------------------------------------------------------------- config
def test_config_rejects_grpo_only_options_and_bad_values():
    with pytest.raises(ValueError, match="GRPO-only"):
        PPOConfig(dynamic_sampling=True)
    with pytest.raises(ValueError, match="GRPO-only"):
        PPOConfig(mu=2)
    with pytest.raises(ValueError, match="kl_estimator=full is GRPO-only"):
        PPOConfig(kl_estimator="full")
    with pytest.raises(ValueError, match="minibatches"):
        PPOConfig(prompts_per_step=2, minibatches=3)
    with pytest.raises(ValueError, match="gae_lambda"):
        PPOConfig(gae_lambda=1.5)


# ---------------------------------------------------------------------------- the update
def _trainer(tiny_path, rewards=None, **overrides):
    torch.manual_seed(0)
    model, tok = load_model(str(tiny_path)), load_tokenizer(str(tiny_path))
    rows = load_rows("addition", "train")[:8]
    cfg = PPOConfig(**{"model": str(tiny_path), "max_new_tokens": 6, "lr": 1e-3, "prompts_per_step": 8,
                       "group_size": 8, "seed": 0, **overrides})
    ref = frozen_copy(model) if cfg.beta > 0 else None
    return PPOTrainer(cfg, model, tok, rows, rewards or RewardSet.from_specs(["exact"]), ref), rows


def _length_reward(prompts, completions, **_):
    """A reward with a spread in every group (the tiny model rarely gets a sum right on 4 prompts)."""
    return [float(len(c)) for c in completions]


def test_micro_batches_give_the_full_batch_update(tiny_path):
    """Micro-batching is gradient accumulation: the accumulated gradient equals the full batch's.
    Compared before the optimizer step: Adam's first step is about lr * sign(g), so parameters
    after it amplify float noise in near-zero gradient entries into lr-sized differences."""
    grads = []
    for micro in (None, 5):
        trainer, _ = _trainer(tiny_path, RewardSet({"len": _length_reward}), micro_batch=micro, epochs=1,
                              minibatches=1, group_size=4, prompts_per_step=4)
        params = list(trainer.policy.parameters()) + trainer.value_params
        seen, finish = [], trainer.guard.finish

        def capture(bad=False, _seen=seen, _params=params, _finish=finish):
            _seen.append([torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in _params])
            return _finish(bad)

        trainer.guard.finish = capture
        trainer.step(0)
        assert len(seen) == 1  # one minibatch, one epoch: one optimizer step
        grads.append(seen[0])
    scale = max(float(g.abs().max()) for g in grads[0])
    assert scale > 1e-3  # a real gradient, not float noise around zero
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5 * scale, rtol=1e-4)


@pytest.mark.parametrize("overrides", [{"kl_penalty": "loss"}, {"value_model": "shared"}, {"beta": 0.0}])
def test_variants_run_and_log(tiny_path, overrides):
    trainer, _ = _trainer(tiny_path, prompts_per_step=4, group_size=2, **overrides)
    m, _ = trainer.step(0)
    for key in ("loss/policy", "loss/value", "value/explained_variance", "clip/low_frac", "policy/grad_norm",
                "value/grad_norm", "reward/exact/mean", "time/step_s"):
        assert key in m and m[key] == m[key], key  # present and not NaN
    assert ("reward/kl_penalty" in m) == (overrides.get("kl_penalty", "reward") == "reward" and trainer.ref is not None)


# Learning, and its negative controls: the same 60 steps with one property broken. Measured over seeds
# 0-4 (cfg.seed and torch seed), gain = mean sampled accuracy of the last 10 steps minus the first 10:
# real 0.26-0.58; every token terminal in GAE -0.014 to -0.008; rewards of another prompt -0.020 to
# -0.013 (seeds 0-2). The critic is not claimed: GAE on a critic replaced by zeros learns as well
# (0.26-0.52, seeds 0-2), as does any baseline on a 6-token task.
PPO_STEPS, PPO_MIN_GAIN = 60, 0.13  # the bar sits in the middle of the measured gap


def _ppo_gain(tiny_path) -> tuple[float, list[float], float, float]:
    """(gain, accuracies per step, greedy accuracy before, after) of PPO_STEPS steps."""
    trainer, rows = _trainer(tiny_path)
    before = greedy_accuracy(trainer.policy, trainer.sampler.tok, rows, 6)
    acc = [trainer.step(s)[0]["train/accuracy"] for s in range(PPO_STEPS)]
    after = greedy_accuracy(trainer.policy, trainer.sampler.tok, rows, 6)
    return sum(acc[-10:]) / 10 - sum(acc[:10]) / 10, acc, before, after


def test_ppo_raises_accuracy_on_the_tiny_task(tiny_path):
    """The real loop must learn: 60 steps lift the sampled accuracy on 8 prompts well above its start."""
    gain, acc, before, after = _ppo_gain(tiny_path)
    assert gain >= PPO_MIN_GAIN, acc
    assert after > before, (before, after)


def every_token_terminal(monkeypatch):
    """GAE that ends the episode at every token (gamma 0): the score stays on the last token and
    never reaches the tokens that led to it."""
    real = ppo_mod.token_gae
    monkeypatch.setattr(ppo_mod, "token_gae", lambda rewards, values, mask, gamma, lam: real(rewards, values, mask,
                                                                                               0.0, lam))


def rewards_of_another_prompt(monkeypatch):
    """Each completion gets the score of its place in another prompt's group: [B, G] rolled by one."""
    real = ppo_mod.token_rewards
    monkeypatch.setattr(ppo_mod, "token_rewards", lambda scores, mask, kl=None, beta=0.0: real(
        scores.view(-1, 8).roll(1, 0).reshape(-1), mask, kl, beta))  # group_size 8, as _trainer


@pytest.mark.parametrize("control", [every_token_terminal,
                                     pytest.param(rewards_of_another_prompt, marks=pytest.mark.slow)],
                         ids=lambda f: f.__name__)
def test_broken_credit_assignment_does_not_learn(tiny_path, monkeypatch, control):
    control(monkeypatch)
    gain, acc, _, _ = _ppo_gain(tiny_path)
    assert gain < PPO_MIN_GAIN, acc


# ---------------------------------------------------------------------------- CLI
FAST = ["--prompts-per-step", "2", "--group-size", "4", "--max-new-tokens", "4", "--eval-limit", "8",
        "--progress", "false", "--tensorboard", "false", "--threads", "1"]


def test_cli_train_ppo_end_to_end_with_resume(tiny_path, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["llm", "train", "--algo", "ppo", "--model", str(tiny_path), "--out", str(out), "--save-every", "2",
            "--steps", "3", "--epochs", "2", "--minibatches", "2", *FAST]
    assert main(args) == 0
    assert "greedy accuracy after 3 steps" in capsys.readouterr().out
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1, 2]
    assert {"loss/value", "value/explained_variance", "kl/ref", "reward/kl_penalty"} <= set(metrics[0])
    assert (out / "checkpoint-000002" / "value_model" / "value_head.safetensors").exists()
    assert json.loads((out / "run_config.json").read_text())["algo"] == "ppo"
    assert main(["llm", "train", "--algo", "ppo", "--model", str(tiny_path), "--out", str(out), "--resume", "true",
                 "--save-every", "2", "--steps", "4", *FAST]) == 0
    assert [m["step"] for m in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2, 3]


def test_cli_refuses_ppo_options_without_algo_ppo(tiny_path, tmp_path, capsys):
    assert main(["llm", "train", "--model", str(tiny_path), "--out", str(tmp_path / "r"), "--vf-coef", "0.5",
                 *FAST]) == 2
    assert "--algo ppo" in capsys.readouterr().err
