"""Single-turn dynamic sampling (DAPO) on several processes: the rounds are the step's, each process samples
its share of every round's prompts, the groups kept are the first B with spread in (round, global place)
order, and a process that keeps none joins the update as a stand-in. One process and two must keep the same
groups and take the same update."""

from __future__ import annotations

import copy

import pytest
import torch

from grpo.llm.algorithms.grpo import GRPOTrainer
from grpo.llm.config import GRPOConfig
from grpo.llm.data.rewards import RewardSet
from grpo.llm.rollout.generation import eos_ids_of, finish_rollout
from grpo.llm.rollout.seeding import sample_keys

from test_llm_distributed import dynamic_one_vs_two_ranks


def keyed_engine(tok):
    """Each sample answers "a" or "b" by the parity of its sampling key: the same sample on whichever
    process draws it, and about half the groups of 2 hold both answers."""

    def generate(model, tokenizer, ids, mask, G, max_new, temperature, top_p, top_k, greedy, keys):
        letters = ["a" if int(k) % 2 else "b" for k in sample_keys(keys, G)]
        comp = torch.tensor([[tok.convert_tokens_to_ids(x), tok.eos_token_id] for x in letters])  # [B * G, 2]
        return finish_rollout(tokenizer, ids, mask, comp, eos_ids_of(tokenizer, model), G)

    return generate


def even_a(prompts, completions, answer, **_):
    """1 for "a" on a prompt whose answer is even: a group of an odd answer never has spread."""
    return [float(c == "a" and int(x) % 2 == 0) for c, x in zip(completions, answer)]


def make(random_tiny, cfg):
    base, tok = random_tiny
    rows = [{"prompt": f"{i}+1=", "answer": str(i)} for i in range(24)]

    def build(runtime=None):
        policy = copy.deepcopy(base)
        # SGD: the weights move by the gradient itself (Adam would magnify float noise on near-zero gradients).
        tr = GRPOTrainer(cfg, policy, tok, rows, RewardSet({"even_a": even_a}), copy.deepcopy(base).eval(),
                         torch.optim.SGD(policy.parameters(), lr=0.5), runtime=runtime)
        tr.sampler.generate_fn = keyed_engine(tok)
        return tr

    return build


def kept(g):
    """The (prompt, completions) groups a batch trains on."""
    G = len(g.rollout.completions) // max(len(g.rows), 1)
    return [] if g.stand_in else sorted(
        (r["prompt"], tuple(g.rollout.completions[i * G:(i + 1) * G])) for i, r in enumerate(g.rows))


@pytest.mark.parametrize("reward_scale", ["group", "batch"])
def test_two_ranks_keep_the_one_process_groups_and_update(random_tiny, reward_scale):
    cfg = GRPOConfig(model="x", prompts_per_step=4, group_size=2, max_new_tokens=2, dynamic_sampling=True,
                     max_resample=4, beta=0.04, reward_scale=reward_scale, seed=11)  # seed 11: each rank a stand-in once
    _, one_out, stand_ins = dynamic_one_vs_two_ranks(make(random_tiny, cfg), 4, kept, (
        "sampling/rounds", "groups/used", "groups/zero_std_frac", "reward/total/mean", "completions/mean_length",
        "kl/ref", "loss/policy"))
    assert max(m["sampling/rounds"] for m, _ in one_out) > 1 and stand_ins >= 1  # both paths exercised
    assert min(m["groups/used"] for m, _ in one_out) < cfg.prompts_per_step  # and a step short of B groups


def test_a_stand_in_trains_and_logs_nothing(random_tiny):
    """The stand-in's samples are in no advantage statistic, no metric and no sample record."""
    from grpo.llm.rollout.batch import batch_metrics, sample_records

    cfg = GRPOConfig(model="x", prompts_per_step=4, group_size=2, max_new_tokens=2, dynamic_sampling=True,
                     max_resample=4, beta=0.04, seed=0)
    tr = make(random_tiny, cfg)()
    g = tr.sampler.collect(0)
    stand_in = type(g)(g.rows, g.texts, g.rollout, g.scored, g.zero_std_frac, g.gen_seconds, g.rounds, True)
    assert float(tr.advantages(stand_in).abs().sum()) == 0.0 and sample_records(stand_in, 0, 8) == []
    m = batch_metrics(stand_in, 1.0, tr.rt, cfg)
    assert m["groups/used"] == 0 and m["completions/mean_length"] == 0.0
    assert batch_metrics(g, 1.0, tr.rt, cfg)["groups/used"] == len(g.rows) > 0  # control: the same batch, kept
