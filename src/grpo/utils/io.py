"""Atomic, safe file writes and loads.

Every write goes to a temporary file in the same folder, is fsync'ed, then renamed over the
target, so a crash leaves either the old file or the new one, never half of one. Loads never
unpickle arbitrary objects: weights are safetensors, other torch state uses ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then fsync and rename ``tmp_path`` over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")

    atomic_write(path, write)


def read_json(path: str | Path) -> Any:
    with open(path) as fh:
        return json.load(fh)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Save a flat dict of tensors as safetensors, atomically."""
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(flat, tmp))


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a truncated or garbage file is one GrpoError naming it."""
    from safetensors import SafetensorError

    from grpo.errors import GrpoError

    try:
        return load_file(str(path), device=str(device))
    except SafetensorError as err:
        raise GrpoError(f"{path}: not a readable safetensors file ({err}); the file is damaged or "
                        "incomplete: restore it or retrain") from None


def torch_save(path: str | Path, obj: Any) -> None:
    """Save torch state (e.g. optimizer state dicts, RNG states) atomically."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def torch_load(path: str | Path) -> Any:
    """Load torch state without unpickling arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)


class JsonlWriter:
    """Append-only JSON-lines log, flushed after every record."""

    def __init__(self, path: str | Path, mode: str = "a"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, mode)

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, default=float) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_jsonl(path: str | Path, skip_bad_lines: bool = False) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; ``skip_bad_lines`` drops lines that do not parse (e.g. the
    last line of a log cut by a crash) instead of raising."""
    out = []
    with open(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if not skip_bad_lines:
                    raise
    return out


def truncate_jsonl(path: str | Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite a JSON-lines log with only the records ``keep`` accepts (and without a last line cut by
    a crash): a resumed run drops what it logged after the checkpoint it continues from, since it
    will log those steps again."""
    path = Path(path)
    if not path.exists():
        return
    records = [r for r in read_jsonl(path, skip_bad_lines=True) if keep(r)]

    def write(tmp: str) -> None:
        with JsonlWriter(tmp, mode="w") as writer:
            for record in records:
                writer.write(record)

    atomic_write(path, write)


class AtomicDir:
    """Write a folder (e.g. a checkpoint) so that a crash never leaves a half-written one.

    Files go into ``<parent>/.<name>.tmp``; :meth:`commit` fsyncs them, moves an existing
    ``<name>`` aside to ``.<name>.old``, renames the new folder into place, then deletes the old
    one. :func:`resolve_dir` finds the last complete folder even if the crash fell between the
    two renames.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with AtomicDir(root / "ckpt") as tmp:
    ...     _ = (tmp / "a.txt").write_text("1")
    >>> (root / "ckpt" / "a.txt").read_text()
    '1'
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tmp = self.path.parent / f".{self.path.name}.tmp"
        self.old = self.path.parent / f".{self.path.name}.old"

    def __enter__(self) -> Path:
        import shutil

        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        import shutil

        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        for f in self.tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        _fsync_dir(self.tmp)
        if self.path.exists():
            if self.old.exists():
                shutil.rmtree(self.old)
            os.replace(self.path, self.old)
        os.replace(self.tmp, self.path)
        _fsync_dir(self.path.parent)
        shutil.rmtree(self.old, ignore_errors=True)


def resolve_dir(path: str | Path) -> Path | None:
    """The complete folder written by :class:`AtomicDir` at ``path``, or None if there is none."""
    path = Path(path)
    if path.is_dir():
        return path
    old = path.parent / f".{path.name}.old"
    return old if old.is_dir() else None
