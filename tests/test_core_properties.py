"""Property-based tests (hypothesis) of the core math (issue 7).

Advantages are zero-mean per group and finite for any finite float32 rewards; the clipped
objective never exceeds the unclipped one; losses and gradients stay finite for extreme
log-probs; padding (even NaN or inf) changes neither a loss nor a gradient; k3 >= 0.
"""

from __future__ import annotations

import math
import struct

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpo.core import (
    AGGREGATIONS,
    KL_ESTIMATORS,
    OUTCOME_ESTIMATORS,
    POLICY_LOSSES,
    AdvantageInputs,
    RATIO_LEVELS,
    REWARD_SCALES,
    clipped_surrogate,
    grpo_loss,
    kl_estimate,
    masked_mean,
    masked_sum,
    masked_whiten,
    process_advantages,
    timestep_group_advantages,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
F32_DENORMAL_MIN = 2.0 ** -149  # float32's smallest positive value
F32_MAX = 1e38  # below float32's 3.4e38 so that r - mean(r) is itself representable


def floats32(lo: float, hi: float) -> st.SearchStrategy[float]:
    lo, hi = (struct.unpack("f", struct.pack("f", v))[0] for v in (lo, hi))  # exact in float32
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=32)


# Rewards: anything finite, tiny, small integers, or a group-wide magnitude (below).
REWARD = st.one_of(floats32(-F32_MAX, F32_MAX), floats32(-1e-30, 1e-30), st.integers(-3, 3).map(float))
MAGNITUDE = st.sampled_from([1e-30, 1e-6, 1.0, 1e6, 1e19, 1e30, F32_MAX])
GARBAGE = st.sampled_from([math.nan, math.inf, -math.inf, 1e30, -1e30, 0.0, -1e4])


@st.composite
def reward_groups(draw, max_b: int = 4, max_g: int = 8) -> torch.Tensor:
    """[B, G] rewards; some groups have all rewards equal, G = 2 is drawn often."""
    B = draw(st.integers(1, max_b))
    G = draw(st.one_of(st.just(2), st.integers(2, max_g)))
    rows = []
    for _ in range(B):
        kind = draw(st.sampled_from(["any", "scaled", "equal"]))
        if kind == "any":
            rows.append(draw(st.lists(REWARD, min_size=G, max_size=G)))
        elif kind == "scaled":  # every reward of the group near one magnitude, same sign or not
            scale = draw(MAGNITUDE)
            rows.append([scale * u for u in draw(st.lists(floats32(-1, 1), min_size=G, max_size=G))])
        else:
            rows.append([draw(st.one_of(REWARD, MAGNITUDE))] * G)
    return torch.tensor(rows, dtype=torch.float32)


def _with_garbage(draw, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` with every masked-out entry replaced by a drawn NaN, inf or huge value."""
    junk = torch.tensor(draw(st.lists(GARBAGE, min_size=x.numel(), max_size=x.numel())), dtype=x.dtype)
    return torch.where(mask.bool(), x, junk.reshape(x.shape))


# ---------------------------------------------------------------------------------------------
# Advantages
# ---------------------------------------------------------------------------------------------
@SETTINGS
@given(rewards=reward_groups(), estimator=st.sampled_from(["grpo", "rloo", "opo"]),
       scale=st.sampled_from(REWARD_SCALES))
def test_group_advantages_are_finite_and_zero_mean_per_group(rewards, estimator, scale):
    """The per-group baselines (GRPO, RLOO, OPO with equal lengths) centre every group."""
    adv = OUTCOME_ESTIMATORS.get(estimator)(rewards, AdvantageInputs(scale=scale))  # [B, G]
    assert adv.shape == rewards.shape and adv.dtype == torch.float32
    assert torch.isfinite(adv).all()
    a = adv.double()
    G = rewards.shape[1]
    assert (a.sum(1).abs() <= 1e-6 * G * a.abs().amax(1)).all()  # zero mean up to rounding
    equal = (rewards == rewards[:, :1]).all(1)
    assert (adv[equal] == 0).all()  # all-equal groups: exactly zero, never NaN


@SETTINGS
@given(rewards=reward_groups(), estimator=st.sampled_from(OUTCOME_ESTIMATORS.names()),
       scale=st.sampled_from(REWARD_SCALES))
def test_every_estimator_is_finite_float32(rewards, estimator, scale):
    B, G = rewards.shape
    inp = AdvantageInputs(scale=scale, lengths=torch.arange(1, B * G + 1, dtype=torch.float32).view(B, G),
                          columns=torch.stack([rewards, -rewards], -1), baseline=rewards[:, 0])
    adv = OUTCOME_ESTIMATORS.get(estimator)(rewards, inp)  # [B, G]
    assert adv.shape == rewards.shape and adv.dtype == torch.float32 and torch.isfinite(adv).all()


@SETTINGS
@given(rewards=reward_groups())
def test_group_normalised_advantages_are_standardised(rewards):
    """scale="group": |A| <= (G-1)/sqrt(G) always, and std(A) = 1 once std(r) dwarfs eps."""
    adv = OUTCOME_ESTIMATORS.get("grpo")(rewards, AdvantageInputs(scale="group")).double()
    G = rewards.shape[1]
    assert (adv.abs() <= (G - 1) / math.sqrt(G) + 1e-5).all()
    spread = rewards.double().std(1) >= 1.0
    if spread.any():
        assert torch.allclose(adv[spread].std(1), torch.ones(int(spread.sum()), dtype=torch.float64), atol=1e-3)


@st.composite
def episodes(draw):
    """returns [B, G, T] and an alive mask, plus the same returns with garbage in the padding."""
    B, G, T = draw(st.integers(1, 3)), draw(st.integers(2, 5)), draw(st.integers(1, 6))
    n = B * G * T
    returns = torch.tensor(draw(st.lists(REWARD, min_size=n, max_size=n))).reshape(B, G, T)
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n))).reshape(B, G, T)
    return returns, mask, _with_garbage(draw, returns, mask)


@SETTINGS
@given(data=episodes(), scale=st.sampled_from(REWARD_SCALES))
def test_timestep_advantages_finite_zero_mean_and_blind_to_padding(data, scale):
    returns, mask, padded = data
    adv = timestep_group_advantages(returns, mask, scale=scale)  # [B, G, T]
    assert torch.isfinite(adv).all() and (adv[~mask] == 0).all()
    a = adv.double()
    # Zero-mean up to the float32 cast of each advantage: relative 2^-24 for normal values, an
    # absolute 2^-149 for denormal ones (returns near 1e-40 give advantages that small).
    G = returns.shape[1]
    assert (a.sum(1).abs() <= G * (1e-6 * a.abs().amax(1) + F32_DENORMAL_MIN)).all()  # per (b, t)
    assert torch.equal(timestep_group_advantages(padded, mask, scale=scale), adv)


@st.composite
def step_rewards(draw):
    B, G, S, T = draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 8))
    n = B * G * S
    rewards = torch.tensor(draw(st.lists(REWARD, min_size=n, max_size=n))).reshape(B, G, S)
    ends = torch.tensor(draw(st.lists(st.integers(-2, T + 2), min_size=n, max_size=n))).reshape(B, G, S)
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n))).reshape(B, G, S)
    junk_ends = torch.tensor(draw(st.lists(st.integers(-50, 50), min_size=n, max_size=n))).reshape(B, G, S)
    padded = (_with_garbage(draw, rewards, mask), torch.where(mask, ends, junk_ends))
    return rewards, ends, mask, T, padded


@SETTINGS
@given(data=step_rewards())
def test_process_advantages_finite_zero_mean_and_blind_to_padding(data):
    rewards, ends, mask, T, (padded_rewards, padded_ends) = data
    adv = process_advantages(rewards, ends, mask, T)  # [B, G, T]
    assert torch.isfinite(adv).all()
    # Token 0 collects every step of its sample, so over the group it sums the normalised rewards.
    first = adv[:, :, 0].double()
    assert (first.sum(1).abs() <= 1e-5 * mask.sum((1, 2)) * first.abs().amax(1).clamp(min=1)).all()
    assert torch.equal(process_advantages(padded_rewards, padded_ends, mask, T), adv)


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------
@st.composite
def policy_batch(draw, extreme: bool = True):
    """logp, old_logp, ref_logp [B, T] in [-1e4, 0] (differences of hundreds), advantages, mask."""
    B, T = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    n = B * T
    lo = -1e4 if extreme else -20.0
    logp = torch.tensor(draw(st.lists(floats32(lo, 0), min_size=n, max_size=n))).reshape(B, T)

    def near(x):  # an independent draw, or x moved by up to a few hundred nats
        if draw(st.booleans()):
            return torch.tensor(draw(st.lists(floats32(lo, 0), min_size=n, max_size=n))).reshape(B, T)
        delta = torch.tensor(draw(st.lists(floats32(-300, 300), min_size=n, max_size=n))).reshape(B, T)
        return (x + delta).clamp(max=0)

    old, ref = near(logp), near(logp)
    per_seq = draw(st.booleans())
    shape = (B,) if per_seq else (B, T)
    k = B if per_seq else n
    adv = torch.tensor(draw(st.lists(floats32(-1e3, 1e3), min_size=k, max_size=k))).reshape(shape)
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n))).reshape(B, T)
    return logp, old, ref, adv, mask


CLIPS = st.tuples(floats32(0.0, 0.9), st.one_of(st.none(), floats32(0.0, 5.0)))
VARIANTS = dict(
    aggregation=st.sampled_from(AGGREGATIONS.names()),
    ratio_level=st.sampled_from(RATIO_LEVELS.names()),
    kl_estimator=st.sampled_from(KL_ESTIMATORS.names()),
    beta=st.one_of(st.just(0.0), floats32(0.0, 1.0)),
    constant=st.one_of(st.none(), floats32(1.0, 4096.0)),
    policy_loss=st.sampled_from(POLICY_LOSSES.names()),
)


@SETTINGS
@given(batch=policy_batch(), clips=CLIPS, ratio_level=VARIANTS["ratio_level"])
def test_clipped_objective_never_exceeds_unclipped(batch, clips, ratio_level):
    """min(rA, clip(r)A) <= rA and <= clip(r)A, i.e. loss >= -rA and >= -clip(r)A, per token."""
    logp, old, _, adv, mask = batch
    eps_low, eps_high = clips
    loss, _ = clipped_surrogate(logp, old, adv, mask, eps_low, eps_high, ratio_level)
    ratio = torch.exp(RATIO_LEVELS.get(ratio_level)(logp, old, mask).clamp(-20, 20)).double()
    a = (adv.unsqueeze(-1) if adv.dim() == 1 else adv).double()
    hi = eps_low if eps_high is None else eps_high
    loss = loss.double()
    tol = 1e-6 * (ratio + 1 + hi) * a.abs() + 1e-6  # float32 rounding of either branch
    m = mask
    assert (loss >= -ratio * a - tol)[m].all()
    assert (loss >= -ratio.clamp(1 - eps_low, 1 + hi) * a - tol)[m].all()


@SETTINGS
@given(batch=policy_batch(), clips=CLIPS, **VARIANTS)
def test_losses_and_gradients_finite_for_extreme_log_probs(batch, clips, aggregation, ratio_level,
                                                           kl_estimator, beta, constant, policy_loss):
    logp, old, ref, adv, mask = batch
    logp = logp.clone().requires_grad_(True)
    loss, metrics = grpo_loss(logp, old, adv, mask, ref, beta, clips[0], clips[1], ratio_level,
                              aggregation, kl_estimator, constant, policy_loss=policy_loss)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all()
    assert torch.isfinite(metrics["kl/ref"]) and torch.isfinite(metrics["loss/policy"])


@SETTINGS
@given(data=st.data(), clips=CLIPS, **VARIANTS)
def test_padding_never_reaches_loss_or_gradients(data, clips, aggregation, ratio_level,
                                                 kl_estimator, beta, constant, policy_loss):
    """NaN/inf in padded logp, old_logp, ref_logp or advantages changes neither the loss nor
    any gradient; the gradient at padded positions is exactly 0 (with a real model it would
    otherwise flow into the parameters)."""
    logp, old, ref, adv, mask = data.draw(policy_batch(extreme=False))
    adv_mask = mask if adv.dim() == 2 else torch.ones_like(adv, dtype=torch.bool)
    dirty = [_with_garbage(data.draw, x, m) for x, m in ((logp, mask), (old, mask), (ref, mask), (adv, adv_mask))]

    def run(lp, o, r, a):
        lp = lp.clone().requires_grad_(True)
        loss, _ = grpo_loss(lp, o, a, mask, r, beta if beta > 0 else 0.1, clips[0], clips[1],
                            ratio_level, aggregation, kl_estimator, constant, policy_loss=policy_loss)
        loss.backward()
        return loss.detach(), lp.grad

    clean_loss, clean_grad = run(logp, old, ref, adv)
    dirty_loss, dirty_grad = run(*dirty)
    assert torch.equal(dirty_loss, clean_loss)
    assert torch.equal(dirty_grad[mask], clean_grad[mask])
    assert (dirty_grad[~mask] == 0).all() and (clean_grad[~mask] == 0).all()


@SETTINGS
@given(data=st.data())
def test_masked_reductions_blind_to_padding(data):
    n = data.draw(st.integers(1, 12))
    x = torch.tensor(data.draw(st.lists(floats32(-1e6, 1e6), min_size=n, max_size=n)))
    mask = torch.tensor(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    dirty = _with_garbage(data.draw, x, mask)
    for fn in (masked_sum, masked_mean, masked_whiten):
        grads = []
        for v in (x, dirty):
            v = v.clone().requires_grad_(True)
            out = fn(v, mask)
            (out * torch.linspace(1, 2, out.numel()).reshape(out.shape)).sum().backward()
            grads.append((out.detach(), v.grad))
        (clean, g_clean), (dirt, g_dirty) = grads
        assert torch.equal(clean, dirt), fn.__name__
        # NaN == NaN here: whitening constant values has a NaN gradient (sqrt at 0), padding or not.
        torch.testing.assert_close(g_dirty[mask], g_clean[mask], rtol=0, atol=0, equal_nan=True)
        assert (g_dirty[~mask] == 0).all(), fn.__name__


# ---------------------------------------------------------------------------------------------
# KL
# ---------------------------------------------------------------------------------------------
# log-ratios across every magnitude: rounding trouble lives near 0, overflow far from it.
LOG_RATIO = st.builds(lambda u, e: u * 10.0**e, floats32(-1, 1), st.integers(-30, 4))


@SETTINGS
@given(logp=st.lists(st.one_of(st.just(0.0), floats32(-1e4, 0)), min_size=1, max_size=64), data=st.data(),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_k3_is_nonnegative_and_finite_with_finite_gradient(logp, data, dtype):
    n = len(logp)
    lp = torch.tensor(logp, dtype=dtype, requires_grad=True)
    ref = lp.detach() + torch.tensor(data.draw(st.lists(LOG_RATIO, min_size=n, max_size=n)), dtype=dtype)
    kl = kl_estimate(lp, ref, "k3")
    kl.sum().backward()
    assert (kl >= 0).all() and torch.isfinite(kl).all() and torch.isfinite(lp.grad).all()
    assert (kl_estimate(lp.detach(), lp.detach(), "k3") == 0).all()
