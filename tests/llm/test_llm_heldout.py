"""Held-out evaluation (issue 13): a file is never scored on its training rows; folders, data_files
splits and --eval-task give their own test rows; summary.json names what was evaluated."""

from __future__ import annotations

import json

import pytest

from grpo.cli import main
from grpo.llm.data.heldout import eval_set, split_holdout
from grpo.llm.data.sources import SplitNotFound, parse_data_files
from grpo.llm.data.tasks import load_rows

FAST = ["--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "4", "--progress", "false",
        "--tensorboard", "false", "--threads", "1", "--reward", "exact"]


def _rows(start: int, n: int) -> list[dict]:
    return [{"prompt": f"{a}+{a + 1}=", "answer": str(2 * a + 1)} for a in range(start, start + n)]


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        import pandas as pd

        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _prompts(rows):
    return [r["prompt"] for r in rows]


def test_a_file_holds_out_a_fixed_slice_that_training_never_gets(tmp_path):
    data = _write(tmp_path / "data.jsonl", _rows(10, 40))
    rows = load_rows(str(data))
    ev, train = eval_set(str(data), "test", rows=rows, holdout=0.25)
    assert len(ev.rows) == 10 and len(train) == 30
    assert not set(_prompts(ev.rows)) & set(_prompts(train))  # disjoint
    assert sorted(_prompts(ev.rows + train)) == sorted(_prompts(rows))  # nothing lost
    assert _prompts(train) == [p for p in _prompts(rows) if p not in set(_prompts(ev.rows))]  # order kept
    assert ev.source == f"held-out slice of 10 rows from {data}, not used for training"
    again, _ = eval_set(str(data), "test", rows=rows, holdout=10)  # a count: the same slice, by a fixed seed
    assert _prompts(again.rows) == _prompts(ev.rows) and _prompts(ev.rows) != _prompts(rows[:10])
    limited, _ = eval_set(str(data), "test", rows=rows, holdout=0.25, limit=4)
    assert _prompts(limited.rows) == _prompts(ev.rows)[:4] and "the first 4 evaluated" in limited.source


def test_a_file_too_small_or_holdout_off_is_not_evaluated_and_says_why(tmp_path):
    data = _write(tmp_path / "data.jsonl", _rows(10, 5))
    for holdout, words in ((0.1, "too few for a held-out slice"), (0.0, "eval_holdout is 0")):
        ev, train = eval_set(str(data), "test", rows=load_rows(str(data)), holdout=holdout)
        assert ev.rows is None and ev.source.startswith("none: ") and words in ev.source and len(train) == 5
    with pytest.raises(ValueError, match="leaving none to train on"):
        eval_set(str(data), "test", rows=load_rows(str(data)), holdout=5)


@pytest.mark.parametrize("layout", [("train.jsonl", "test.csv"), ("data/train-00000-of-00002.jsonl", "data/test.jsonl")])
def test_a_folder_gives_its_test_file(tmp_path, layout):
    train_name, test_name = layout
    _write(tmp_path / train_name, _rows(10, 20))
    if "00000" in train_name:  # a second shard, read after the first
        _write(tmp_path / "data/train-00001-of-00002.jsonl", _rows(60, 5))
    _write(tmp_path / test_name, _rows(40, 6))
    train = load_rows(str(tmp_path), "train")
    assert _prompts(train) == _prompts(_rows(10, 20) + (_rows(60, 5) if "00000" in train_name else []))
    ev, rows = eval_set(str(tmp_path), "test", rows=train, holdout=0.1)
    assert _prompts(ev.rows) == _prompts(_rows(40, 6)) and rows is train
    assert ev.source == f"6 prompts of {tmp_path} split test"
    with pytest.raises(SplitNotFound, match="no 'validation' file"):
        load_rows(str(tmp_path), "validation")


def test_a_folder_without_test_file_holds_out_a_slice_of_train(tmp_path):
    _write(tmp_path / "train.jsonl", _rows(10, 20))
    ev, train = eval_set(str(tmp_path), "test", rows=load_rows(str(tmp_path), "train"), holdout=0.2)
    assert len(ev.rows) == 4 and len(train) == 16 and not set(_prompts(ev.rows)) & set(_prompts(train))
    assert ev.source.startswith(f"held-out slice of 4 rows from {tmp_path} split train")


def test_data_files_with_splits(tmp_path):
    a, b = _write(tmp_path / "a.jsonl", _rows(10, 12)), _write(tmp_path / "b.jsonl", _rows(50, 3))
    task = f"json:train={a},test={b}"
    assert parse_data_files(task) == ("json", {"train": str(a), "test": str(b)})
    train = load_rows(task, "train")
    ev, rows = eval_set(task, "test", rows=train, holdout=0.1)
    assert _prompts(train) == _prompts(_rows(10, 12)) and _prompts(ev.rows) == _prompts(_rows(50, 3))
    only_train = f"json:train={a}"
    ev, rows = eval_set(only_train, "test", rows=load_rows(only_train, "train"), holdout=3)
    assert ev.source.startswith("held-out slice of 3 rows") and len(rows) == 9
    with pytest.raises(ValueError, match="expected NAME:SPLIT=FILES"):
        parse_data_files("json:train=")


def test_eval_task_is_used_and_overlap_with_training_is_flagged(tmp_path):
    train, test = _write(tmp_path / "tr.jsonl", _rows(10, 20)), _write(tmp_path / "te.csv", _rows(40, 5))
    rows = load_rows(str(train))
    ev, kept = eval_set(str(train), "test", rows=rows, eval_task=str(test), holdout=0.1)
    assert _prompts(ev.rows) == _prompts(_rows(40, 5)) and kept is rows and ev.source == f"5 prompts of {test}"
    same, _ = eval_set(str(train), "test", rows=rows, eval_task=str(train), limit=8)
    assert "warning: 8 of these 8 prompts are also training prompts" in same.source


def test_train_cli_trains_without_the_slice_and_names_it_in_summary(tiny_path, tmp_path, monkeypatch, capsys):
    import grpo.llm.run as run

    data = _write(tmp_path / "data.jsonl", _rows(10, 40))
    seen: dict[str, list] = {"train": [], "eval": []}
    build = run.build_trainer

    def spy_build(cfg, policy, tok, rows, *args, **kw):
        seen["train"] = _prompts(rows)
        return build(cfg, policy, tok, rows, *args, **kw)

    def spy_accuracy(model, tok, rows, *args, **kw):
        seen["eval"].append(_prompts(rows))
        return 0.5

    monkeypatch.setattr(run, "build_trainer", spy_build)
    monkeypatch.setattr(run, "greedy_accuracy", spy_accuracy)
    out = tmp_path / "run"
    assert main(["llm", "train", "--model", str(tiny_path), "--task", str(data), "--out", str(out), "--steps", "1",
                 "--eval-holdout", "0.2", *FAST]) == 0
    _, held = split_holdout(load_rows(str(data)), 8)
    assert seen["eval"] == [_prompts(held)] * 2  # before and after, on the slice only
    assert len(seen["train"]) == 32 and not set(seen["train"]) & set(_prompts(held))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_source"] == f"held-out slice of 8 rows from {data}, not used for training"
    assert summary["eval_prompts"] == 8 and summary["accuracy_before"] == 0.5
    assert "greedy accuracy before: 50.0% on held-out slice of 8 rows" in capsys.readouterr().out

    off = tmp_path / "off"
    assert main(["llm", "train", "--model", str(tiny_path), "--task", str(data), "--out", str(off), "--steps", "1",
                 "--eval-holdout", "0", *FAST]) == 0
    summary = json.loads((off / "summary.json").read_text())
    assert summary["accuracy_before"] is None and summary["eval_source"].startswith("none: ")
    assert "evaluation: none: " in capsys.readouterr().out and len(seen["train"]) == 40


def test_eval_cli_scores_the_same_slice(tiny_path, tmp_path, monkeypatch, capsys):
    import grpo.llm.evaluation as evaluation

    data = _write(tmp_path / "data.jsonl", _rows(10, 40))
    scored: list = []

    def spy_counts(model, tok, rows, *args, **kw):
        scored.append(_prompts(rows))
        return [1] * len(rows)

    monkeypatch.setattr(evaluation, "correct_counts", spy_counts)
    base = ["llm", "eval", "--model", str(tiny_path), "--task", str(data), "--reward", "exact", "--threads", "1"]
    assert main([*base, "--holdout", "0.2"]) == 0
    assert scored[-1] == _prompts(split_holdout(load_rows(str(data)), 8)[1])
    assert "on held-out slice of 8 rows" in capsys.readouterr().out
    assert main(base) == 0  # no --holdout: the file is what the user asked to evaluate, whole
    assert len(scored[-1]) == 40 and "(the whole file)" in capsys.readouterr().out
    _write(tmp_path / "folder" / "train.jsonl", _rows(10, 20))  # no test file, no --holdout: refused in one line
    assert main([*base[:5], str(tmp_path / "folder"), *base[6:]]) == 2
    err = capsys.readouterr().err
    assert "nothing to evaluate" in err and "--holdout 0.1" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("bad", ["-0.1", "2.5"])
def test_eval_holdout_must_be_a_share_or_a_count(bad):
    from grpo.llm.config import GRPOConfig

    with pytest.raises(ValueError, match="eval_holdout"):
        GRPOConfig(eval_holdout=float(bad))
