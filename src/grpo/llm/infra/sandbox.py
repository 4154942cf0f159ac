"""Run model-written code outside the trainer: separate process, time and memory limits, no
network, a scratch directory as the only writable place (issue 7).

:func:`run_untrusted` starts ``_sandbox_child.py``, which applies every isolation layer the
machine allows and then runs the program under ``python -I -S``. Layers, strongest first (the
ones that held are listed in :attr:`SandboxResult.isolation`):

- ``net-namespace``: the program has no network interface at all (not even the host's
  loopback). Needs root or unprivileged user namespaces.
- ``pid-namespace``: every process the program starts dies with it, even ones that left its
  process group; the program cannot see or signal the trainer.
- ``read-only-fs`` + ``tmpfs-scratch``: every mount is read-only; the scratch directory is a
  private tmpfs of ``scratch_mb`` that vanishes with the run. Directories the program's uid may
  not enter (e.g. /root, home of a pyenv interpreter) are replaced by an empty tmpfs that holds
  only the interpreter.
- ``unprivileged-uid`` (when the trainer runs as root): a fresh uid without capabilities, so
  file permissions apply and ``nproc-limit`` (RLIMIT_NPROC) caps this run's processes; root is
  exempt from RLIMIT_NPROC, which is why it is only applied with a uid of our own.
- ``rlimits``: RLIMIT_AS (``memory_mb``: allocations fail with MemoryError), RLIMIT_CPU, file
  size, open files, no core dumps. ``no-new-privs``: setuid binaries gain nothing.
- the audit hook (PEP 578) in the program's interpreter refuses process creation, sockets,
  ctypes, and file writes outside the scratch directory, with a clear PermissionError. It stops
  ordinary code, not a determined attacker: PEP 578 hooks are not a security boundary.
- always: a wall-clock limit that kills the whole process group, output capped at
  ``max_output_bytes`` per stream, and a final sweep that kills any process still carrying
  this run's id in its environment (the fallback when there is no PID namespace).

What it does not do: reads are not restricted beyond file permissions (the program can read
world-readable files such as the repository); memory is limited per process, not in total
(no cgroup); there is no seccomp filter, so the kernel's whole syscall surface is reachable by
native code. Where namespaces are refused (e.g. root in a container without CAP_SYS_ADMIN) and
the interpreter lives where another uid cannot reach it, only the rlimits, the audit hook, the
wall clock and the sweep remain, and the program runs as the trainer's user: check
``isolation`` before trusting a machine with hostile code.

The ``code`` reward (:mod:`grpo.llm.data.rewards.execution`) runs model-written functions here and
judges them outside, from the values they return.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Mapping

_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_child.py")
_RUN_ID_VAR = "GRPO_SANDBOX_RUN"
_EXIT_GRACE_S = 0.5  # how long pipes may stay open after the program exited (escaped children)
_SWEEP_S = 2.0  # the longest we wait for killed leftovers to disappear


class SandboxError(RuntimeError):
    """The sandbox itself failed before the program could start (not the program's fault)."""


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one program.

    ``returncode`` is the exit status, or ``-N`` when it died from signal N. ``killed_reason``
    is None for a program that ended on its own, else ``"timeout"``, ``"memory_limit"``
    (MemoryError under RLIMIT_AS), ``"cpu_limit"``, ``"file_size_limit"`` or ``"signal NAME"``.
    """

    ok: bool
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    killed_reason: str | None
    wall_s: float
    output_truncated: bool = False
    isolation: tuple[str, ...] = ()


def run_untrusted(
    code: str,
    *,
    stdin: str = "",
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    max_output_bytes: int = 65536,
    max_processes: int = 8,
    scratch_mb: int = 64,
    env: Mapping[str, str] | None = None,
    audit_hook: bool = True,
    namespaces: bool = True,
) -> SandboxResult:
    """Run the Python program ``code`` in the sandbox; never raises for the program's errors.

    ``timeout_s`` is wall time for the whole run; ``max_processes`` counts threads too;
    ``env`` adds environment variables. ``audit_hook=False`` and ``namespaces=False`` turn
    layers off, for tests that check the other layers alone.
    """
    start = time.monotonic()
    run_id = secrets.token_hex(8)
    scratch = os.path.realpath(tempfile.mkdtemp(prefix="grpo-sandbox-"))
    python = os.path.realpath(sys.executable)
    cfg = {
        "code": code, "python": python, "scratch": scratch, "scratch_mb": scratch_mb,
        "memory_mb": memory_mb, "cpu_s": math.ceil(timeout_s) + 1, "max_processes": max_processes,
        "uid": _fresh_uid(), "audit_hook": audit_hook, "namespaces": namespaces,
    }
    environ = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": scratch, "TMPDIR": scratch,
        "MALLOC_ARENA_MAX": "2",  # glibc reserves 64 MiB of address space per thread arena otherwise
        **(env or {}), _RUN_ID_VAR: run_id,
    }
    proc = None
    try:
        with tempfile.TemporaryFile() as cfg_file, tempfile.TemporaryFile() as report:
            cfg_file.write(json.dumps(cfg).encode())
            cfg_file.flush()
            fds = (cfg_file.fileno(), report.fileno())
            proc = subprocess.Popen(
                [python, "-I", "-S", _CHILD, "setup", *map(str, fds)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=scratch, env=environ, start_new_session=True, pass_fds=fds,
            )
            out, err, timed_out = _communicate(proc, stdin.encode(), start + timeout_s, max_output_bytes)
            _kill_group(proc)
            report.seek(0)
            notes = [json.loads(line) for line in report.read().decode().splitlines()]
    finally:
        if proc is not None:
            _kill_group(proc)
        _kill_leftovers(run_id)
        shutil.rmtree(scratch, ignore_errors=True)

    layers = next((n["layers"] for n in notes if "layers" in n), None)
    errors = [n["error"] for n in notes if "error" in n]
    if errors or (layers is None and not timed_out):
        raise SandboxError(f"sandbox setup failed: {errors} {err.text()[-2000:]}")
    status = next((n["status"] for n in notes if "status" in n), None)
    returncode = proc.returncode if status is None else status.get("code", -status.get("signal", 0))
    stdout, stderr = out.text(), err.text()
    return SandboxResult(
        ok=returncode == 0 and not timed_out,
        returncode=returncode,
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
        killed_reason=_killed_reason(returncode, timed_out, stderr),
        wall_s=time.monotonic() - start,
        output_truncated=out.truncated or err.truncated,
        isolation=tuple(layers or ()) + (("audit-hook",) if audit_hook and layers else ()),
    )


def _fresh_uid() -> int:
    """A uid no one else uses, so RLIMIT_NPROC counts only this run; nobody (65534) as fallback."""
    lo, hi = 1 << 20, 1 << 30
    try:
        with open("/proc/self/uid_map") as f:
            ranges = [tuple(map(int, line.split())) for line in f]
    except OSError:
        ranges = []
    if any(inside <= lo and inside + count >= hi for inside, _, count in ranges):
        return lo + secrets.randbelow(hi - lo)
    return 65534


class _Capped:
    """Keeps the first and last ``limit / 2`` bytes of a stream (errors are at the end)."""

    def __init__(self, limit: int):
        self.limit, self.head, self.tail, self.total = limit, bytearray(), bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        need = self.limit // 2 - len(self.head)
        if need > 0:
            self.head += chunk[:need]
            chunk = chunk[need:]
        self.tail += chunk
        keep = self.limit - self.limit // 2
        if len(self.tail) > keep:
            del self.tail[: len(self.tail) - keep]

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def text(self) -> str:
        if not self.truncated:
            return (self.head + self.tail).decode(errors="replace")
        cut = f"\n[... {self.total - self.limit} bytes cut ...]\n"
        return self.head.decode(errors="replace") + cut + self.tail.decode(errors="replace")


def _communicate(proc: subprocess.Popen, data: bytes, deadline: float, limit: int) -> tuple[_Capped, _Capped, bool]:
    """Feed stdin and read both pipes until EOF or the deadline. Returns (out, err, timed_out)."""
    streams = {proc.stdout.fileno(): _Capped(limit), proc.stderr.fileno(): _Capped(limit)}
    sel = selectors.DefaultSelector()
    for fd in streams:
        sel.register(fd, selectors.EVENT_READ)
    stdin_fd, sent = proc.stdin.fileno(), 0
    if data:
        os.set_blocking(stdin_fd, False)
        sel.register(stdin_fd, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    exited_at = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                return *streams.values(), True
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > _EXIT_GRACE_S:
                break  # something the program left behind holds the pipes open
            for key, _ in sel.select(timeout=min(deadline - now, 0.1)):
                if key.fd == stdin_fd:
                    try:
                        sent += os.write(stdin_fd, data[sent : sent + 65536])
                    except BrokenPipeError:
                        sent = len(data)
                    if sent >= len(data):
                        sel.unregister(stdin_fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fd, 65536)
                if chunk:
                    streams[key.fd].add(chunk)
                else:
                    sel.unregister(key.fd)
        return *streams.values(), False
    finally:
        sel.close()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # start_new_session: the group id is the child's pid
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _kill_leftovers(run_id: str) -> None:
    """SIGKILL every process whose environment carries this run's id (left its process group)."""
    needle = f"{_RUN_ID_VAR}={run_id}".encode()
    # Repeat until none is left: a process may fork while we sweep, and a killed one stays
    # listed (and readable) until the kernel has torn it down, which takes a while for many.
    deadline = time.monotonic() + _SWEEP_S
    while True:
        found = False
        for pid in filter(str.isdigit, os.listdir("/proc") if os.path.isdir("/proc") else ()):
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        os.kill(int(pid), signal.SIGKILL)
                        found = True
            except OSError:
                continue
        if not found or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def _killed_reason(returncode: int, timed_out: bool, stderr: str) -> str | None:
    if timed_out:
        return "timeout"
    if returncode < 0:
        sig = signal.Signals(-returncode)
        names = {signal.SIGXCPU: "cpu_limit", signal.SIGXFSZ: "file_size_limit"}
        return names.get(sig, f"signal {sig.name}")
    if returncode != 0 and re.search(r"^MemoryError\b", stderr[-4096:], re.M):
        return "memory_limit"
    return None
