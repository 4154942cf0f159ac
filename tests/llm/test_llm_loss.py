"""The loss the trainer optimises, checked against hand computation and plain loops."""

from __future__ import annotations

import math

import pytest
import torch

from grpo.core import grpo_loss, kl_estimate
from grpo.llm.config import (AGGREGATION_NAMES, KL_ESTIMATOR_NAMES, RATIO_LEVEL_NAMES, REWARD_SCALE_NAMES,
                             GRPOConfig)
from grpo.llm.rollout.generation import Rollout
from grpo.llm.data.rewards import RewardSet
from grpo.llm.algorithms.grpo import GRPOTrainer


def test_config_choices_match_core_registries():
    from grpo.core import AGGREGATIONS, EXACT_KL, KL_ESTIMATORS, KL_NAMES, RATIO_LEVELS, REWARD_SCALES

    assert KL_NAMES == (*KL_ESTIMATORS.names(), EXACT_KL) == KL_ESTIMATOR_NAMES
    assert tuple(RATIO_LEVELS.names()) == RATIO_LEVEL_NAMES
    assert tuple(AGGREGATIONS.names()) == AGGREGATION_NAMES
    assert tuple(REWARD_SCALES) == REWARD_SCALE_NAMES


def _hand_loss(logp, old, ref, adv, mask, beta, eps):
    """DeepSeekMath eq. 3 with k3, written as plain Python loops."""
    per_seq = []
    for i in range(len(logp)):
        terms = []
        for t in range(len(logp[i])):
            if not mask[i][t]:
                continue
            r = math.exp(logp[i][t] - old[i][t])
            surrogate = min(r * adv[i], min(max(r, 1 - eps), 1 + eps) * adv[i])
            kl = math.exp(ref[i][t] - logp[i][t]) - (ref[i][t] - logp[i][t]) - 1
            terms.append(-(surrogate - beta * kl))
        per_seq.append(sum(terms) / len(terms))
    return sum(per_seq) / len(per_seq)


def test_grpo_loss_matches_hand_computation_sequence_mean_k3():
    logp = [[-0.5, -1.0, -2.0], [-0.1, -0.3, -9.0]]
    old = [[-0.7, -0.6, -2.0], [-0.1, -0.9, -1.0]]
    ref = [[-0.6, -1.2, -1.5], [-0.2, -0.2, -1.0]]
    adv = [1.5, -0.8]
    mask = [[1, 1, 1], [1, 1, 0]]  # the second completion ended early
    loss, metrics = grpo_loss(torch.tensor(logp), torch.tensor(old), torch.tensor(adv), torch.tensor(mask),
                              torch.tensor(ref), beta=0.04, eps_low=0.2)
    assert loss.item() == pytest.approx(_hand_loss(logp, old, ref, adv, mask, 0.04, 0.2), rel=1e-6)
    # k3 by hand on one token, and the padded token of row 2 (logp -9.0) never counts
    assert kl_estimate(torch.tensor(-0.5), torch.tensor(-0.6)).item() == pytest.approx(math.exp(-0.1) + 0.1 - 1, rel=1e-5)
    hand_kl = [math.exp(ref[i][t] - logp[i][t]) - (ref[i][t] - logp[i][t]) - 1
               for i in range(2) for t in range(3) if mask[i][t]]
    assert metrics["kl/ref"].item() == pytest.approx(sum(hand_kl) / len(hand_kl), rel=1e-6)
    # row 1 token 1: r = e^0.2 > 1.2 with A > 0 is clipped above; row 2 (A < 0) has r >= 1: no low clip
    assert metrics["clip/high_frac"].item() == pytest.approx(1 / 5)
    assert metrics["clip/low_frac"].item() == pytest.approx(0.0)


@pytest.mark.parametrize("aggregation", AGGREGATION_NAMES)
def test_micro_batches_give_the_full_batch_gradient(random_tiny, aggregation):
    """Gradient accumulation over micro-batches equals one full-batch step, for every aggregation."""
    model, tok = random_tiny
    torch.manual_seed(0)
    N, P, C = 6, 4, 5
    lengths = torch.tensor([5, 1, 3, 5, 2, 4])
    cmask = (torch.arange(C)[None] < lengths[:, None]).long()
    roll = Rollout(torch.randint(3, 90, (N, P)), torch.ones(N, P, dtype=torch.long),
                   torch.randint(3, 90, (N, C)), cmask, torch.zeros(N, dtype=torch.bool), [""] * N)
    adv = torch.randn(N, 1).expand(N, C)
    grads = []
    for micro in (None, 2):
        m = type(model)(model.config)
        m.load_state_dict(model.state_dict())
        cfg = GRPOConfig(model="x", beta=0.0, aggregation=aggregation, micro_batch=micro, prompts_per_step=3,
                         group_size=2, max_grad_norm=None, max_new_tokens=C)
        tr = GRPOTrainer(cfg, m, tok, [{"prompt": "1+1=", "answer": "2"}], RewardSet.from_specs(["exact"]))
        tr.opt = torch.optim.SGD(m.parameters(), lr=0.0)  # keep the weights, read the gradient
        tr.update(roll, adv, cmask.float())
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)
    assert grads[0].abs().sum() > 0



def test_full_kl_gradient_is_the_exact_kl_of_the_two_models(random_tiny):
    """kl_estimator "full": with zero advantages the update's gradient is beta times the gradient of the
    sequence-mean exact KL(pi || pi_ref) of the whole next-token distributions (computed here from the
    two models' plain logits), micro-batched or not; k3 on the same batch gives another gradient."""
    model, tok = random_tiny
    torch.manual_seed(0)
    ref = type(model)(model.config)
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    N, P, C, beta, T = 4, 4, 5, 0.3, 0.8
    cmask = (torch.arange(C)[None] < torch.tensor([5, 2, 4, 3])[:, None]).long()
    prompts = torch.randint(3, 90, (2, P)).repeat_interleave(2, 0)  # two groups of 2
    roll = Rollout(prompts, torch.ones(N, P, dtype=torch.long), torch.randint(3, 90, (N, C)), cmask,
                   torch.zeros(N, dtype=torch.bool), [""] * N)
    ids, mask = torch.cat([roll.prompt_ids, roll.completion_ids], 1), torch.cat([roll.prompt_mask, cmask], 1)
    params = [p for p in model.parameters() if p.requires_grad]
    dists = [torch.distributions.Categorical(logits=m(input_ids=ids, attention_mask=mask).logits[:, P - 1:-1] / T)
             for m in (model, ref)]
    kl = torch.distributions.kl_divergence(dists[0], torch.distributions.Categorical(logits=dists[1].logits.detach()))
    want_kl = ((kl * cmask).sum(1) / cmask.sum(1)).mean()  # sequence-mean: per completion, then over completions
    want = torch.cat([g.flatten() for g in torch.autograd.grad(beta * want_kl, params)])
    got = {}
    for estimator, micro in (("full", None), ("full", 2), ("k3", None)):
        m = type(model)(model.config)
        m.load_state_dict(model.state_dict())
        cfg = GRPOConfig(model="x", beta=beta, kl_estimator=estimator, temperature=T, micro_batch=micro,
                         prompts_per_step=2, group_size=2, max_grad_norm=None, max_new_tokens=C)
        tr = GRPOTrainer(cfg, m, tok, [{"prompt": "1+1=", "answer": "2"}], RewardSet.from_specs(["exact"]), ref=ref)
        tr.opt = torch.optim.SGD(m.parameters(), lr=0.0)  # keep the weights, read the gradient
        metrics = tr.update(roll, torch.zeros(N, C), cmask.float())
        got[estimator, micro] = torch.cat([p.grad.flatten() for p in m.parameters() if p.requires_grad])
        if estimator == "full":
            assert metrics["kl/ref"] == pytest.approx(float((kl * cmask).sum().detach() / cmask.sum()), rel=1e-4)  # token mean
    assert float(want.norm()) > 0
    torch.testing.assert_close(got["full", None], want, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(got["full", 2], want, rtol=1e-3, atol=1e-6)
    assert float((got["k3", None] - want).norm()) > 0.1 * float(want.norm())  # the sampled estimate is another

def test_micro_batches_are_trimmed_to_their_own_lengths(random_tiny):
    """Each micro-batch (whole groups, shortest first) runs on its own columns: prompt padding common to its
    rows and completion columns past its longest row are left out, and the gradient is the untrimmed
    full batch's."""
    model, tok = random_tiny
    torch.manual_seed(0)
    N, P, C = 4, 5, 8
    lengths = torch.tensor([8, 6, 2, 1])  # group 0 long, group 1 short: the short group goes first
    cmask = (torch.arange(C)[None] < lengths[:, None]).long()
    pmask = torch.tensor([[1] * 5, [1] * 5, [0, 0, 1, 1, 1], [0, 0, 1, 1, 1]])  # group 1's prompt left-padded by 2
    prompts = torch.randint(3, 90, (2, P)).repeat_interleave(2, 0) * pmask  # [N, P] two groups of 2
    roll = Rollout(prompts, pmask, torch.randint(3, 90, (N, C)) * cmask, cmask, torch.zeros(N, dtype=torch.bool),
                   [""] * N)
    adv = torch.tensor([[1.0], [-1.0], [0.5], [-0.5]]).expand(N, C)
    grads, widths = [], []
    for micro in (None, 2):
        m = type(model)(model.config)
        m.load_state_dict(model.state_dict())
        seen: list[int] = []
        m.register_forward_pre_hook(lambda _m, _a, kw: seen.append(kw["input_ids"].shape[1]), with_kwargs=True)
        cfg = GRPOConfig(model="x", beta=0.0, micro_batch=micro, prompts_per_step=2, group_size=2,
                         max_grad_norm=None, max_new_tokens=C)
        tr = GRPOTrainer(cfg, m, tok, [{"prompt": "1+1=", "answer": "2"}], RewardSet.from_specs(["exact"]))
        mbs, real = tr._micro_batches(roll)
        assert [mb.tolist() for mb in mbs] == ([[2, 3, 0, 1]] if micro is None else [[2, 3], [0, 1]])
        assert real == len(mbs)  # no fill-in micro-batches on one process
        tr.opt = torch.optim.SGD(m.parameters(), lr=0.0)  # keep the weights, read the gradient
        tr.update(roll, adv, cmask.float())
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
        widths.append(seen)
    # forward passes: the prompt once per group, then the completion tokens that predict the next (one fewer).
    # Whole batch: 5 prompt columns, 8 - 1; the short group alone: its 3 prompt tokens, 2 - 1
    assert widths == [[5, 7], [3, 1, 5, 7]]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)
    assert grads[0].abs().sum() > 0


def test_aggregations_weigh_lengths_as_documented():
    """sequence-mean favours short answers per token; token-mean and constant do not."""
    loss = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
    from grpo.core import aggregate

    assert aggregate(loss, mask, "sequence-mean").item() == pytest.approx(1.0)  # (4/4 + 1/1) / 2
    assert aggregate(loss, mask, "token-mean").item() == pytest.approx(1.0)  # 5 / 5
    assert aggregate(loss, mask, "constant", 4.0).item() == pytest.approx(5 / 8)  # 5 / (4 * 2)


def test_micro_batches_that_split_groups_still_share_prompts(random_tiny):
    """--micro-batch 6 with G = 4 cuts a group in two; each micro-batch's runs of gcd(4, 6) = 2 rows of one
    prompt still encode it once (3 prompt rows for 6 sequences, then 1 for 2), and the gradient is the full
    batch's. Sharing only whole groups of 4 would run those micro-batches as 6 and 2 plain sequences."""
    model, tok = random_tiny
    torch.manual_seed(0)
    N, P, C, G = 8, 3, 5, 4
    cmask = (torch.arange(C)[None] < torch.tensor([5, 1, 3, 5, 2, 4, 4, 3])[:, None]).long()
    prompts = torch.randint(3, 90, (2, P)).repeat_interleave(G, 0)  # [N, P] two groups of 4
    roll = Rollout(prompts, torch.ones(N, P, dtype=torch.long), torch.randint(3, 90, (N, C)) * cmask, cmask,
                   torch.zeros(N, dtype=torch.bool), [""] * N)
    adv = torch.randn(N, 1).expand(N, C)
    grads, rows_seen = [], []
    for micro in (None, 6):
        m = type(model)(model.config)
        m.load_state_dict(model.state_dict())
        seen: list[tuple[int, int]] = []
        m.register_forward_pre_hook(lambda _m, _a, kw: seen.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
        cfg = GRPOConfig(model="x", beta=0.0, micro_batch=micro, prompts_per_step=2, group_size=G,
                         max_grad_norm=None, max_new_tokens=C)
        tr = GRPOTrainer(cfg, m, tok, [{"prompt": "1+1=", "answer": "2"}], RewardSet.from_specs(["exact"]))
        tr.opt = torch.optim.SGD(m.parameters(), lr=0.0)  # keep the weights, read the gradient
        tr.update(roll, adv, cmask.float())
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
        rows_seen.append([rows for rows, width in seen if width == P])  # the prompt passes' rows
    assert rows_seen == [[2], [3, 1]]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)
    assert grads[0].abs().sum() > 0
