"""The outcome advantage estimators of the menu against hand computation on small tensors."""

import math

import pytest
import torch

from grpo.core import OUTCOME_ESTIMATORS, AdvantageInputs, needs_baseline, outcome_advantages

R = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 0.0, 1.0, 1.0]])  # [B=2, G=4]


def test_rloo_is_reward_minus_mean_of_the_others():
    adv = outcome_advantages("rloo", R)
    # group 0: 1 - (0+0+1)/3 = 2/3; 0 - (1+0+1)/3 = -2/3
    # group 1: 2 - 2/3 = 4/3; 0 - 4/3 = -4/3; 1 - 1 = 0
    expected = torch.tensor([[2 / 3, -2 / 3, -2 / 3, 2 / 3], [4 / 3, -4 / 3, 0.0, 0.0]])
    assert torch.allclose(adv, expected, atol=1e-6)


def test_reinforce_pp_whitens_over_the_batch_not_the_group():
    adv = outcome_advantages("reinforce++", R, AdvantageInputs(eps=0.0))
    flat = R.flatten()  # mean 0.75, unbiased std over 8 values
    expected = ((flat - 0.75) / flat.std()).reshape(2, 4)
    assert torch.allclose(adv, expected, atol=1e-6)
    # Lengths weigh each sample as that many tokens (verl whitens over tokens).
    lengths = torch.tensor([[3.0, 1, 1, 1], [1, 1, 1, 1]])
    tok = torch.tensor([1.0, 1, 1, 0, 0, 1, 2, 0, 1, 1])  # the rewards repeated per token
    adv = outcome_advantages("reinforce++", R, AdvantageInputs(lengths=lengths, eps=0.0))
    assert torch.allclose(adv[0, 0], (1 - tok.mean()) / tok.std(), atol=1e-6)


def test_reinforce_pp_baseline_centres_in_group_then_whitens_over_batch():
    adv = outcome_advantages("reinforce++-baseline", R, AdvantageInputs(eps=0.0))
    centred = torch.tensor([0.5, -0.5, -0.5, 0.5, 1.0, -1.0, 0.0, 0.0])
    expected = ((centred - centred.mean()) / centred.std()).reshape(2, 4)
    assert torch.allclose(adv, expected, atol=1e-6)


def test_remax_subtracts_the_greedy_reward_and_says_it_needs_it():
    adv = outcome_advantages("remax", R, AdvantageInputs(baseline=torch.tensor([1.0, 0.5])))
    assert torch.allclose(adv, torch.tensor([[0.0, -1, -1, 0], [1.5, -0.5, 0.5, 0.5]]))
    assert needs_baseline(OUTCOME_ESTIMATORS.get("remax"))
    assert not any(needs_baseline(OUTCOME_ESTIMATORS.get(n)) for n in OUTCOME_ESTIMATORS.names() if n != "remax")
    with pytest.raises(ValueError, match="greedy baseline"):
        outcome_advantages("remax", R)


def test_opo_baseline_is_length_weighted_mean():
    lengths = torch.tensor([[3.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    adv = outcome_advantages("opo", R, AdvantageInputs(lengths=lengths))
    b0 = (3 * 1 + 0 + 0 + 1) / 6  # 2/3
    assert torch.allclose(adv[0], R[0] - b0, atol=1e-6)
    assert torch.allclose(adv[1], R[1] - 1.0, atol=1e-6)


def test_grpo_passk_reinforces_only_the_best_by_its_margin():
    r = torch.tensor([[0.0, 3.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    adv = outcome_advantages("grpo-passk", r, AdvantageInputs(scale="none"))
    assert torch.allclose(adv, torch.tensor([[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    adv = outcome_advantages("grpo-passk", r, AdvantageInputs(scale="group", eps=0.0))
    assert math.isclose(float(adv[0, 1]), 2.0 / float(r[0].std()), rel_tol=1e-5)


def test_gdpo_normalises_each_reward_before_summing():
    # Reward 0 has a range of 100, reward 1 a range of 1: summed raw, reward 1 would vanish.
    cols = torch.tensor([[[100.0, 0.0], [0.0, 1.0], [100.0, 1.0], [0.0, 0.0]]])  # [B=1, G=4, K=2]
    inp = AdvantageInputs(columns=cols, eps=0.0)
    adv = outcome_advantages("gdpo", cols.sum(-1), inp)
    z = lambda x: (x - x.mean()) / x.std()  # noqa: E731
    per = z(cols[0, :, 0]) + z(cols[0, :, 1])  # [4]: 0, 0, 2*0.866, -2*0.866
    assert torch.allclose(adv[0], z(per), atol=1e-5)
    assert adv[0, 0] == 0 and adv[0, 1] == 0  # one reward up, the other down: they cancel
    # Weights scale each normalised column before the sum.
    w = outcome_advantages("gdpo", cols.sum(-1), AdvantageInputs(columns=cols, weights=torch.tensor([1.0, 0.0]), eps=0.0))
    assert torch.allclose(w[0], z(cols[0, :, 0]), atol=1e-5)


@pytest.mark.parametrize("name", ["grpo", "rloo", "opo", "reinforce++-baseline", "grpo-passk", "gdpo"])
def test_all_equal_groups_get_zero_advantage(name):
    r = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    assert torch.equal(outcome_advantages(name, r), torch.zeros(2, 3))


def test_every_registered_estimator_is_tested_here():
    tested = {"grpo", "rloo", "reinforce++", "reinforce++-baseline", "remax", "opo", "grpo-passk", "gdpo"}
    assert set(OUTCOME_ESTIMATORS.names()) == tested
