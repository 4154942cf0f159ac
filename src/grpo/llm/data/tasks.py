"""Prompts: built-in tasks, local JSONL/CSV/Parquet files or folders of them, or `datasets` names
(:mod:`grpo.llm.data.sources` reads all but the built-in tasks).

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
from grpo.llm.data.sources import Row, SplitNotFound, check_prompts, is_single_file, load_file, load_folder, load_hub
from grpo.llm.data.word_problems import word_problem_rows


@dataclass(frozen=True)
class Task:
    """A built-in task: rows per split and the rewards that score it by default."""

    rows: Callable[[str], list[Row]]
    rewards: tuple[str, ...]


TASKS: Registry = Registry("built-in task")


def _addition_rows(split: str, test_size: int = 200, seed: int = 1234) -> list[Row]:
    """Two-digit addition ``"12+34="`` -> ``"46"``; a fixed 200-problem test split."""
    if split not in ("train", "test"):
        raise SplitNotFound(f"task 'addition' has no split {split!r}; its splits are train and test")
    pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    random.Random(seed).shuffle(pairs)
    chosen = pairs[:test_size] if split == "test" else pairs[test_size:]
    return [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in chosen]


TASKS.register("addition")(Task(_addition_rows, rewards=("exact",)))  # 8,100 problems, splits train and test

TASKS.register("word-problems")(Task(word_problem_rows, rewards=("numeric",)))  # chat; 5,000 train, 500 test


def load_rows(task: str, split: str = "train", prompt_column: str = "prompt", limit: int | None = None) -> list[Row]:
    """Rows of a built-in task name, a local file, a folder of split files, or a `datasets` name (see
    :mod:`grpo.llm.data.sources`), with a ``prompt`` column.

    A single file has no splits: ``split`` does not apply to it (held-out evaluation of a file is
    :func:`grpo.llm.data.heldout.eval_set`'s business). ``prompt_column`` names the column holding
    the prompt in files and datasets; it is renamed ``prompt``. Raises ValueError for an empty
    dataset or a missing prompt column, :class:`SplitNotFound` for a split the source lacks.
    """
    if task in TASKS:
        rows = TASKS.get(task).rows(split)
    elif is_single_file(task) or Path(task).is_file():
        rows = load_file(Path(task), prompt_column)
    elif Path(task).is_dir():
        rows = load_folder(Path(task), split, prompt_column)
    else:
        rows = load_hub(task, split)
    where = task if is_single_file(task) else f"{task} (split {split})"
    if not rows:
        raise ValueError(f"task {where} holds no rows")
    if prompt_column not in rows[0]:
        raise ValueError(f"task {where} has no prompt column {prompt_column!r}; its columns are "
                         f"{sorted(rows[0])} (choose one with --prompt-column)")
    if prompt_column != "prompt":
        rows = [{**{k: v for k, v in r.items() if k != prompt_column}, "prompt": r[prompt_column]} for r in rows]
    check_prompts(rows, where)
    return rows[:limit] if limit else rows


def default_rewards(task: str) -> tuple[str, ...] | None:
    """The rewards a built-in task is scored with, or None for files and datasets.

    >>> default_rewards("word-problems"), default_rewards("data.jsonl")
    (('numeric',), None)
    """
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
