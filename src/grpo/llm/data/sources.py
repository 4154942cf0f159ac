"""Where rows come from besides built-in tasks: a file, a folder of split files, a `datasets` name.

- a ``.jsonl``/``.json``/``.csv``/``.parquet`` file: one set of rows, with no splits;
- a folder: one file per split, ``SPLIT.EXT`` or shards ``SPLIT-*.EXT`` (EXT any of the above,
  formats may differ between splits), in the folder or in its ``data/`` subfolder (the layout of a
  downloaded hub dataset), e.g. ``train.jsonl`` + ``test.csv``;
- ``NAME`` or ``NAME:CONFIG``: a `datasets` name (``openai/gsm8k:main``);
- ``NAME:SPLIT=FILES,SPLIT=FILES``: ``datasets.load_dataset(NAME, data_files={SPLIT: FILES})``, NAME
  being a builder (json, csv, parquet) or a hub dataset, FILES a path or glob, e.g.
  ``json:train=data/a.jsonl,test=data/b.jsonl``.

A split a source lacks raises :class:`SplitNotFound`, which held-out evaluation
(:mod:`grpo.llm.data.heldout`) turns into a held-out slice of the training rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Row = dict[str, Any]
FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class SplitNotFound(ValueError):
    """The source has splits, but not the one asked for."""


def is_single_file(task: str) -> bool:
    """True for a path to one data file (rows without splits)."""
    path = Path(task)
    if path.is_file():
        return True
    data_files = "=" in task.partition(":")[2]  # NAME:SPLIT=FILES ends in a file name too
    return path.suffix.lower() in FILE_FORMATS and not path.is_dir() and not data_files


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


def load_file(path: Path, prompt_column: str = "prompt") -> list[Row]:
    """Rows of one local data file (an empty file: no rows)."""
    import datasets

    kind = FILE_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(FILE_FORMATS)}")
    if not path.is_file():
        raise ValueError(f"task file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        return []
    if kind != "parquet":
        _check_lines(path, prompt_column)
    datasets.disable_progress_bars()  # a local file loads at once; its bars are noise
    try:
        ds = datasets.load_dataset(kind, data_files=str(path), split="train")
    except Exception as err:  # datasets raises many types for malformed files; report one line
        raise ValueError(f"{path}: could not read as {kind}: {type(err).__name__}: {err}") from None
    return [dict(r) for r in ds]


def split_files(folder: Path) -> dict[str, list[Path]]:
    """Split name -> its files in ``folder`` (or ``folder/data``): ``SPLIT.EXT`` or ``SPLIT-*.EXT``."""
    out: dict[str, list[Path]] = {}
    for where in (folder, folder / "data"):
        for path in sorted(where.iterdir()) if where.is_dir() else []:
            if path.is_file() and path.suffix.lower() in FILE_FORMATS:
                out.setdefault(path.stem.split("-")[0], []).append(path)
        if out:
            return out
    return out


def load_folder(folder: Path, split: str, prompt_column: str) -> list[Row]:
    """Rows of ``split`` from a folder of split files, shards concatenated in name order."""
    files = split_files(folder)
    if not files:
        raise ValueError(f"task folder {str(folder)!r} holds no data file: name them SPLIT.EXT "
                         f"(train.jsonl, test.csv, ...; EXT one of {sorted(FILE_FORMATS)})")
    if split not in files:
        raise SplitNotFound(f"task folder {str(folder)!r} has no {split!r} file (it has "
                            f"{', '.join(sorted(files))}): add {split}.jsonl (or .csv, .parquet)")
    return [row for path in files[split] for row in load_file(path, prompt_column)]


def parse_data_files(task: str) -> tuple[str, dict[str, str]] | None:
    """``NAME:SPLIT=FILES,...`` -> (NAME, {SPLIT: FILES}); None for any other task string.

    >>> parse_data_files("json:train=a.jsonl,test=b.jsonl")
    ('json', {'train': 'a.jsonl', 'test': 'b.jsonl'})
    >>> parse_data_files("openai/gsm8k:main") is None
    True
    """
    name, sep, rest = task.partition(":")
    if not sep or "=" not in rest:
        return None
    pairs = [part.partition("=") for part in rest.split(",")]
    bad = [s + e + f for s, e, f in pairs if not (s.strip() and e and f.strip())]
    if bad or not name:
        raise ValueError(f"--task {task!r}: expected NAME:SPLIT=FILES[,SPLIT=FILES] "
                         "(e.g. json:train=a.jsonl,test=b.jsonl)")
    return name, {s.strip(): f.strip() for s, _, f in pairs}


def load_hub(task: str, split: str) -> list[Row]:
    """Rows of ``split`` of a `datasets` name, ``name:config`` or ``name:SPLIT=FILES,...``."""
    import datasets

    spec = parse_data_files(task)
    repo, _, config = task.partition(":")
    if spec and split not in spec[1]:
        raise SplitNotFound(f"--task {task!r} names no {split!r} files (it has {', '.join(spec[1])})")
    name, config, kwargs = (spec[0], None, {"data_files": spec[1]}) if spec else (repo, config or None, {})
    try:
        ds = datasets.load_dataset(name, config, **kwargs)
    except Exception as err:  # hub/network/not-found errors vary by version; report one line
        raise ValueError(f"could not load dataset {task!r}: {type(err).__name__}: {err}") from None
    if split not in ds:
        if "[" in split:  # split slicing ("train[:100]") is understood by load_dataset itself
            return [dict(r) for r in datasets.load_dataset(name, config, split=split, **kwargs)]
        raise SplitNotFound(f"dataset {task!r} has no split {split!r} (it has {', '.join(ds)})")
    return [dict(r) for r in ds[split]]
