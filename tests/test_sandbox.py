"""The sandbox for model-written code (issue 7): hostile programs are stopped, the trainer is not.

Each hostile program is run twice where it matters: with every layer (the audit hook answers
first), and with the audit hook off, to check that the OS layers alone still hold wherever this
machine provides them (skipped, with the reason, where it does not).
"""

from __future__ import annotations

import os
import re
import resource
import secrets
import socket
import textwrap
from pathlib import Path

import pytest

import grpo.llm.infra.sandbox as sandbox
from grpo.llm.infra.sandbox import run_untrusted

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def layers() -> tuple[str, ...]:
    return run_untrusted("pass").isolation


def _needs(layers: tuple[str, ...], *names: str) -> None:
    missing = [n for n in names if n not in layers]
    if missing:
        pytest.skip(f"this machine does not provide {missing} (has {list(layers)})")


def _tagged_processes(tag: str) -> list[int]:
    """Pids of live processes whose environment holds SANDBOX_TEST_TAG=tag."""
    needle = f"SANDBOX_TEST_TAG={tag}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_normal_program_reads_stdin_prints_and_passes(layers):
    code = "import sys\nname = sys.stdin.read().strip()\nprint(f'hello {name}')\nassert 2 + 2 == 4"
    r = run_untrusted(code, stdin="world\n")
    assert r.ok and r.returncode == 0 and not r.timed_out and r.killed_reason is None
    assert r.stdout == "hello world\n" and r.stderr == ""
    assert "rlimits" in r.isolation and "audit-hook" in r.isolation
    assert r.wall_s < 5


def test_failure_and_exit_status_are_reported():
    r = run_untrusted("print('before')\nraise ValueError('boom')")
    assert not r.ok and r.returncode == 1 and r.stdout == "before\n"
    assert "ValueError: boom" in r.stderr and r.killed_reason is None
    assert run_untrusted("exit(3)").returncode == 3  # exit() works although -S skips site


def test_infinite_loop_times_out_and_is_killed_quickly():
    r = run_untrusted("print('started')\nwhile True:\n    pass", timeout_s=1.0)
    assert r.timed_out and not r.ok and r.killed_reason == "timeout"
    assert r.stdout == "started\n"  # output before the kill survives
    assert 1.0 <= r.wall_s < 2.0


def test_unbounded_allocation_fails_and_trainer_is_unaffected():
    code = textwrap.dedent("""
        chunks = []
        try:
            while True:
                chunks.append(bytearray(16 * 2**20))
        except MemoryError:
            print(len(chunks))
            raise
    """)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    r = run_untrusted(code, memory_mb=256, timeout_s=10)
    assert not r.ok and r.killed_reason == "memory_limit" and not r.timed_out
    assert int(r.stdout) * 16 < 256  # it never held more than its limit
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024
    assert run_untrusted("print(1)").ok  # and the next run is fine


def test_fork_bomb_is_refused():
    tag = secrets.token_hex(4)
    r = run_untrusted("import os\nwhile True:\n    os.fork()", env={"SANDBOX_TEST_TAG": tag})
    assert not r.ok and "PermissionError: sandbox: os.fork is not allowed" in r.stderr
    assert _tagged_processes(tag) == []
    r = run_untrusted("import subprocess\nsubprocess.run(['sh', '-c', 'echo escaped'])")
    assert not r.ok and "escaped" not in r.stdout and "PermissionError" in r.stderr


def test_fork_bomb_is_contained_by_os_layers_alone(layers):
    """Without the audit hook the bomb runs: RLIMIT_NPROC caps it, and nothing outlives the run."""
    _needs(layers, "nproc-limit")
    tag = secrets.token_hex(4)
    count = textwrap.dedent("""
        import os, time
        n = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                n += 1
        except OSError as e:
            print(n, e.errno)
    """)
    r = run_untrusted(count, max_processes=8, audit_hook=False, env={"SANDBOX_TEST_TAG": tag})
    forked, errno = map(int, r.stdout.split())
    assert forked < 8 and errno == 11  # EAGAIN from RLIMIT_NPROC
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    r = run_untrusted(bomb, timeout_s=1.0, audit_hook=False, env={"SANDBOX_TEST_TAG": tag})
    assert r.timed_out and r.wall_s < 2.5
    assert _tagged_processes(tag) == []  # children that slept 60 s are gone too


@pytest.fixture
def listener():
    """A TCP server in the trainer process that the sandbox must not reach."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.setblocking(False)
    yield srv.getsockname()[1]
    with pytest.raises(BlockingIOError):
        srv.accept()  # no connection ever arrived
    srv.close()


CONNECT = "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"


def test_socket_is_refused(listener):
    r = run_untrusted(CONNECT.format(port=listener))
    assert not r.ok and "connected" not in r.stdout
    assert "PermissionError: sandbox: socket." in r.stderr


def test_network_is_unreachable_without_the_hook(layers, listener):
    _needs(layers, "net-namespace")
    r = run_untrusted(CONNECT.format(port=listener), audit_hook=False)
    assert not r.ok and "connected" not in r.stdout
    assert "Network is unreachable" in r.stderr or "Connection refused" in r.stderr


def _outside_targets(tmp_path: Path) -> list[Path]:
    name = f"sandbox-escape-{secrets.token_hex(4)}"
    return [Path("/tmp") / name, tmp_path / name, REPO / name]


WRITERS = {
    "open": "open({p!r}, 'w').write('x')",
    "os.open": "import os\nos.open({p!r}, os.O_CREAT | os.O_WRONLY)",
    "pathlib": "import pathlib\npathlib.Path({p!r}).write_text('x')",
    "rename": "open('a', 'w').close()\nimport os\nos.rename('a', {p!r})",
    "mkdir": "import os\nos.mkdir({p!r})",
}


@pytest.mark.parametrize("how", WRITERS)
def test_writes_outside_scratch_are_blocked(tmp_path, how):
    for target in _outside_targets(tmp_path):
        r = run_untrusted(WRITERS[how].format(p=str(target)))
        assert not r.ok and "PermissionError: sandbox:" in r.stderr, r.stderr
        assert not target.exists()


def test_writes_outside_scratch_fail_without_the_hook(layers, tmp_path):
    _needs(layers, "read-only-fs")
    for target in _outside_targets(tmp_path):
        for code in WRITERS.values():
            r = run_untrusted(code.format(p=str(target)), audit_hook=False)
            # EROFS; EXDEV for a rename out of the scratch tmpfs; EACCES where only the uid holds
            assert not r.ok and re.search(r"Error: \[Errno (30|18|13)\]", r.stderr), r.stderr
            assert not target.exists()


def test_scratch_dir_is_writable_private_and_deleted():
    code = textwrap.dedent("""
        import os, tempfile
        open('data.txt', 'w').write('kept')
        os.mkdir('sub')
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, 'f'), 'w').write('x')
        print(os.getcwd())
        print(open('data.txt').read())
    """)
    r = run_untrusted(code)
    assert r.ok, r.stderr
    cwd, content = r.stdout.split()
    assert content == "kept" and Path(cwd).name.startswith("grpo-sandbox-")
    assert not Path(cwd).exists()


def test_output_is_capped_keeping_head_and_tail():
    r = run_untrusted("print('first')\nprint('x' * 2_000_000)\nprint('last')", max_output_bytes=1000)
    assert r.ok and r.output_truncated
    assert r.stdout.startswith("first") and r.stdout.endswith("last\n") and len(r.stdout) < 1100


def test_a_broken_sandbox_raises_instead_of_scoring_zero(monkeypatch, tmp_path):
    """If isolation never started, rewards must not silently read 'the program failed'."""
    broken = tmp_path / "child.py"
    broken.write_text("raise SystemExit(1)\n")
    monkeypatch.setattr(sandbox, "_CHILD", str(broken))
    with pytest.raises(sandbox.SandboxError, match="setup failed"):
        run_untrusted("print(1)")


def test_runs_when_the_package_sits_in_a_closed_directory(monkeypatch, tmp_path, layers):
    """A 0700 home or ``mktemp -d`` clone: the program's uid cannot read the package, yet it runs."""
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    child = closed / "_sandbox_child.py"
    child.write_text(Path(sandbox._CHILD).read_text())
    monkeypatch.setattr(sandbox, "_CHILD", str(child))
    r = run_untrusted("print(sum(range(5)))")
    assert r.ok and r.stdout == "10\n", r
    assert r.isolation == layers  # the same layers as from the installed package
