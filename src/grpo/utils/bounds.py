"""Checks a run makes before it starts: does the batch fit in memory, can the run folder be written.

Each failure is one line naming the thing and what to change (the CLI prints it without a traceback).
"""

from __future__ import annotations

import os
from pathlib import Path

from grpo.errors import GrpoError


class TooLarge(GrpoError, ValueError):
    """A batch that cannot fit the machine's memory or the run's budget."""


def gib(n_bytes: float) -> str:
    """``gib(3 * 2**30)`` -> ``'3.0 GiB'``; small amounts in MiB."""
    return f"{n_bytes / 2**30:,.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:,.1f} MiB"


def available_memory(device: str = "cpu") -> int | None:
    """Bytes free for a new allocation on ``device`` (CUDA: free device memory; CPU: MemAvailable);
    None when the platform does not say."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(what: str, estimate: float, fix: str, device: str = "cpu") -> None:
    """Refuse ``what`` when its ``estimate`` (bytes, a lower bound) exceeds the memory ``device`` has free."""
    free = available_memory(device)
    if free is not None and estimate > free:
        raise TooLarge(f"{what} needs at least {gib(estimate)} of memory (estimate), more than the "
                       f"{gib(free)} free on {device}: {fix}")


def check_out_dir(out: str | Path, flag: str = "--out") -> None:
    """Refuse a run folder that is a file, lies under a file, or cannot be written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{flag} {out} is a file, not a folder: pass a folder (it is created if missing)")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{flag} {out}: {parent} is a file, not a folder: pass another {flag}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {out}: {parent} cannot be written (read-only or not yours): "
                              f"pass a folder you can write to")
