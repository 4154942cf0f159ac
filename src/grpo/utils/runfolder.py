"""A trainer's run folder: which entries are the trainer's, and the fresh/resume/overwrite rule.

A run folder may be any folder, the working directory included (``--out .``), so a trainer
touches only the entries it writes: its named files and folders, numbered entries matching its
pattern (``checkpoint-000050``), and the temporary or set-aside copies that
:func:`grpo.utils.io.atomic_write` (``.NAME.XXXXXXXX.tmp``) and :class:`grpo.utils.io.AtomicDir`
(``.NAME.tmp``, ``.NAME.old``) leave when a crash interrupts them. Everything else is the user's.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

# ".NAME.tmp" / ".NAME.old" (AtomicDir) and ".NAME.XXXXXXXX.tmp" (atomic_write's mkstemp name)
_ASIDE = re.compile(r"\.(?P<base>.+?)(?:\.[a-z0-9_]{8})?\.(?:tmp|old)")


@dataclass(frozen=True)
class RunFiles:
    """The entries a trainer writes into its run folder.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> for name in ("metrics.jsonl", ".config.json.ab12cd34.tmp", "checkpoint-000002", "checkpoint-notes", "thesis.tex"):
    ...     _ = (out / name).write_text("x")
    >>> files = RunFiles(("config.json", "metrics.jsonl"), config="config.json", pattern=r"checkpoint-\\d+")
    >>> sorted(p.name for p in files.present(out))
    ['.config.json.ab12cd34.tmp', 'checkpoint-000002', 'metrics.jsonl']
    """

    names: tuple[str, ...]  # files and folders, e.g. "metrics.jsonl", "checkpoint"
    config: str  # the saved configuration: its presence marks a run that --resume can continue
    pattern: str = ""  # regex of numbered entries, matched against the whole name
    # the config files of other commands whose runs share entry names (summary.json, final): a folder
    # holding one is another command's run, which --overwrite must not delete
    foreign: tuple[str, ...] = ()

    def owns(self, name: str) -> bool:
        aside = _ASIDE.fullmatch(name)
        for base in (name, aside.group("base")) if aside else (name,):
            if base in self.names or (self.pattern and re.fullmatch(self.pattern, base)):
                return True
        return False

    def present(self, out: Path) -> list[Path]:
        """This trainer's entries now in ``out``."""
        out = Path(out)
        return sorted(p for p in out.iterdir() if self.owns(p.name)) if out.is_dir() else []

    def remove(self, out: Path, keep: tuple[str, ...] = ()) -> None:
        """Delete this trainer's entries in ``out`` (except ``keep``), never anything else."""
        for p in self.present(out):
            if p.name in keep:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)

    def prepare(self, out: Path, resume: bool, overwrite: bool) -> None:
        """Check ``out`` for a fresh run, a resumed one or an overwrite.

        Fresh: refused if the folder already holds a run. Resume: the saved config must be there.
        Overwrite: this trainer's entries are deleted first; the user's stay.
        """
        out = Path(out)
        if resume and overwrite:
            raise ValueError("--resume and --overwrite exclude each other: --resume continues the run "
                             f"in {out}, --overwrite replaces it; pick one")
        if resume:
            if not (out / self.config).is_file():
                raise FileNotFoundError(f"--resume: {out} holds no {self.config}, so there is no run to "
                                        "continue; check --out, or drop --resume to start a run there")
        elif self.present(out):
            other = next((name for name in self.foreign if (out / name).is_file()), None)
            if other:
                raise FileExistsError(f"{out} holds another command's run ({other}), whose files --overwrite would "
                                      "delete with this command's; pick another --out")
            if not overwrite:
                raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or "
                                      "--overwrite to replace it")
            self.remove(out)
