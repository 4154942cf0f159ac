"""benchmarks/llm/update_time.py: samples a batch once, then every run updates on the saved tokens."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _run(monkeypatch, capsys, batch: Path) -> dict:
    spec = importlib.util.spec_from_file_location("update_time", ROOT / "benchmarks" / "llm" / "update_time.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["update_time.py", "--task", "addition", "--prompts", "2", "--group-size", "2",
                                      "--max-new-tokens", "6", "--repeats", "2", "--threads", "1", "--batch", str(batch)])
    threads = torch.get_num_threads()
    try:
        module.main()  # sets torch's thread count: given back for the rest of the suite
    finally:
        torch.set_num_threads(threads)
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_update_time_reuses_the_saved_batch(tmp_path, monkeypatch, capsys):
    batch = tmp_path / "batch.pt"
    first = _run(monkeypatch, capsys, batch)
    assert batch.exists() and first["rows"] == 4 and len(first["seconds"]) == 2 and first["median_after_first"] > 0
    saved = torch.load(batch, weights_only=True)
    saved["completion_mask"][:, 1:] = 0  # every completion one token long: only a run that loads the file says so
    torch.save(saved, batch)
    again = _run(monkeypatch, capsys, batch)
    assert (again["mean_length"], again["max_length"]) == (1, 1)
