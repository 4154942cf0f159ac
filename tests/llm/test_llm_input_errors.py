"""Bad input to ``grpo llm`` is one line naming the thing and what to do (issue 11, section 5): model
folders that cannot load, data rows without a usable prompt, bad UTF-8, reward weights that are not
finite, and a batch whose estimated memory exceeds the device's."""

from __future__ import annotations

import json

import pytest

from grpo.cli import main


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture()
def model_dir(tmp_path, random_tiny):
    """A small random model saved as a normal model folder."""
    from grpo.llm.infra.checkpoint import save_model

    model, tok = random_tiny
    save_model(tmp_path / "m", model, tok)
    return tmp_path / "m"


def test_model_folder_empty_or_without_config(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["llm", "eval", "--model", str(empty)]) == 2
    assert f"--model {empty} is empty: pass a folder written by save_pretrained" in _one_line(capsys)
    (empty / "notes.txt").write_text("x")
    assert main(["llm", "eval", "--model", str(empty)]) == 2
    assert f"--model {empty} has no config.json" in _one_line(capsys)


def test_unknown_model_type_names_config_json(model_dir, capsys):
    config = model_dir / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "model_type": "no-such-arch"}))
    assert main(["llm", "eval", "--model", str(model_dir)]) == 2
    err = _one_line(capsys)
    assert f"{config}: model_type 'no-such-arch' is unknown to transformers" in err
    assert "sentencepiece" not in err


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_weights_name_the_file(model_dir, capsys, damage):
    weights = model_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00garbage" * 100)
    assert main(["llm", "eval", "--model", str(model_dir)]) == 2
    assert f"{weights}: not a readable safetensors file" in _one_line(capsys)
    assert main(["llm", "train", "--model", str(model_dir), "--out", str(model_dir.parent / "run")]) == 2
    assert f"{weights}: not a readable safetensors file" in _one_line(capsys)


@pytest.mark.parametrize("line,problem", [
    ('{"prompt": "", "answer": "1"}', "line 2: prompt is an empty string"),
    ('{"answer": "1"}', "line 2: has no prompt column 'prompt'"),
    ('{"prompt": 7, "answer": "1"}', "line 2: prompt is int 7, not text"),
    ('{"prompt": null, "answer": "1"}', "line 2: prompt is missing (null)"),
])
def test_a_row_without_a_usable_prompt_names_file_and_line(tmp_path, line, problem):
    from grpo.llm.data.tasks import load_rows

    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "1+1=", "answer": "2"}\n' + line + "\n")
    with pytest.raises(ValueError) as err:
        load_rows(str(path))
    assert f"{path}: {problem}" in str(err.value)


def test_a_csv_row_with_an_empty_prompt_names_the_row(tmp_path):
    from grpo.llm.data.tasks import load_rows

    path = tmp_path / "d.csv"
    path.write_text("prompt,answer\n1+1=,2\n,3\n")
    with pytest.raises(ValueError, match=r"d\.csv row 2: the prompt is missing \(null\)"):
        load_rows(str(path))


def test_bad_utf8_names_file_and_line(tmp_path, capsys, model_dir):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"prompt": "1+1=", "answer": "2"}\n{"prompt": "2+2=", "answer": "4"}\n'
                     b'{"prompt": "3+\xff=", "answer": "6"}\n')
    assert main(["llm", "eval", "--model", str(model_dir), "--task", str(path), "--reward", "exact"]) == 2
    assert f"{path}: line 3 is not valid UTF-8 (byte 15 of the line): save the file as UTF-8" in _one_line(capsys)


def test_an_empty_prompt_through_the_cli_is_one_line(tmp_path, capsys, model_dir):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "", "answer": "2"}\n')
    assert main(["llm", "eval", "--model", str(model_dir), "--task", str(path), "--reward", "exact"]) == 2
    assert f"{path}: line 1: prompt is an empty string" in _one_line(capsys)


@pytest.mark.parametrize("weight", ["nan", "inf", "-inf"])
def test_reward_weight_must_be_finite(tmp_path, capsys, weight):
    assert main(["llm", "train", "--reward", f"exact:{weight}", "--out", str(tmp_path / "r")]) == 2
    assert f"reward 'exact:{weight}': the weight must be a finite number" in _one_line(capsys)
    assert not (tmp_path / "r").exists()


def test_negative_and_zero_weights_are_allowed():
    from grpo.llm.data.rewards import parse_reward_spec

    assert parse_reward_spec("length:-0.5") == ("length", -0.5) and parse_reward_spec("format:0") == ("format", 0.0)


def test_a_batch_past_the_free_memory_is_refused_with_the_estimate(tmp_path, capsys, monkeypatch, model_dir):
    import grpo.utils.bounds as bounds
    from grpo.llm.bounds import estimate_bytes
    from grpo.llm.config import GRPOConfig

    monkeypatch.setattr(bounds, "available_memory", lambda device="cpu": 2**30)  # a device with 1 GiB free
    cfg = GRPOConfig(model=str(model_dir), group_size=100_000, max_new_tokens=8, beta=0.0)
    mc = json.loads((model_dir / "config.json").read_text())
    kv = 32 * 100_000 * 9 * mc["num_hidden_layers"] * 2 * mc["hidden_size"] * 4  # [n, T, ...] K and V, float32
    assert estimate_bytes(cfg, mc) == kv + 32 * 100_000 * mc["vocab_size"] * 4
    assert main(["llm", "train", "--model", str(model_dir), "--group-size", "100000", "--max-new-tokens", "8",
                 "--beta", "0", "--out", str(tmp_path / "r")]) == 2
    err = _one_line(capsys)
    assert "32 prompts x 100,000 samples = 3,200,000 sequences" in err
    assert f"needs at least {bounds.gib(estimate_bytes(cfg, mc, (model_dir / 'model.safetensors').stat().st_size))}" in err
    assert "lower --group-size or --prompts-per-step" in err
