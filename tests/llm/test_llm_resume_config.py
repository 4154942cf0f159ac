"""``grpo llm train --resume`` end to end: the run continues with its saved configuration when only
``--out --resume --steps`` are given, and an option that would change it is refused before any work."""

from __future__ import annotations

import json

from grpo.cli import main
from grpo.utils.io import read_jsonl


def test_resume_with_only_out_continues_the_saved_run(tiny_path, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["llm", "train", "--model", str(tiny_path), "--out", str(out), "--save-every", "2", "--steps", "2",
                 "--prompts-per-step", "2", "--group-size", "3", "--max-new-tokens", "4", "--eval-split", "none",
                 "--lr", "1e-3", "--seed", "7", "--progress", "no", "--tensorboard", "no", "--threads", "1"]) == 0
    saved = json.loads((out / "run_config.json").read_text())
    capsys.readouterr()
    assert main(["llm", "train", "--out", str(out), "--resume", "--seed", "8"]) == 2
    assert "--seed 8 (saved: 7)" in capsys.readouterr().err
    # no --model, --lr, --group-size ...: a fresh run would take the defaults; a resumed one takes the saved run's
    assert main(["llm", "train", "--out", str(out), "--resume", "--steps", "4"]) == 0
    resumed = json.loads((out / "run_config.json").read_text())
    assert {k: v for k, v in resumed.items() if k not in ("steps", "resume")} == \
        {k: v for k, v in saved.items() if k not in ("steps", "resume")}
    assert resumed["steps"] == 4 and [m["step"] for m in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2, 3]
