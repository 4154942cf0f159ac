"""Advantage estimators against hand-computed values and the paper's formulas."""

import math

import pytest
import torch

from grpo.core import (
    discounted_returns,
    gae,
    group_advantages,
    process_advantages,
    timestep_group_advantages,
)


def test_group_advantages_by_hand():
    # rewards 1, 0, 0, 1: mean 0.5, unbiased std sqrt(1/3) = 0.57735
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]), eps=0.0)
    expected = 0.5 / math.sqrt(1 / 3)
    assert torch.allclose(adv, torch.tensor([[expected, -expected, -expected, expected]]))


def test_group_advantages_are_per_group_and_zero_mean():
    rewards = torch.tensor([[0.0, 1.0, 2.0], [10.0, 10.0, 40.0]])
    adv = group_advantages(rewards, eps=0.0)
    assert torch.allclose(adv.mean(1), torch.zeros(2), atol=1e-6)
    # Each group is scaled by its own std: both rows have unit std.
    assert torch.allclose(adv.std(1), torch.ones(2), atol=1e-6)
    # Second group: mean 20, std sqrt(300)
    assert torch.allclose(adv[1], (rewards[1] - 20) / math.sqrt(300))


def test_equal_rewards_give_zero_not_nan():
    for scale in ("group", "batch", "none"):
        adv = group_advantages(torch.tensor([[0.3, 0.3, 0.3], [1.0, 1.0, 1.0]]), scale=scale)
        assert torch.equal(adv, torch.zeros(2, 3)), scale


def test_batch_and_none_scales():
    rewards = torch.tensor([[0.0, 2.0], [1.0, 5.0]])
    centred = torch.tensor([[-1.0, 1.0], [-2.0, 2.0]])
    assert torch.allclose(group_advantages(rewards, scale="none"), centred)
    batch_std = rewards.flatten().std()  # std over all four rewards
    assert torch.allclose(group_advantages(rewards, scale="batch", eps=0.0), centred / batch_std)


def test_group_advantages_rejects_bad_shapes_and_scales():
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.tensor([[1.0], [2.0]]))
    with pytest.raises(ValueError, match="reward scale"):
        group_advantages(torch.zeros(2, 2), scale="median")


def test_process_advantages_match_paper_definition():
    # One group, G = 2. Sample 0 has steps ending at tokens 1 and 3; sample 1 one step ending at 2.
    step_rewards = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])
    step_ends = torch.tensor([[[1, 3], [2, 0]]])
    step_mask = torch.tensor([[[True, True], [True, False]]])
    adv = process_advantages(step_rewards, step_ends, step_mask, num_tokens=4, eps=0.0)
    # Normalised over the group's three steps {1, 0, 0.5}: mean 0.5, unbiased std 0.5.
    n = {"s00": 1.0, "s01": -1.0, "s10": 0.0}
    expected = torch.tensor([[
        [n["s00"] + n["s01"], n["s00"] + n["s01"], n["s01"], n["s01"]],  # t <= 1 sees both steps
        [n["s10"], n["s10"], n["s10"], 0.0],  # after its last step ends, nothing remains
    ]])
    assert torch.allclose(adv, expected)


def test_process_advantages_loop_equivalence():
    torch.manual_seed(0)
    B, G, S, T = 3, 4, 5, 9
    rewards = torch.randn(B, G, S)
    ends = torch.randint(0, T, (B, G, S))
    mask = torch.rand(B, G, S) > 0.3
    adv = process_advantages(rewards, ends, mask, T, eps=0.0)
    for b in range(B):
        vals = rewards[b][mask[b]]
        mean, std = vals.mean(), vals.std()
        for g in range(G):
            for t in range(T):
                total = sum(((rewards[b, g, s] - mean) / std).item()
                            for s in range(S) if mask[b, g, s] and ends[b, g, s] >= t)
                assert adv[b, g, t].item() == pytest.approx(total, abs=1e-4)


def test_discounted_returns_stop_at_padding():
    rewards = torch.tensor([[1.0, 1.0, 1.0, 7.0]])
    mask = torch.tensor([[True, True, True, False]])
    out = discounted_returns(rewards, mask, gamma=0.5)
    assert torch.allclose(out, torch.tensor([[1.75, 1.5, 1.0, 0.0]]))


def test_timestep_group_advantages_compare_alive_samples_only():
    # G = 3 episodes of lengths 3, 2, 1 with reward 1 per step, undiscounted.
    mask = torch.tensor([[[1, 1, 1], [1, 1, 0], [1, 0, 0]]], dtype=torch.bool)
    returns = discounted_returns(torch.ones(1, 3, 3), mask, gamma=1.0)  # [[3,2,1],[2,1,0],[1,0,0]]
    adv = timestep_group_advantages(returns, mask, eps=0.0)
    # t=0: returns 3, 2, 1 -> z = 1, 0, -1. t=1: 2, 1 -> +-0.7071. t=2: one alive -> 0.
    s = 1 / math.sqrt(2)
    expected = torch.tensor([[[1.0, s, 0.0], [0.0, -s, 0.0], [-1.0, 0.0, 0.0]]])
    assert torch.allclose(adv, expected, atol=1e-6)


def gae_reference(rewards, values, next_values, terminated, ended, gamma, lam):
    """Direct formula: A_t = sum_k (gamma lam)^k delta_{t+k}, stopping at an episode end."""
    T = len(rewards)
    deltas = [rewards[t] + gamma * next_values[t] * (1 - terminated[t]) - values[t] for t in range(T)]
    out = []
    for t in range(T):
        total, factor = 0.0, 1.0
        for k in range(t, T):
            total += factor * deltas[k]
            if ended[k]:
                break
            factor *= gamma * lam
        out.append(total)
    return out


def test_gae_matches_direct_formula_with_termination_and_truncation():
    rewards = [1.0, 0.5, 2.0, 1.0, -1.0, 0.0]
    values = [0.3, 0.2, 0.9, 0.1, 0.4, 0.6]
    # Step 2 is truncated: it bootstraps from V(final obs) = 5.0; step 4 terminates: no bootstrap.
    next_values = [0.2, 0.9, 5.0, 0.4, 123.0, 0.7]
    terminated = [0, 0, 0, 0, 1, 0]
    ended = [0, 0, 1, 0, 1, 0]
    gamma, lam = 0.9, 0.8
    adv, ret = gae(*(torch.tensor([x], dtype=torch.float) for x in (rewards, values, next_values, terminated, ended)),
                   gamma=gamma, lam=lam)
    expected = gae_reference(rewards, values, next_values, terminated, ended, gamma, lam)
    assert torch.allclose(adv[0], torch.tensor(expected), atol=1e-6)
    assert torch.allclose(ret, adv + torch.tensor([values]))
    # By hand for the truncated step: delta = 2 + 0.9 * 5 - 0.9 = 5.6, and nothing after it.
    assert adv[0, 2].item() == pytest.approx(5.6)
    # The terminated step ignores its next value entirely: delta = -1 - 0.4.
    assert adv[0, 4].item() == pytest.approx(-1.4)


def test_gae_lambda_one_is_discounted_return_minus_value():
    torch.manual_seed(1)
    rewards, values = torch.randn(2, 7), torch.randn(2, 7)
    terminated = torch.zeros(2, 7)
    terminated[:, -1] = 1
    next_values = torch.cat([values[:, 1:], torch.zeros(2, 1)], dim=1)
    adv, _ = gae(rewards, values, next_values, terminated, terminated, gamma=0.95, lam=1.0)
    ret = discounted_returns(rewards, torch.ones(2, 7, dtype=torch.bool), gamma=0.95)
    assert torch.allclose(adv, ret - values, atol=1e-5)
