"""Held-out evaluation: the rows greedy accuracy is measured on, never rows that training sees.

Chosen in this order (``grpo llm train``; ``grpo llm eval`` with ``--holdout``):

1. ``--eval-task SOURCE``: that source's ``eval_split`` (a single file: all its rows);
2. the task's own ``eval_split``: a built-in task's test split, a folder's ``test`` file, a
   ``datasets`` test split or ``test=`` data files;
3. a task without that split (a single file, a folder with no test file, ...): a held-out slice of
   the training rows, ``eval_holdout`` of them (a share below 1, else a row count), drawn by a
   shuffle with a fixed seed (the same slice for every ``--seed``) and removed from training;
4. otherwise no evaluation, and the reason says what to give.

:class:`EvalSet` ``source`` names what was chosen, for the log and ``summary.json``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from grpo.llm.data.sources import Row, SplitNotFound, is_single_file
from grpo.llm.data.tasks import load_rows

HOLDOUT_SEED = 0  # fixed: runs with different --seed are scored on the same held-out rows


@dataclass(frozen=True)
class EvalSet:
    """Rows to evaluate on (None: no evaluation) and what they are, in words."""

    rows: list[Row] | None
    source: str


def holdout_count(num_rows: int, holdout: float) -> int:
    """Rows held out: ``holdout`` x rows (rounded down) for a share below 1, else ``holdout`` rows.

    >>> holdout_count(1000, 0.1), holdout_count(1000, 50), holdout_count(9, 0.1)
    (100, 50, 0)
    """
    return int(holdout) if holdout >= 1 else int(holdout * num_rows)


def split_holdout(rows: list[Row], count: int) -> tuple[list[Row], list[Row]]:
    """(training rows in their order, ``count`` held-out rows), chosen by a fixed-seed shuffle."""
    order = list(range(len(rows)))
    random.Random(HOLDOUT_SEED).shuffle(order)
    held = set(order[:count])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in order[:count]]


def _key(prompt: object) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def _overlap_note(evaluated: list[Row], train: list[Row] | None) -> str:
    """A warning when evaluated prompts also occur among the training rows ("" when none do)."""
    if not train:
        return ""
    seen = {_key(r["prompt"]) for r in train}
    shared = sum(_key(r["prompt"]) in seen for r in evaluated)
    return f" (warning: {shared} of these {len(evaluated)} prompts are also training prompts)" if shared else ""


def eval_set(task: str, eval_split: str | None, *, split: str = "train", rows: list[Row] | None = None,
             eval_task: str | None = None, holdout: float = 0.0, prompt_column: str = "prompt",
             limit: int | None = None) -> tuple[EvalSet, list[Row] | None]:
    """(what to evaluate on, the training rows left) for a run on ``task``/``split``.

    ``rows`` are the training rows when already loaded; they are loaded here only when a slice must
    be held out of them. The training rows returned lack the held-out slice; they are ``rows``
    unchanged when nothing was held out. ``limit`` caps the rows evaluated (the first ones).
    """
    if eval_split is None:
        return EvalSet(None, "none (eval_split is none)"), rows
    if eval_task:
        evaluated = load_rows(eval_task, eval_split, prompt_column, limit)
        name = eval_task if is_single_file(eval_task) else f"{eval_task} split {eval_split}"
        return EvalSet(evaluated, f"{len(evaluated)} prompts of {name}" + _overlap_note(evaluated, rows)), rows
    missing = f"{task} is a single file, with no {eval_split} split"
    if not is_single_file(task):
        try:
            evaluated = load_rows(task, eval_split, prompt_column, limit)
            return EvalSet(evaluated, f"{len(evaluated)} prompts of {task} split {eval_split}"
                           + _overlap_note(evaluated, rows)), rows
        except SplitNotFound as err:
            missing = str(err)
    fix = "give --eval-task FILE (a held-out file)"
    if holdout <= 0:
        return EvalSet(None, f"none: {missing}, and eval_holdout is 0 ({fix}, or --eval-holdout 0.1)"), rows
    rows = load_rows(task, split, prompt_column) if rows is None else rows
    count = holdout_count(len(rows), holdout)
    if count < 1:
        return EvalSet(None, f"none: {task} has {len(rows)} rows, too few for a held-out slice of {holdout:g} "
                             f"({fix}, or --eval-holdout N for N rows)"), rows
    if count >= len(rows):
        raise ValueError(f"--eval-holdout {holdout:g} holds out {count} of the {len(rows)} rows of {task}, leaving none "
                         "to train on: give a smaller share or count, or --eval-task FILE")
    train, held = split_holdout(rows, count)
    evaluated = held[:limit] if limit else held
    shown = f"; the first {len(evaluated)} evaluated" if len(evaluated) < count else ""
    where = task if is_single_file(task) else f"{task} split {split}"
    return EvalSet(evaluated, f"held-out slice of {count} rows from {where}, not used for training{shown}"
                   + _overlap_note(evaluated, train)), train
