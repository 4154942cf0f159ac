"""Where models built or converted on first use are kept (``$GRPO_LAB_CACHE``, default
``~/.cache/grpo-lab``), and how a folder gets there: written aside, then renamed into place.

Used by the tiny model (:mod:`grpo.llm.modeling.tiny`) and by converted GGUF files
(:mod:`grpo.llm.modeling.pretrained`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

CACHE_ENV = "GRPO_LAB_CACHE"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "grpo-lab")


def write_folder(path: Path, fill: Callable[[Path], None], done: str = "config.json") -> None:
    """Create ``path`` atomically: ``fill`` writes into a private temporary folder beside it, which is
    then renamed to ``path``. Two processes building the same folder both succeed: the first rename
    wins and the other finds ``path/done`` in place (its own copy is dropped)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        fill(tmp)
        os.replace(tmp, path)
    except OSError:
        if not (path / done).exists():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
