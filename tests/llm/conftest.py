"""Fixtures for the LLM tests: a small tiny model pretrained once per session into a tmp cache."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# Smaller than the built-in default so the session builds it in seconds; still a real
# LlamaForCausalLM with the character tokenizer, pretrained on addition just enough to be
# partly right digit by digit.
TEST_SPEC = dict(hidden=64, intermediate=128, layers=2, heads=4, target_accuracy=0.05, eval_every=20,
                 max_steps=600, lr=3e-3, seed=0, decay_steps=0, carry_noise=0.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Models this small run fastest on one thread, and a busy machine makes more threads much slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("grpo-cache")
    old = os.environ.get("GRPO_LAB_CACHE")
    os.environ["GRPO_LAB_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GRPO_LAB_CACHE", None)
    else:
        os.environ["GRPO_LAB_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_path(tiny_cache):
    """Folder of a small pretrained tiny model (built once per session)."""
    from grpo.llm.modeling.tiny import TinySpec, tiny_model_path

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return tiny_model_path(TinySpec(**TEST_SPEC), log=None)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture()
def tiny(tiny_path):
    """A fresh (model, tokenizer) pair loaded from the session's tiny model folder."""
    from grpo.llm.modeling.models import load_model, load_tokenizer

    return load_model(str(tiny_path)), load_tokenizer(str(tiny_path))


@pytest.fixture()
def random_tiny():
    """An untrained tiny Llama and the character tokenizer: for tests that need no skill."""
    from grpo.llm.modeling.tiny import TinySpec, char_tokenizer, new_model

    tok = char_tokenizer()
    return new_model(TinySpec(hidden=32, intermediate=64, seed=1), tok).eval(), tok
