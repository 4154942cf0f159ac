"""The policy losses, aggregations, token selection and rollout correction of the menu, by hand."""

import math

import pytest
import torch

from grpo.core import (
    AGGREGATIONS,
    POLICY_LOSSES,
    PolicyLossParams,
    aggregate,
    grpo_loss,
    off_policy_sequence_mask,
    rollout_weights,
    select_tokens,
)

P = PolicyLossParams()


def _loss(name, logp, old, adv, mask=None, p=P):
    mask = torch.ones_like(logp, dtype=torch.bool) if mask is None else mask
    logp = logp.clone().requires_grad_(True)
    loss, metrics = POLICY_LOSSES.get(name)(logp, old, adv, mask, p)
    loss.sum().backward()
    return loss.detach(), logp.grad, metrics


def test_clip_higher_defaults_to_dapo_upper_bound():
    old = torch.zeros(1, 2)
    logp = torch.log(torch.tensor([[1.25, 1.3]]))
    loss, _, _ = _loss("clip-higher", logp, old, torch.ones(1))
    assert torch.allclose(loss, torch.tensor([[-1.25, -1.28]]), atol=1e-6)
    loss, _, _ = _loss("clip", logp, old, torch.ones(1))
    assert torch.allclose(loss, torch.tensor([[-1.2, -1.2]]), atol=1e-6)


def test_dual_clip_bounds_negative_advantage_loss_by_c():
    old = torch.zeros(1, 2)
    logp = torch.log(torch.tensor([[5.0, 2.0]]))
    loss, grad, _ = _loss("dual-clip", logp, old, -torch.ones(1))
    # ratio 5: PPO's loss max(5, 1.2) = 5, bounded by c = 3 (no gradient); ratio 2: 2 (gradient r * 1).
    assert torch.allclose(loss, torch.tensor([[3.0, 2.0]]), atol=1e-5)
    assert grad[0, 0] == 0 and math.isclose(float(grad[0, 1]), 2.0, rel_tol=1e-5)


def test_gspo_uses_sequence_ratio_and_paper_clip_range():
    old = torch.zeros(1, 2)
    logp = torch.tensor([[0.1, 0.3]])  # sequence ratio exp(0.2) > 1 + 4e-4: clipped for A > 0
    loss, grad, _ = _loss("gspo", logp, old, torch.ones(1))
    assert torch.allclose(loss, torch.full((1, 2), -(1 + 4e-4)), atol=1e-6)
    assert (grad == 0).all()


def test_cispo_gradient_is_truncated_ratio_times_advantage():
    old = torch.zeros(1, 2)
    logp = torch.log(torch.tensor([[10.0, 0.5]]))
    loss, grad, _ = _loss("cispo", logp, old, torch.full((1,), 2.0))
    # d/dlogp of -sg(min(r, 5)) A logp = -min(r, 5) A: no token's gradient is dropped.
    assert torch.allclose(grad, torch.tensor([[-10.0, -1.0]]), atol=1e-5)
    assert torch.allclose(loss, -torch.tensor([[5.0, 0.5]]) * 2 * logp, atol=1e-5)


def test_gmpo_geometric_mean_clipped_in_log_space():
    old = torch.zeros(2, 2)
    logp = torch.tensor([[0.6, -0.2], [0.6, -0.2]])
    adv = torch.tensor([1.0, -1.0])
    loss, _, _ = _loss("gmpo", logp, old, adv)
    # A > 0: min(log r, clip) = [0.4, -0.2] -> mean 0.1; A < 0: max = [0.6, -0.2] -> mean 0.2
    assert torch.allclose(loss[0], torch.full((2,), -math.exp(0.1)), atol=1e-6)
    assert torch.allclose(loss[1], torch.full((2,), math.exp(0.2)), atol=1e-6)
    # With sequence-mean aggregation the objective is the mean of the sequence losses.
    agg = aggregate(loss, torch.ones(2, 2), "sequence-mean")
    assert math.isclose(float(agg), (-math.exp(0.1) + math.exp(0.2)) / 2, rel_tol=1e-6)


def test_sapo_soft_gate_matches_policy_gradient_at_ratio_one():
    old = torch.zeros(1, 2)
    logp = torch.tensor([[0.0, math.log(3.0)]])
    loss, grad, _ = _loss("sapo", logp, old, torch.ones(1))
    # f(r) = sigmoid(r - 1) * 4 (tau 1): f(1) = 2; df/dlogp = sigmoid'(r - 1) * 4 * r
    assert torch.allclose(loss, -torch.tensor([[2.0, 4 * torch.sigmoid(torch.tensor(2.0)).item()]]), atol=1e-6)
    s = torch.sigmoid(torch.tensor(2.0)).item()
    assert torch.allclose(grad, -torch.tensor([[1.0, s * (1 - s) * 4 * 3]]), atol=1e-5)


# logp = [0, -1, -1, -1] (mean -0.75), A = [3, -1, -1, -1] (mean 0): covariances [2.25, .25, .25, .25]
COV_LOGP = torch.tensor([[0.0, -1.0, -1.0, -1.0]])
COV_ADV = torch.tensor([[3.0, -1.0, -1.0, -1.0]])


def test_clip_cov_detaches_the_token_with_covariance_in_band():
    loss, grad, m = _loss("clip-cov", COV_LOGP, COV_LOGP.clone(), COV_ADV)
    assert grad[0, 0] == 0 and loss[0, 0] == 0  # the only candidate (cov 2.25 in (1, 5))
    assert torch.allclose(grad[0, 1:], torch.ones(3))  # -r A with A = -1
    assert math.isclose(float(m["clip/cov_frac"]), 0.25)


def test_kl_cov_penalises_the_largest_covariance_token():
    old = COV_LOGP.clone()
    logp = COV_LOGP + torch.tensor([[0.1, 0.1, 0.0, 0.0]])
    loss, _, _ = _loss("kl-cov", logp, old, COV_ADV)
    assert math.isclose(float(loss[0, 0]), -math.exp(0.1) * 3 + 0.1, rel_tol=1e-5)
    assert math.isclose(float(loss[0, 1]), math.exp(0.1), rel_tol=1e-5)  # no penalty: -r A only


def test_dppo_tv_masks_by_probability_change_not_ratio():
    old = torch.log(torch.tensor([[0.5, 0.5, 0.01, 0.5]]))
    logp = torch.log(torch.tensor([[0.8, 0.6, 0.05, 0.2]]))
    adv = torch.tensor([[1.0, 1.0, 1.0, -1.0]])
    loss, grad, m = _loss("dppo-tv", logp, old, adv)
    # +0.3 > 0.2: masked; +0.1: kept, gradient -A r = -1.2; ratio 5 but +0.04: kept (PPO would clip);
    # A < 0 and -0.3 < -0.2: masked.
    assert torch.allclose(grad, torch.tensor([[0.0, -1.2, -5.0, 0.0]]), atol=1e-5)
    assert math.isclose(float(m["clip/frac"]), 0.5)


def test_dppo_kl_keeps_moves_against_the_advantage():
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    logp = torch.log(torch.tensor([[0.99, 0.01]]))
    _, grad, _ = _loss("dppo-kl", logp, old, torch.tensor([[1.0, 1.0]]))
    assert grad[0, 0] == 0 and grad[0, 1] != 0  # rising far is masked; falling (pr <= old) is kept


@pytest.mark.parametrize("mode,expected", [
    ("token-sum", 1 + 2 + 3 + 4 + 5),
    ("seq-mean-token-sum", (6 + 9) / 2),
    ("seq-mean-token-sum-norm", 15 / 3),
])
def test_verl_aggregations_by_hand(mode, expected):
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 99.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert math.isclose(float(aggregate(loss, mask, mode)), expected, rel_tol=1e-6)
    assert mode in AGGREGATIONS


def test_top_entropy_keeps_the_top_rho_share_of_real_tokens():
    ent = torch.tensor([[0.1, 0.9, 0.5, 7.0], [0.2, 0.8, 0.3, 0.4]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])  # 7 real tokens; the padded 7.0 never counts
    w = select_tokens("top-entropy", ent, mask, 0.3)  # round(0.3 * 7) = 2 tokens: 0.9, 0.8
    assert torch.equal(w, torch.tensor([[0.0, 1, 0, 0], [0, 1, 0, 0]]))
    assert torch.equal(select_tokens("all", ent, mask, 0.2), mask.float())


def test_token_selection_scales_policy_term_but_not_normaliser():
    logp, old, mask = torch.zeros(1, 4), torch.zeros(1, 4), torch.ones(1, 4)
    adv = torch.ones(1)
    w = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    loss, _ = grpo_loss(logp, old, adv, mask, beta=0.0, aggregation="token-mean", pg_weights=w)
    assert math.isclose(float(loss), -1 / 4)  # one token of four trained, divided by all four


def test_rollout_correction_with_a_known_engine_mismatch():
    old = torch.zeros(2, 3)
    engine = -torch.log(torch.tensor([[2.0, 0.5, 4.0], [1.5, 1.5, 1.5]]))  # w = pi_old/pi_engine: 2, .5, 4; 1.5 x3
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    w, _ = rollout_weights("token-truncate", old, engine, mask, cap=3.0)
    assert torch.allclose(w[0], torch.tensor([2.0, 0.5, 3.0]))
    w, m = rollout_weights("token-mask", old, engine, mask, cap=3.0)
    assert torch.allclose(w[0], torch.tensor([2.0, 0.5, 0.0]))
    w, _ = rollout_weights("sequence-truncate", old, engine, mask, cap=3.0)
    assert torch.allclose(w[:, 0], torch.tensor([3.0, 2.25]))  # products 4 (capped) and 1.5^2 (padding ignored)
    w, _ = rollout_weights("sequence-mask", old, engine, mask, cap=3.0)
    assert torch.allclose(w[:, 0], torch.tensor([0.0, 2.25]))
    w, _ = rollout_weights("none", old, engine, mask)
    assert (w == 1).all()


def test_off_policy_sequence_mask_drops_drifted_negative_sequences_only():
    logp = torch.zeros(3, 2)
    sampling = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.01, 0.01]])  # mean drift 0.5, 0.5, 0.01
    adv = torch.tensor([-1.0, 1.0, -1.0])
    m = off_policy_sequence_mask(logp, sampling, adv, torch.ones(3, 2), delta=0.1)
    assert torch.equal(m, torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]))


def test_every_registered_policy_loss_is_tested_here():
    tested = {"clip", "clip-higher", "dual-clip", "gspo", "cispo", "gmpo", "sapo", "clip-cov", "kl-cov",
              "dppo-tv", "dppo-kl"}
    assert set(POLICY_LOSSES.names()) == tested
