"""Dynamic sampling (DAPO) on multi-turn episodes: groups without a learning signal are replaced by groups
of the next reset seeds, and a step that finds none takes no update (no optimizer step carried by momentum)."""

from __future__ import annotations

import copy

import pytest
import torch

from grpo.llm.algorithms.multiturn import MultiTurnTrainer
from grpo.llm.config import GRPOConfig
from grpo.llm.rollout.seeding import group_seeds

from multiturn_helpers import TEMPLATE, scripted


class SpreadEnv:
    """One turn. Within a group the episodes alternate reward 0 / 1 when the reset seed is a multiple of 3
    (the runner opens a group's G episodes one after another) and all score 1 otherwise; ``spread = False``
    makes every episode score 1."""

    spread = True
    opened = 0

    def reset(self, seed=None, options=None):
        self.k, SpreadEnv.opened = SpreadEnv.opened, SpreadEnv.opened + 1
        self.seed = seed
        return [{"role": "user", "content": "go"}], {}

    def step(self, message):
        varied = SpreadEnv.spread and self.seed % 3 == 0
        return [], float(self.k % 2) if varied else 1.0, True, False, {}


def make_trainer(random_tiny, dynamic: bool, max_resample: int = 3, **options) -> MultiTurnTrainer:
    model, tok = copy.deepcopy(random_tiny[0]), random_tiny[1]  # each trainer from the same weights
    tok.chat_template = TEMPLATE
    SpreadEnv.spread, SpreadEnv.opened = True, 0
    cfg = GRPOConfig(model="x", env="spread", prompts_per_step=2, group_size=2, max_turns=1, max_new_tokens=3,
                     dynamic_sampling=dynamic, max_resample=max_resample, lr=1e-2, beta=0.04, seed=0, **options)
    ref = copy.deepcopy(model).eval()  # the KL's reference, as run.py builds it
    return MultiTurnTrainer(cfg, model, tok, ref, make_env=SpreadEnv, generate=scripted(tok, ["ab"]))


def expected_seeds(step: int, B: int, rounds: int) -> tuple[list[int], int]:
    """The seeds with spread, taken round by round in group_seeds' order, and the rounds it took."""
    kept: list[int] = []
    all_seeds = group_seeds(0, step, B * rounds)
    for r in range(rounds):
        kept += [s for s in all_seeds[r * B:(r + 1) * B] if s % 3 == 0]
        if len(kept) >= B:
            return kept[:B], r + 1
    return kept, rounds


def test_groups_without_spread_are_replaced_by_the_next_seeds(random_tiny):
    step = next(s for s in range(50) if expected_seeds(s, 2, 8)[1] > 1)  # a step whose first round falls short
    want, rounds = expected_seeds(step, 2, 8)
    tr = make_trainer(random_tiny, dynamic=True, max_resample=7)
    b = tr.collect(step)
    assert b.seeds == want and b.rounds == rounds > 1
    assert [e.seed for e in b.episodes] == [s for s in want for _ in range(2)]
    first = group_seeds(0, step, 2)
    assert b.zero_std_frac == sum(s % 3 != 0 for s in first) / 2  # of the first round, not of what was kept
    assert bool((tr.advantages(b).abs().sum(1) > 0).all())  # every kept episode has a signal
    # Negative control: without dynamic sampling the step plays the first round's seeds, spread or not.
    plain = make_trainer(random_tiny, dynamic=False).collect(step)
    assert plain.seeds == first and plain.rounds == 1 and not bool((plain.returns.view(-1, 2).std(1) > 0).all())


def test_the_first_round_is_the_run_without_dynamic_sampling(random_tiny):
    step = next(s for s in range(50) if all(x % 3 == 0 for x in group_seeds(0, s, 2)))
    dyn = make_trainer(random_tiny, dynamic=True).collect(step)
    plain = make_trainer(random_tiny, dynamic=False).collect(step)
    assert dyn.rounds == 1 and dyn.seeds == plain.seeds
    assert torch.equal(dyn.rollout.completion_ids, plain.rollout.completion_ids)


def test_a_step_without_any_signal_takes_no_update(random_tiny):
    """Step 0 has spread and updates; step 1 has none. Without dynamic sampling step 1 still moves the weights
    (AdamW's momentum, the KL); with it, every round comes back all-equal and the weights stay put."""
    moved = {}
    for dynamic in (True, False):
        tr = make_trainer(random_tiny, dynamic=dynamic, max_resample=1)
        step0 = next(s for s in range(50) if any(x % 3 == 0 for x in group_seeds(0, s, 2)))
        m0, _ = tr.step(step0)
        assert "loss/policy" in m0
        SpreadEnv.spread = False
        before = [p.detach().clone() for p in tr.policy.parameters()]
        m1, b1 = tr.step(step0 + 1)
        moved[dynamic] = max(float((p.detach() - q).abs().max()) for p, q in zip(tr.policy.parameters(), before))
        if dynamic:
            assert m1["sampling/rounds"] == 2.0 and m1["groups/zero_std_frac"] == 1.0 and m1["groups/used"] == 0.0
            assert "loss/policy" not in m1 and float(b1.loss_mask.sum()) == 0.0
    assert moved[True] == 0.0 and moved[False] > 0.0


class KeyedAnswer:
    """One turn: reward 1 for the answer "a" on an even reset seed; every other episode scores 0."""

    def reset(self, seed=None, options=None):
        self.seed = seed
        return [{"role": "user", "content": "go"}], {}

    def step(self, message):
        return [], float(self.seed % 2 == 0 and message["content"] == "a"), True, False, {}


def keyed_engine(tok):
    """Answers "a" or "b" by the parity of each episode's sampling key: the same episode gets the same answer
    on whichever process plays it, and about half the groups of an even seed have spread."""
    from grpo.llm.rollout.generation import eos_ids_of, finish_rollout

    def generate(model, tokenizer, ids, mask, G, max_new, temperature, top_p, top_k, greedy, keys):
        comp = torch.tensor([[tok.convert_tokens_to_ids("a" if int(k) % 2 else "b"), tok.eos_token_id] for k in keys])
        return finish_rollout(tokenizer, ids, mask, comp, eos_ids_of(tokenizer, model), 1)

    return generate


def test_two_ranks_keep_the_one_process_groups_and_update(random_tiny):
    """Rounds are the step's: each rank plays its share of every round, the groups kept are the first B with a
    signal in global order, a rank that keeps none joins the update with no trained token (a stand-in)."""
    from test_llm_distributed import dynamic_one_vs_two_ranks

    base, tok = random_tiny
    tok.chat_template = TEMPLATE
    cfg = GRPOConfig(model="x", env="keyed", prompts_per_step=4, group_size=2, max_turns=1, max_new_tokens=3,
                     dynamic_sampling=True, max_resample=3, beta=0.04, seed=0)  # seed 0: rank 0 a stand-in twice

    def make(runtime=None):
        policy = copy.deepcopy(base)
        # SGD: the weights move by the gradient itself (Adam would magnify float noise on near-zero gradients).
        return MultiTurnTrainer(cfg, policy, tok, copy.deepcopy(base).eval(), torch.optim.SGD(policy.parameters(), lr=0.5),
                                runtime=runtime, make_env=KeyedAnswer, generate=keyed_engine(tok))

    def kept(b):  # the episodes trained on (a stand-in's are not)
        return [] if b.stand_in else sorted((e.seed, e.ids) for e in b.episodes)

    _, one_out, stand_ins = dynamic_one_vs_two_ranks(make, 3, kept, (
        "sampling/rounds", "groups/used", "groups/zero_std_frac", "episode/return_mean", "kl/ref"))
    assert max(m["sampling/rounds"] for m, _ in one_out) > 1 and stand_ins >= 1  # both paths exercised
