"""Which entries of a run folder are the trainer's: its names, its numbered entries and the crash
leftovers of atomic writes; nothing else."""

import doctest
from pathlib import Path

import pytest

from grpo.utils import io, runfolder
from grpo.utils.io import AtomicDir, atomic_write
from grpo.utils.runfolder import RunFiles

FILES = RunFiles(("config.json", "metrics.jsonl", "checkpoint"), config="config.json", pattern=r"checkpoint-\d+")


@pytest.mark.parametrize("module", [runfolder, io])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl", "checkpoint", "checkpoint-000050", "checkpoint-1234567",
                                  ".checkpoint.tmp", ".checkpoint.old", ".checkpoint-000050.tmp", ".config.json.ab_3cd9z.tmp"])
def test_owns_the_trainers_entries(name):
    assert FILES.owns(name)


@pytest.mark.parametrize("name", ["thesis.tex", "docs", "checkpoint-notes", "checkpoints", "config.json.bak", ".config.json",
                                  ".notes.tmp", "my-checkpoint", "metrics.jsonl.old", ".checkpoint-notes.tmp"])
def test_leaves_everything_else(name):
    assert not FILES.owns(name)


def test_owns_the_temporary_names_the_atomic_writers_really_use(tmp_path):
    """What a crash in the middle of atomic_write or AtomicDir would leave in the folder."""
    used = []
    atomic_write(tmp_path / "config.json", lambda tmp: (used.append(tmp), open(tmp, "w").close()))
    dir_writer = AtomicDir(tmp_path / "checkpoint")
    names = [Path(used[0]).name, dir_writer.tmp.name, dir_writer.old.name]
    assert names[0] != "config.json" and all(FILES.owns(n) for n in names), names


COMMANDS = ("control", "llm", "sft")  # grpo train, grpo llm train, grpo llm sft


def _run_files(command):
    from grpo.control.train import RUN_FILES as CONTROL
    from grpo.llm.infra.checkpoint import RUN_FILES as LLM
    from grpo.llm.sft import SFT_FILES

    return {"control": CONTROL, "llm": LLM, "sft": SFT_FILES}[command]


@pytest.mark.parametrize("writer, other", [(w, o) for w in COMMANDS for o in COMMANDS if w != o])
def test_overwrite_never_deletes_another_commands_run(tmp_path, writer, other):
    """The three commands all write summary.json (and share metrics.jsonl or final pairwise): --overwrite of
    one in a folder holding another's run is refused and deletes nothing; the same folder without the
    other's config (the control) is cleared of the shared name."""
    mine, theirs = _run_files(writer), _run_files(other)
    for name in ("summary.json", theirs.config):
        (tmp_path / name).write_text("{}")
    with pytest.raises(FileExistsError, match="another command's run"):
        mine.prepare(tmp_path, resume=False, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["summary.json", theirs.config])
    (tmp_path / theirs.config).unlink()
    mine.prepare(tmp_path, resume=False, overwrite=True)
    assert list(tmp_path.iterdir()) == []
