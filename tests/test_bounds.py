"""Classic control's bounds (issue 11, section 5): a batch past the step budget or the free memory, a
run folder that cannot be one, and a damaged checkpoint are each one line, not a traceback."""

from __future__ import annotations

import dataclasses
import json

import pytest

from grpo.cli import main


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_batch_past_the_step_budget_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--group-size", "100000", "--out", str(out)]) == 2
    err = _one_line(capsys)
    assert "200,000 env steps (--groups x --group-size), more than --total-steps 100,000" in err
    assert main(["train", "--algo", "ppo", "--n-envs", "64", "--n-steps", "2048", "--total-steps", "1e5",
                 "--out", str(out)]) == 2
    assert "131,072 env steps (--n-envs x --n-steps)" in _one_line(capsys)
    assert not out.exists()  # refused before anything was written


def test_a_batch_past_the_free_memory_is_refused_with_the_estimate(tmp_path, capsys, monkeypatch):
    import grpo.utils.bounds as bounds
    from grpo.control.budget import ENV_BYTES, estimate_bytes
    from grpo.control.envs import env_info
    from grpo.control.grpo import ControlGRPOConfig

    monkeypatch.setattr(bounds, "available_memory", lambda device="cpu": 2**28)  # a machine with 256 MiB free
    # 20,000 CartPole episodes: environments plus [E, 500, D] buffers, about 1 GiB
    est = estimate_bytes("grpo", ControlGRPOConfig(group_size=10_000, groups=2), env_info("CartPole-v1"))
    assert est == 20_000 * (ENV_BYTES + 2 * 500 * 4 * (4 + 1 + 2))
    assert main(["train", "--group-size", "10000", "--total-steps", "2e4", "--out", str(tmp_path / "r")]) == 2
    err = _one_line(capsys)
    assert f"needs at least {bounds.gib(est)} of memory (estimate), more than the 256.0 MiB free" in err
    assert "lower --groups or --group-size" in err


def test_out_that_is_a_file_or_unwritable_is_one_line(tmp_path, capsys, monkeypatch):
    thesis = tmp_path / "thesis.tex"
    thesis.write_text("x")
    for out in (thesis, thesis / "run"):
        assert main(["train", "--total-steps", "1000", "--out", str(out)]) == 2
        assert "is a file, not a folder" in _one_line(capsys)
    assert main(["compare", "--out", str(thesis)]) == 2
    assert "is a file, not a folder" in _one_line(capsys)
    assert thesis.read_text() == "x"
    # a read-only location (a read-only filesystem, or a folder that is not ours): os.access says so
    import grpo.utils.bounds as bounds

    locked = tmp_path / "locked"
    locked.mkdir()
    real = bounds.os.access
    monkeypatch.setattr(bounds.os, "access", lambda p, mode: False if str(p) == str(locked) else real(p, mode))
    assert main(["train", "--total-steps", "1000", "--out", str(locked / "run")]) == 2
    assert f"{locked} cannot be written" in _one_line(capsys)
    assert main(["llm", "train", "--out", str(locked / "run")]) == 2
    assert f"{locked} cannot be written" in _one_line(capsys)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_eval_of_a_damaged_checkpoint_names_the_file(tmp_path, capsys, damage):
    import torch
    from safetensors.torch import save_file

    from grpo.control.envs import env_info

    ckpt = tmp_path / "run" / "checkpoint"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text(json.dumps({"env_info": dataclasses.asdict(env_info("CartPole-v1")),
                                                 "config": {"hidden": [8]}}))
    weights = ckpt / "model.safetensors"
    save_file({"actor.net.0.weight": torch.zeros(8, 4)}, str(weights))
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not safetensors at all")
    assert main(["eval", "--checkpoint", str(tmp_path / "run")]) == 2
    err = _one_line(capsys)
    assert f"{weights}: not a readable safetensors file" in err
