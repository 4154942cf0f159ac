"""Keep freed memory inside the process (``--keep-freed-memory``, on by default for CPU runs).

glibc's ``malloc`` serves every block above 32 MiB with its own ``mmap`` and hands it back to the kernel
on ``free``. A CPU training step allocates such blocks dozens of times (a [V, H] gradient of the LM head
or embedding, Adam's temporaries, a chunk of [n, V] logits), so each one is faulted in again page by
page, and the kernel zeroes every page first. On a virtual machine that returns freed pages to its host
(free page reporting, as on the 2-core machines measured) a fresh 113 MiB tensor took 200 ms to fill
where a reused one took 4 ms. With ``mmap`` off for large blocks and the heap never trimmed, freed
blocks stay in the process and are reused: the update of SmolLM2-135M (32 completions, 2 threads) took
16% less time for 5% more peak RSS (BENCHMARKS.md, the SmolLM2-135M-Instruct vs TRL section).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
NEVER_TRIM = 2 ** 31 - 1  # mallopt takes an int: trim only when 2 GiB lie free at the top of the heap


def keep_freed_memory(device_type: str = "cpu") -> bool:
    """Turn off ``mmap`` for large blocks and trimming of the heap in this process (glibc only), for a run
    whose tensors live in host memory (``device_type`` "cpu"; a GPU run's do not, so nothing changes).

    Returns whether it took effect: False for other devices and on other C libraries (macOS, musl, Windows).
    Blocks already mapped stay as they are; what is allocated from now on comes from the heap and, once
    freed, stays there for the next allocation.
    """
    if device_type != "cpu" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
