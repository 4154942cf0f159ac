"""Clipped surrogate, aggregations, KL estimators and entropies against hand computation."""

import math

import pytest
import torch

from grpo.core import (
    AGGREGATIONS,
    MICRO_BATCH_SHARES,
    aggregate,
    categorical_entropy,
    categorical_kl,
    clipped_surrogate,
    explained_variance,
    gaussian_entropy,
    gaussian_kl,
    gaussian_log_prob,
    grpo_loss,
    kl_estimate,
    masked_whiten,
    value_loss,
)


def lp(x):
    return torch.log(torch.tensor(x, dtype=torch.float))


def test_clipped_surrogate_by_hand():
    # ratios 1.5, 0.5, 1.1, 0.7 with advantages +1, -1, -2, +3, eps 0.2
    old = torch.zeros(1, 4)
    new = lp([[1.5, 0.5, 1.1, 0.7]])
    adv = torch.tensor([[1.0, -1.0, -2.0, 3.0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    loss, m = clipped_surrogate(new, old, adv, mask, eps_low=0.2)
    # min(1.5*1, 1.2*1) = 1.2; min(-0.5, -0.8) = -0.8; min(-2.2, -2.2) = -2.2; min(2.1, 2.4) = 2.1
    assert torch.allclose(loss, -torch.tensor([[1.2, -0.8, -2.2, 2.1]]), atol=1e-6)
    assert m["clip/high_frac"].item() == pytest.approx(0.25)  # token 0
    assert m["clip/low_frac"].item() == pytest.approx(0.25)  # token 1


def test_clip_higher_uses_separate_upper_bound():
    new, old = lp([[1.25]]), torch.zeros(1, 1)
    adv, mask = torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool)
    sym, _ = clipped_surrogate(new, old, adv, mask, eps_low=0.2)
    dapo, _ = clipped_surrogate(new, old, adv, mask, eps_low=0.2, eps_high=0.28)
    assert sym.item() == pytest.approx(-1.2)
    assert dapo.item() == pytest.approx(-1.25)


def test_clipped_gradient_vanishes_only_where_clip_binds():
    new = lp([[1.5, 1.5, 0.5, 0.5]]).requires_grad_()
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    loss, _ = clipped_surrogate(new, torch.zeros(1, 4), adv, torch.ones(1, 4, dtype=torch.bool))
    loss.sum().backward()
    # d(-r A)/d logp = -r A where unclipped: r=1.5,A=-1 -> 1.5; r=0.5,A=1 -> -0.5.
    assert torch.allclose(new.grad, torch.tensor([[0.0, 1.5, -0.5, 0.0]]))


def test_advantage_per_sequence_broadcasts_to_tokens():
    new, old = torch.randn(2, 3), torch.randn(2, 3)
    mask = torch.ones(2, 3, dtype=torch.bool)
    a, _ = clipped_surrogate(new, old, torch.tensor([1.0, -2.0]), mask)
    b, _ = clipped_surrogate(new, old, torch.tensor([[1.0] * 3, [-2.0] * 3]), mask)
    assert torch.equal(a, b)


def test_sequence_ratio_is_gspo_geometric_mean():
    old = torch.zeros(1, 3)
    new = lp([[2.0, 0.5, 1.0]])
    mask = torch.tensor([[True, True, False]])
    loss, m = clipped_surrogate(new, old, torch.ones(1), mask, eps_low=0.5, ratio_level="sequence")
    # (2 * 0.5) ** (1/2) = 1 on both real tokens, whatever the padded token holds.
    assert torch.allclose(loss[0, :2], -torch.ones(2))
    assert m["policy/ratio_mean"].item() == pytest.approx(1.0)


def test_aggregations_by_hand():
    loss = torch.tensor([[1.0, 3.0, 100.0], [4.0, 100.0, 100.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    # paper: mean over each sample's tokens, then over samples: ((1 + 3) / 2 + 4) / 2 = 3
    assert aggregate(loss, mask, "sequence-mean").item() == pytest.approx(3.0)
    # DAPO token mean: (1 + 3 + 4) / 3
    assert aggregate(loss, mask, "token-mean").item() == pytest.approx(8 / 3)
    # Dr. GRPO: sum / (B * constant)
    assert aggregate(loss, mask, "constant", constant=4.0).item() == pytest.approx(8 / 8)
    assert aggregate(loss, mask, "constant").item() == pytest.approx(8 / 6)  # default T
    with pytest.raises(ValueError, match="loss aggregation"):
        aggregate(loss, mask, "sum")


def test_constant_normaliser_is_invariant_to_splitting_the_batch():
    torch.manual_seed(0)
    loss = torch.rand(4, 6)
    mask = torch.rand(4, 6) > 0.4
    whole = aggregate(loss, mask, "constant", constant=6.0)
    halves = (aggregate(loss[:2], mask[:2], "constant", constant=6.0)
              + aggregate(loss[2:], mask[2:], "constant", constant=6.0)) / 2
    assert whole.item() == pytest.approx(halves.item())


def test_kl_estimators_by_hand():
    logp, ref = lp([0.5]), lp([0.25])
    log_r = math.log(0.25 / 0.5)
    assert kl_estimate(logp, ref, "k1").item() == pytest.approx(-log_r)
    assert kl_estimate(logp, ref, "k2").item() == pytest.approx(0.5 * log_r ** 2)
    # DeepSeekMath eq. 4: pi_ref/pi - log(pi_ref/pi) - 1
    assert kl_estimate(logp, ref, "k3").item() == pytest.approx(0.5 - log_r - 1)
    assert kl_estimate(logp, logp, "k3").item() == 0.0


def test_k3_is_unbiased_for_sampled_actions():
    torch.manual_seed(0)
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.2, 0.5, 0.3])
    exact = (p * (p / q).log()).sum()
    actions = torch.multinomial(p, 200_000, replacement=True)
    est = kl_estimate(p.log()[actions], q.log()[actions], "k3").mean()
    assert est.item() == pytest.approx(exact.item(), rel=0.02)


def test_exact_kls_by_hand_and_against_torch_distributions():
    p, q = torch.tensor([0.6, 0.3, 0.1]), torch.tensor([0.2, 0.5, 0.3])
    hand = 0.6 * math.log(3) + 0.3 * math.log(0.6) + 0.1 * math.log(1 / 3)
    assert categorical_kl(p.log() + 7.0, q.log()).item() == pytest.approx(hand, rel=1e-5)  # logits, any offset
    assert categorical_kl(p.log(), p.log()).item() == pytest.approx(0.0, abs=1e-7)
    # a class the policy excludes adds 0; one only the reference excludes makes it infinite
    none = torch.tensor([0.0, float("-inf")])
    assert categorical_kl(none, torch.tensor([0.0, 0.0])).item() == pytest.approx(math.log(2), rel=1e-6)
    assert categorical_kl(torch.zeros(2), none).item() == math.inf
    g = torch.Generator().manual_seed(0)
    m, s, m0, s0 = (torch.randn(5, 3, generator=g) for _ in range(4))
    want = torch.distributions.kl_divergence(torch.distributions.Normal(m, s.exp()),
                                             torch.distributions.Normal(m0, s0.exp())).sum(-1)
    torch.testing.assert_close(gaussian_kl(m, s, m0, s0), want, rtol=1e-5, atol=1e-6)
    # 1-D by hand: KL(N(1, 2^2) || N(0, 1)) = log(1/2) + (4 + 1) / 2 - 1/2
    assert gaussian_kl(torch.tensor([1.0]), torch.tensor([math.log(2)]), torch.zeros(1),
                       torch.zeros(1)).item() == pytest.approx(math.log(0.5) + 2.0, rel=1e-6)


def test_grpo_loss_takes_a_given_per_token_kl_in_place_of_the_estimate():
    logp = lp([[0.5, 0.4]])
    mask = torch.tensor([[1, 0]])
    kl = torch.tensor([[0.3, float("nan")]])  # the padded entry never counts, NaN or not
    loss, m = grpo_loss(logp, logp.clone(), torch.tensor([2.0]), mask, beta=0.1, kl=kl)
    assert loss.item() == pytest.approx(-2.0 + 0.1 * 0.3, rel=1e-6)
    assert m["kl/ref"].item() == pytest.approx(0.3, rel=1e-6)

def test_grpo_loss_adds_beta_times_k3_then_aggregates():
    logp = lp([[0.5, 0.4]])
    ref = lp([[0.25, 0.4]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    adv = torch.tensor([2.0])
    loss, m = grpo_loss(logp, logp.clone(), adv, mask, ref_logp=ref, beta=0.1)
    k3 = 0.5 - math.log(0.5) - 1  # token 0; token 1 has zero KL
    expected = ((-2.0 + 0.1 * k3) + (-2.0)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert m["kl/ref"].item() == pytest.approx(k3 / 2, rel=1e-5)
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(logp, logp, adv, mask, beta=0.1)


def test_grpo_loss_with_ratio_one_has_zero_value_but_real_gradient():
    # The "loss is ~0" effect users report: centred advantages, ratio 1, beta 0.
    logp = torch.log(torch.tensor([[0.5], [0.5]])).requires_grad_()
    loss, _ = grpo_loss(logp, logp.detach(), torch.tensor([1.0, -1.0]), torch.ones(2, 1, dtype=torch.bool), beta=0.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.0)
    assert torch.allclose(logp.grad, torch.tensor([[-0.5], [0.5]]))


def test_entropies_and_gaussian_log_prob():
    assert categorical_entropy(torch.zeros(4)).item() == pytest.approx(math.log(4))
    assert categorical_entropy(torch.tensor([0.0, -1e9])).item() == pytest.approx(0.0, abs=1e-6)
    log_std = torch.tensor([0.0, math.log(2.0)])
    expected = sum(0.5 * math.log(2 * math.pi * math.e * s ** 2) for s in (1.0, 2.0))
    assert gaussian_entropy(log_std).item() == pytest.approx(expected)
    dist = torch.distributions.Normal(torch.tensor([0.5, -1.0]), log_std.exp())
    a = torch.tensor([0.1, 0.7])
    assert gaussian_log_prob(a, dist.loc, log_std).item() == pytest.approx(dist.log_prob(a).sum().item())


def test_value_loss_clipped_is_pessimistic():
    values, old = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    returns = torch.tensor([3.0, -1.0])
    mask = torch.ones(2, dtype=torch.bool)
    plain, _ = value_loss(values, old, returns, mask)
    assert torch.allclose(plain, torch.tensor([0.5, 0.5]))
    clipped, m = value_loss(values, old, returns, mask, clip_range=0.5)
    # first: clipped value 0.5 -> 0.5 * (2.5)^2 = 3.125 > 0.5; second: unchanged.
    assert torch.allclose(clipped, torch.tensor([3.125, 0.5]))
    assert m["value/clip_frac"].item() == pytest.approx(0.5)


def test_explained_variance_by_hand():
    returns = torch.tensor([1.0, 2.0, 3.0, 99.0])
    mask = torch.tensor([True, True, True, False])
    assert explained_variance(returns, returns, mask).item() == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.0), returns, mask).item() == pytest.approx(0.0)
    # residuals -1, 0, +1 around 0 -> Var 2/3; Var(R) = 2/3 -> 0
    assert explained_variance(torch.tensor([2.0, 2.0, 2.0, 0.0]), returns, mask).item() == pytest.approx(0.0)
    # V = R/2: residual variance is a quarter of Var(R) -> 0.75
    assert explained_variance(returns / 2, returns, mask).item() == pytest.approx(0.75)


def test_masked_whiten_ignores_padding():
    x = torch.tensor([1.0, 2.0, 3.0, 1e6])
    mask = torch.tensor([True, True, True, False])
    out = masked_whiten(x, mask)
    assert torch.allclose(out, torch.tensor([-1.0, 0.0, 1.0, 0.0]), atol=1e-6)


@pytest.mark.parametrize("mode", AGGREGATIONS.names())
def test_micro_batch_shares_rebuild_the_full_batch_loss(mode):
    """Each aggregation has its share beside it, and micro-batches weighted by their shares sum to
    the full batch's loss (what gradient accumulation relies on)."""
    g = torch.Generator().manual_seed(0)
    loss = torch.randn(6, 5, generator=g)  # [B, T]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0],
                         [1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]]).float()
    share = MICRO_BATCH_SHARES.get(mode)
    total = share(mask)
    parts = [slice(0, 2), slice(2, 3), slice(3, 6)]
    accumulated = sum(aggregate(loss[p], mask[p], mode, 7.0) * share(mask[p]) / total for p in parts)
    assert accumulated.item() == pytest.approx(aggregate(loss, mask, mode, 7.0).item(), rel=1e-6)
