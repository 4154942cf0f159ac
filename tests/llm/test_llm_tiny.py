"""The shipped tiny model: the default demo starts from the same weights on every machine.

The weights in ``grpo/llm/modeling/tiny_model`` are built by ``python -m grpo.llm.modeling.tiny --build`` (one
thread). The fast tests check that they load, carry the recorded hash and start at the recorded
greedy accuracy, and that ``grpo llm train`` with no model uses them without pretraining; the slow
test rebuilds them and compares.
"""

from __future__ import annotations

import doctest
import json
from dataclasses import asdict

import pytest

import grpo.llm.modeling.tiny as tiny
from grpo.llm.data.tasks import load_rows
from grpo.llm.evaluation import greedy_accuracy
from grpo.llm.modeling.model_cache import CACHE_ENV
from grpo.llm.modeling.models import load_model, load_tokenizer

# Recorded when the shipped weights were built (tiny_info.json says by whom): a rebuild that
# changes them must change these too, on purpose.
SHIPPED_SHA256 = "716df2e50e5519294eba5dbb9245174b297da08fc8cc68687b2ce81755594c68"
SHIPPED_ACCURACY = 0.4


def test_shipped_weights_have_the_recorded_hash_and_spec():
    info = tiny.shipped_info()
    assert info is not None, "grpo/llm/modeling/tiny_model is missing: run python -m grpo.llm.modeling.tiny --build"
    assert info["spec"] == asdict(tiny.TinySpec())  # a changed default spec needs a rebuild
    assert info["weights_sha256"] == SHIPPED_SHA256
    assert tiny.weights_sha256(tiny.SHIPPED) == SHIPPED_SHA256  # the file itself, not only its record
    assert info["machine"]["threads"] == 1 and info["steps"] == tiny.TinySpec().max_steps


def test_shipped_weights_load_and_start_at_the_recorded_accuracy():
    model, tok = load_model(str(tiny.SHIPPED)), load_tokenizer(str(tiny.SHIPPED))
    acc = greedy_accuracy(model, tok, load_rows("addition", "test"), max_new_tokens=4)
    assert tiny.shipped_info()["greedy_accuracy"] == SHIPPED_ACCURACY
    # Another CPU may flip an argmax that sits on a float tie: at most one problem in 200.
    assert abs(acc - SHIPPED_ACCURACY) <= 0.005, acc


def test_default_spec_uses_the_shipped_folder_without_pretraining(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(tiny, "pretrain", lambda *a, **k: pytest.fail("the default spec must not pretrain"))
    assert tiny.tiny_model_path(log=None) == tiny.SHIPPED
    assert tiny.tiny_model_path(tiny.TinySpec(), log=None) == tiny.SHIPPED
    assert not any(tmp_path.iterdir())  # nothing built or cached


def test_a_custom_spec_is_still_built_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    spec = tiny.TinySpec(hidden=16, intermediate=32, max_steps=3, decay_steps=2, batch=4)
    path = tiny.tiny_model_path(spec, log=None)
    assert path.parent == tmp_path and path != tiny.SHIPPED
    info = json.loads((path / "tiny_info.json").read_text())
    assert info["steps"] == 3 and info["weights_sha256"] == tiny.weights_sha256(path)
    assert tiny.tiny_model_path(spec, log=None) == path  # cached: found, not rebuilt


def test_build_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a tiny model folder"):
        tiny.build(tmp_path, log=None)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_learning_rate_schedule_examples():
    result = doctest.testmod(tiny)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.slow
def test_build_script_reproduces_the_shipped_weights(tmp_path):
    """Bit for bit on the machine that built them (its CPU, torch and transformers are recorded)."""
    shipped = tiny.shipped_info()
    if tiny.machine() != {k: v for k, v in shipped["machine"].items() if k != "threads"}:
        pytest.skip(f"weights built on {shipped['machine']}: another CPU or library sums floats in another order")
    info = tiny.build(tmp_path / "tiny", threads=1, log=None)
    assert info["spec"] == shipped["spec"] and info["steps"] == shipped["steps"]
    assert info["weights_sha256"] == SHIPPED_SHA256
    assert info["greedy_accuracy"] == SHIPPED_ACCURACY
