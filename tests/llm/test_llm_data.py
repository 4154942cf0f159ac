"""Loading prompts from built-in tasks and files; columns passed on; clear errors."""

from __future__ import annotations

import json

import pytest

from grpo.llm.data.tasks import batch_indices, columns_of, default_rewards, load_rows

ROWS = [{"question": "1+1=", "answer": "2", "level": 1}, {"question": "2+3=", "answer": "5", "level": 2}]


def _write(tmp_path, kind):
    import pandas as pd

    path = tmp_path / f"data.{kind}"
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif kind == "csv":
        pd.DataFrame(ROWS).to_csv(path, index=False)
    else:
        pd.DataFrame(ROWS).to_parquet(path)
    return path


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_files_load_with_prompt_column_renamed_and_extra_columns_kept(tmp_path, kind):
    rows = load_rows(str(_write(tmp_path, kind)), prompt_column="question")
    assert [r["prompt"] for r in rows] == ["1+1=", "2+3="]
    assert [str(r["answer"]) for r in rows] == ["2", "5"] and [int(r["level"]) for r in rows] == [1, 2]
    assert "question" not in rows[0]
    cols = columns_of(rows, repeat=2)
    assert [str(a) for a in cols["answer"]] == ["2", "2", "5", "5"] and "prompt" not in cols


def test_builtin_addition_splits_are_disjoint():
    train, test = load_rows("addition", "train"), load_rows("addition", "test")
    assert len(test) == 200 and len(train) == 90 * 90 - 200
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    assert all(int(r["answer"]) == sum(map(int, r["prompt"][:-1].split("+"))) for r in test)
    assert default_rewards("addition") == ("exact",) and default_rewards("file.jsonl") is None


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no prompt column 'prompt'.*question"):
        load_rows(str(_write(tmp_path, "jsonl")))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="holds no rows|could not|empty"):
        load_rows(str(empty))
    with pytest.raises(ValueError, match="does not exist"):
        load_rows(str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="unsupported file type"):
        bad = tmp_path / "data.txt"
        bad.write_text("x")
        load_rows(str(bad))


def test_batch_indices_are_deterministic_epochs():
    a = [batch_indices(10, s, 4, seed=3) for s in range(5)]
    assert a == [batch_indices(10, s, 4, seed=3) for s in range(5)]  # a resumed run sees the same prompts
    first_epoch = a[0] + a[1] + a[2][:2]
    assert sorted(first_epoch) == list(range(10))  # every prompt once per epoch
    assert a != [batch_indices(10, s, 4, seed=4) for s in range(5)]
