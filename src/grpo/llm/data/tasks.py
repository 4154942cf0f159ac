"""Prompts: built-in tasks, local JSONL/CSV/Parquet files, or `datasets` names.

A dataset here is a list of rows (dicts). Every row has a ``prompt`` (a string, or a list of chat
messages ``{"role", "content"}``); every other column (``answer``, ...) is passed on to the reward
functions as a keyword argument, one value per completion.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from grpo.core import Registry

Row = dict[str, Any]


@dataclass(frozen=True)
class Task:
    """A built-in task: rows per split and the rewards that score it by default."""

    rows: Callable[[str], list[Row]]
    rewards: tuple[str, ...]


TASKS: Registry = Registry("built-in task")


def _addition_rows(split: str, test_size: int = 200, seed: int = 1234) -> list[Row]:
    """Two-digit addition ``"12+34="`` -> ``"46"``; a fixed 200-problem test split."""
    pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    random.Random(seed).shuffle(pairs)
    chosen = pairs[:test_size] if split == "test" else pairs[test_size:]
    return [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in chosen]


TASKS.register("addition")(Task(_addition_rows, rewards=("exact",)))  # 8,100 problems, splits train and test

_FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def _rows_from_dataset(ds: Any) -> list[Row]:
    return [dict(r) for r in ds]


def _prompt_problem(prompt: Any) -> str | None:
    """Why ``prompt`` cannot be a prompt (None when it can: non-empty text, or chat messages)."""
    if isinstance(prompt, str):
        return "is an empty string" if not prompt else None
    if isinstance(prompt, list):
        ok = prompt and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt)
        return None if ok else "is a list but not chat messages ({'role', 'content'} each)"
    return "is missing (null)" if prompt is None else f"is {type(prompt).__name__} {prompt!r}, not text"


def _check_lines(path: Path, prompt_column: str) -> None:
    """Read a text file line by line: bad UTF-8, and (JSON Lines) a row whose prompt is missing or not
    text, are one ValueError naming the file and the line."""
    import json

    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}: line {n} is not valid UTF-8 (byte {err.start + 1} of the line): "
                                 "save the file as UTF-8") from None
            if path.suffix.lower() != ".jsonl" or not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:
                raise ValueError(f"{path}: line {n} is not JSON ({err})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {n} is not a JSON object (one row per line: {{\"prompt\": ...}})")
            if prompt_column not in row:
                raise ValueError(f"{path}: line {n}: has no prompt column {prompt_column!r}; its columns are "
                                 f"{sorted(row)} (choose one with --prompt-column)")
            problem = _prompt_problem(row[prompt_column])
            if problem:
                raise ValueError(f"{path}: line {n}: prompt {problem}: every row needs a non-empty text prompt "
                                 "(or a list of chat messages)")


def check_prompts(rows: list[Row], where: str) -> None:
    """Every row's ``prompt`` is non-empty text or chat messages; else a ValueError naming the row."""
    for i, row in enumerate(rows, 1):
        problem = _prompt_problem(row.get("prompt"))
        if problem:
            raise ValueError(f"{where} row {i}: the prompt {problem}: every row needs a non-empty text prompt "
                             "(or a list of chat messages)")


def _load_file(path: Path, prompt_column: str = "prompt") -> list[Row]:
    import datasets

    kind = _FILE_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(_FILE_FORMATS)}")
    if path.stat().st_size == 0:
        return []
    if kind != "parquet":
        _check_lines(path, prompt_column)
    datasets.disable_progress_bars()  # a local file loads at once; its bars are noise
    try:
        ds = datasets.load_dataset(kind, data_files=str(path), split="train")
    except Exception as err:  # datasets raises many types for malformed files; report one line
        raise ValueError(f"{path}: could not read as {kind}: {type(err).__name__}: {err}") from None
    return _rows_from_dataset(ds)


def _load_hub(name: str, split: str) -> list[Row]:
    """``datasets`` name, optionally ``name:config`` (e.g. ``openai/gsm8k:main``)."""
    import datasets

    repo, _, config = name.partition(":")
    try:
        ds = datasets.load_dataset(repo, config or None, split=split)
    except Exception as err:  # hub/network/not-found errors vary by version; report one line
        raise ValueError(f"could not load dataset {name!r} split {split!r}: {err}") from None
    return _rows_from_dataset(ds)


def load_rows(task: str, split: str = "train", prompt_column: str = "prompt", limit: int | None = None) -> list[Row]:
    """Rows of a built-in task name, a local file, or a `datasets` name, with a ``prompt`` column.

    ``prompt_column`` names the column holding the prompt in files and datasets; it is renamed
    ``prompt``. Raises ValueError for an empty dataset or a missing prompt column.
    """
    if task in TASKS:
        rows = TASKS.get(task).rows(split)
    elif Path(task).suffix.lower() in _FILE_FORMATS or Path(task).exists():
        path = Path(task)
        if not path.is_file():
            raise ValueError(f"task file {task!r} does not exist")
        rows = _load_file(path, prompt_column)
    else:
        rows = _load_hub(task, split)
    if not rows:
        raise ValueError(f"task {task!r} (split {split!r}) holds no rows")
    if prompt_column not in rows[0]:
        raise ValueError(f"task {task!r} has no prompt column {prompt_column!r}; its columns are "
                         f"{sorted(rows[0])} (choose one with --prompt-column)")
    if prompt_column != "prompt":
        rows = [{**{k: v for k, v in r.items() if k != prompt_column}, "prompt": r[prompt_column]} for r in rows]
    check_prompts(rows, f"{task}" + (f" (split {split})" if task in TASKS or not Path(task).exists() else ""))
    return rows[:limit] if limit else rows


def default_rewards(task: str) -> tuple[str, ...] | None:
    """The rewards a built-in task is scored with, or None for files and datasets."""
    return TASKS.get(task).rewards if task in TASKS else None


def batch_indices(num_rows: int, step: int, size: int, seed: int) -> list[int]:
    """Row indices for ``step``: epochs of seeded shuffles, so a resumed run sees the same prompts."""
    out: list[int] = []
    start = step * size
    while len(out) < size:
        epoch, offset = divmod(start + len(out), num_rows)
        order = list(range(num_rows))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        out.extend(order[offset: offset + size - len(out)])
    return out


def columns_of(rows: list[Row], repeat: int = 1) -> dict[str, list[Any]]:
    """Every column except ``prompt`` as lists, each value repeated ``repeat`` times (one per sample)."""
    keys = [k for k in rows[0] if k != "prompt"]
    return {k: [r.get(k) for r in rows for _ in range(repeat)] for k in keys}
