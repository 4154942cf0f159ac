"""Model folders: save/load roundtrip, tokenizer, checkpoints and resume state, run-folder guard."""

from __future__ import annotations

import pytest
import torch

from grpo.llm.infra.checkpoint import list_checkpoints, load_trainer_state, prepare_run_dir, save_checkpoint, save_model
from grpo.llm.modeling.models import is_conversational, load_model, load_tokenizer, prompt_texts


def test_char_tokenizer_roundtrip(random_tiny):
    _, tok = random_tiny
    text = "12+34=46\n<think> x </think>"
    ids = tok(text, add_special_tokens=False).input_ids
    assert len(ids) == len(text) and tok.decode(ids) == text
    assert tok.decode(ids + [tok.eos_token_id, tok.pad_token_id], skip_special_tokens=True) == text


def test_save_and_load_roundtrip(tmp_path, random_tiny):
    model, tok = random_tiny
    save_model(tmp_path / "m", model, tok)
    assert (tmp_path / "m" / "model.safetensors").exists()
    m2, t2 = load_model(str(tmp_path / "m")), load_tokenizer(str(tmp_path / "m"))
    assert t2.padding_side == "left" and t2.pad_token_id == tok.pad_token_id and t2.eos_token_id == tok.eos_token_id
    x = torch.tensor([tok("12+34=", add_special_tokens=False).input_ids])
    with torch.no_grad():
        torch.testing.assert_close(m2(input_ids=x).logits, model(input_ids=x).logits)
    assert t2("12+34=", add_special_tokens=False).input_ids == x[0].tolist()


def test_checkpoint_restores_optimizer_and_rng(tmp_path, random_tiny):
    model, tok = random_tiny
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=torch.tensor([[5, 6, 7]])).logits.sum().backward()
    opt.step()
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, model, tok, opt, {"accuracy_before": 0.25}, keep=2)
    ckpts = list_checkpoints(tmp_path)
    assert [p.name for p in ckpts] == ["checkpoint-000020", "checkpoint-000030"]
    expected_rng = torch.rand(3)  # what the next draw would be after the checkpoint's RNG state...
    opt2 = torch.optim.AdamW(load_model(str(ckpts[-1])).parameters(), lr=1e-3)
    state = load_trainer_state(ckpts[-1], opt2)
    assert state["step"] == 30 and state["accuracy_before"] == 0.25
    s1, s2 = opt.state_dict()["state"][0], opt2.state_dict()["state"][0]
    torch.testing.assert_close(s1["exp_avg"], s2["exp_avg"])
    assert torch.equal(torch.rand(3), expected_rng)  # ...is the draw after restoring it
    assert not list(tmp_path.glob(".checkpoint-*"))  # no temp folders left behind


def test_run_folder_guard(tmp_path):
    assert prepare_run_dir(tmp_path, resume=False, overwrite=False) is None  # empty: fine
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "checkpoint-notes").mkdir()  # the user's, though it starts like a checkpoint
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("mine")
    (tmp_path / "final-merged").mkdir()  # --save-merged's
    (tmp_path / ".checkpoint-000004.tmp").mkdir()  # half a checkpoint, left by a crash
    with pytest.raises(FileExistsError, match="already holds a run"):
        prepare_run_dir(tmp_path, resume=False, overwrite=False)
    with pytest.raises(FileNotFoundError, match="holds no run_config.json"):
        prepare_run_dir(tmp_path, resume=True, overwrite=False)
    with pytest.raises(ValueError, match="--resume and --overwrite"):
        prepare_run_dir(tmp_path, resume=True, overwrite=True)
    assert prepare_run_dir(tmp_path, resume=False, overwrite=True) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-notes", "docs", "notes.txt"]
    assert (tmp_path / "docs" / "thesis.tex").read_text() == "mine"


def test_a_curves_png_in_out_is_never_silently_redrawn(tmp_path):
    """An --env run draws out/curves.png at its end: one already there blocks a fresh run instead."""
    (tmp_path / "curves.png").write_text("mine")
    with pytest.raises(FileExistsError, match="already holds a run"):
        prepare_run_dir(tmp_path, resume=False, overwrite=False)
    assert (tmp_path / "curves.png").read_text() == "mine"


def test_resume_before_the_first_checkpoint_starts_again_clean(tmp_path):
    for name in ("run_config.json", "metrics.jsonl", "samples.jsonl", "notes.txt"):
        (tmp_path / name).write_text("{}\n")
    (tmp_path / ".checkpoint-000002.tmp").mkdir()  # killed while writing the first checkpoint
    assert prepare_run_dir(tmp_path, resume=True, overwrite=False) is None  # step 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "run_config.json"]


def test_chat_prompts_use_the_template(random_tiny):
    _, tok = random_tiny
    messages = [{"role": "user", "content": "1+1="}]
    assert is_conversational(messages) and not is_conversational("1+1=")
    with pytest.raises(ValueError, match="no chat template"):
        prompt_texts(tok, [messages])
    tok.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>"
    assert prompt_texts(tok, [messages, "2+2="]) == ["<user>1+1=\n<assistant>", "2+2="]
