"""The distribution tokens are sampled from is the one the config says, and the one the
log-probs are computed from: the model's generation_config.json must not leak into sampling."""

from __future__ import annotations

import json

import pytest
import torch

from grpo.llm.generation import encode_prompts, generate

# What a Qwen-style generation_config.json sets, and more: none of it may reach our sampler.
LEAKY = {"do_sample": True, "top_k": 3, "top_p": 0.5, "temperature": 0.3, "repetition_penalty": 1.5,
         "min_p": 0.3, "typical_p": 0.9, "no_repeat_ngram_size": 2, "suppress_tokens": [5]}


@pytest.fixture()
def leaky_model(random_tiny, tmp_path):
    """The random tiny model saved to a folder whose generation_config.json sets sampling options."""
    from grpo.llm.models import load_model, load_tokenizer

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
