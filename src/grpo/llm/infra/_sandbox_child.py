"""The child side of :mod:`grpo.llm.infra.sandbox`. Standard library only; never imported by the trainer.

Run as ``python -I -S _sandbox_child.py setup CFG_FD REPORT_FD`` by the sandbox. Two stages:

``setup`` (our code, still privileged) isolates as much as this machine allows, each layer
optional, and records which ones held in the report file:
  namespaces      new network (no interfaces: nothing reachable, not even the host's localhost),
                  mount, PID, IPC and UTS namespaces: as root directly, otherwise through an
                  unprivileged user namespace where the kernel allows one
  read-only-fs    in the mount namespace every mount is remounted read-only; the scratch
                  directory becomes a private size-limited tmpfs, the only writable place
  unprivileged-uid  as root: switch to a fresh uid with no capabilities, so file permissions apply
                  and RLIMIT_NPROC counts only this run's processes
  rlimits         address space, CPU seconds, file size, open files, no core dumps, processes
  no-new-privs    setuid binaries gain nothing
then execs a fresh interpreter for

``run`` (``python -I -S -c <this file's source> run CFG_FD``): reads the program, installs a
Python audit hook (PEP 578) that refuses process creation, sockets, ctypes and file writes
outside the scratch directory, and runs the program as ``__main__``. The hook gives clear errors
and stops the obvious; PEP 578 says plainly that it is not a security boundary, so the OS
layers above are what contain code that gets past it.
"""

from __future__ import annotations

import json
import os
import re
import sys

# Linux constants (sched.h, mount.h, prctl.h); ctypes is only loaded by the setup stage.
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
# Per-mount flags that must be kept on a read-only remount (the kernel refuses to drop locked ones).
MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": 1024,
               "nodiratime": 2048, "relatime": 1 << 21}
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SIGKILL = 9


# ---------------------------------------------------------------------------------------------
# Stage 1: isolation (runs as the trainer's user, usually root)
# ---------------------------------------------------------------------------------------------
class _Libc:
    def __init__(self) -> None:
        import ctypes

        self._ctypes = ctypes
        self._libc = ctypes.CDLL(None, use_errno=True)

    def call(self, name: str, *args) -> None:
        if getattr(self._libc, name)(*args) != 0:
            err = self._ctypes.get_errno()
            raise OSError(err, f"{name}{args}: {os.strerror(err)}")

    def mount(self, src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None):
        enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
        self.call("mount", enc(src), enc(target), enc(fstype), self._ctypes.c_ulong(flags), enc(data))


def _unshare(libc: _Libc) -> str | None:
    """Enter fresh namespaces; returns "root" or "user" (through a user namespace) or None."""
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    try:
        libc.call("unshare", flags)
        return "root"
    except OSError:
        pass
    uid, gid = os.getuid(), os.getgid()
    try:
        libc.call("unshare", flags | CLONE_NEWUSER)
    except OSError:
        return None
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    return "user"


def _searchable_by_others(path: str) -> bool:
    """True if every directory above ``path`` lets an unrelated user through (o+x)."""
    parts = path.split(os.sep)
    for i in range(2, len(parts) + 1):
        if not os.stat(os.sep.join(parts[:i]) or os.sep).st_mode & 0o001:
            return False
    return True


def _expose(libc: _Libc, path: str) -> None:
    """Make ``path`` reachable for an unprivileged uid inside the mount namespace.

    The first closed directory above it (e.g. /root, 0700, where pyenv lives) is covered by an
    empty tmpfs that holds only a bind mount of ``path``: the interpreter keeps its paths (its
    rpath is absolute) and the rest of that directory is hidden from the sandbox.
    """
    parts = path.split(os.sep)
    for i in range(2, len(parts)):
        top = os.sep.join(parts[:i])
        if not os.stat(top).st_mode & 0o001:
            break
    else:
        return
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY)
    try:
        libc.mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        os.makedirs(path, mode=0o755, exist_ok=True)
        libc.mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
    finally:
        os.close(fd)


def _mount_points() -> list[tuple[str, int]]:
    """(mount point, flags to keep) for every mount, parents first."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # \040
            keep = sum(MOUNT_FLAGS.get(o, 0) for o in fields[5].split(","))
            out.append((point, keep))
    return out


def _lock_filesystem(libc: _Libc, cfg: dict, drop_uid: bool) -> list[str]:
    """Mount namespace: everything read-only, scratch a private tmpfs. Returns layers that held."""
    layers = []
    libc.mount(None, "/", None, MS_REC | MS_PRIVATE)  # never propagate back to the host
    if drop_uid:
        for path in sorted({cfg["prefix"], os.path.dirname(cfg["python"])}):
            if not _searchable_by_others(path):
                _expose(libc, path)
    failed = []
    for point, keep in _mount_points():
        try:
            libc.mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)
        except OSError as e:
            failed.append(f"{point}: {e.strerror}")
    if failed:
        raise OSError(f"could not make these mounts read-only: {failed}")
    layers.append("read-only-fs")
    try:  # a /proc of the new PID namespace: the sandbox sees only its own processes
        libc.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        layers.append("private-proc")
    except OSError:
        pass
    owner = f",uid={cfg['uid']},gid={cfg['uid']}" if drop_uid else ""
    libc.mount("tmpfs", cfg["scratch"], "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
               f"size={cfg['scratch_mb']}m,mode=0700{owner}")
    layers.append("tmpfs-scratch")
    return layers


def _set_rlimits(cfg: dict, nproc: int | None) -> list[str]:
    import resource

    mem = cfg["memory_mb"] * 2**20
    limits = {
        resource.RLIMIT_AS: mem,  # virtual memory: allocation fails with MemoryError
        resource.RLIMIT_CPU: cfg["cpu_s"],  # SIGXCPU at the limit (backs up the wall clock)
        resource.RLIMIT_FSIZE: cfg["scratch_mb"] * 2**20,
        resource.RLIMIT_NOFILE: 256,
        resource.RLIMIT_CORE: 0,
    }
    if nproc:  # counts every process of the uid, so only meaningful for a uid of our own
        limits[resource.RLIMIT_NPROC] = nproc
    for kind, value in limits.items():
        hard = value + 1 if kind == resource.RLIMIT_CPU else value  # SIGKILL one second later
        resource.setrlimit(kind, (value, hard))
    return ["rlimits"] + (["nproc-limit"] if nproc else [])


def _read_cfg(fd: int) -> dict:
    return json.loads(os.pread(fd, os.fstat(fd).st_size, 0))  # pread: the offset is shared


def _report(fd: int, **items) -> None:
    os.write(fd, (json.dumps(items) + "\n").encode())


def _become_program(libc: _Libc, cfg: dict, cfg_fd: int, report_fd: int, ns: str | None) -> None:
    """Lock down this process and exec the ``run`` stage. Never returns."""
    # Read while we still may: the new uid cannot where the package sits in a closed directory
    # (a 0700 home or mktemp -d folder), and the mounts below may hide it.
    with open(__file__) as f:
        source = f.read()
    layers = []
    drop_uid = os.geteuid() == 0 and ns != "user"
    if ns:
        layers += ["namespaces", "net-namespace", "pid-namespace"]
        try:
            layers += _lock_filesystem(libc, cfg, drop_uid)
        except OSError as e:
            _report(report_fd, warning=f"filesystem lock-down failed: {e}")
        os.chdir(cfg["scratch"])  # after the tmpfs mount: the old cwd is the directory below it
    # The new uid must reach the interpreter (in a mount namespace _expose made sure of it).
    if drop_uid and not _searchable_by_others(cfg["prefix"]):
        drop_uid = False
        _report(report_fd, warning="interpreter not reachable by another uid; running as root")
    if drop_uid and "tmpfs-scratch" not in layers:
        os.chown(cfg["scratch"], cfg["uid"], cfg["uid"])
    # In a user namespace the count includes the two supervising processes of setup().
    nproc = cfg["max_processes"] if drop_uid else cfg["max_processes"] + 2 if ns == "user" else None
    layers += _set_rlimits(cfg, nproc)
    os.umask(0o077)
    if drop_uid:
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])  # drops every capability: permissions and RLIMIT_NPROC apply
        layers.append("unprivileged-uid")
    try:
        libc.call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        layers.append("no-new-privs")
    except OSError:
        pass
    libc.call("prctl", PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)  # after setuid, which clears it
    argv = [cfg["python"], "-I", "-S", "-X", "utf8", "-c", source, "run", str(cfg_fd)]
    os.set_inheritable(report_fd, False)  # a successful exec closes it; a failed one can report
    _report(report_fd, layers=layers)
    try:
        os.execv(cfg["python"], argv)
    except OSError as e:
        _report(report_fd, error=f"cannot start {cfg['python']}: {e}")
        raise


def _wait_status(pid: int) -> dict:
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"code": os.WEXITSTATUS(status)}


def setup(cfg_fd: int, report_fd: int) -> None:
    cfg = _read_cfg(cfg_fd)
    cfg["prefix"] = os.path.realpath(sys.base_prefix)  # this interpreter is the one we exec
    libc = _Libc()
    libc.call("prctl", PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)  # die with the trainer
    ns = _unshare(libc) if cfg["namespaces"] else None
    if ns is None:
        _become_program(libc, cfg, cfg_fd, report_fd, None)
    # A new PID namespace applies to children: this process stays outside and waits. Its child is
    # the namespace's init; when init dies, the kernel kills every process left in it.
    init = os.fork()
    if init == 0:
        _forked(lambda: _init(libc, cfg, cfg_fd, report_fd, ns))
    _wait_status(init)


def _init(libc: _Libc, cfg: dict, cfg_fd: int, report_fd: int, ns: str) -> None:
    libc.call("prctl", PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
    program = os.fork()  # init only reaps; the program gets ordinary signal semantics
    if program == 0:
        _forked(lambda: _become_program(libc, cfg, cfg_fd, report_fd, ns))
    _report(report_fd, status=_wait_status(program))


def _forked(body) -> None:
    """Run ``body`` in a forked child, which must never return into its parent's code."""
    try:
        body()
    except BaseException:  # noqa: BLE001  shown to the trainer as a SandboxError
        import traceback

        traceback.print_exc()
        os._exit(70)
    os._exit(0)


# ---------------------------------------------------------------------------------------------
# Stage 2: the program, behind an audit hook
# ---------------------------------------------------------------------------------------------
BLOCKED_PREFIXES = (
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.kill",
    "os.killpg", "signal.pthread_kill", "subprocess.", "pty.", "socket.", "ctypes.", "gc.get_",
    "resource.setrlimit", "resource.prlimit", "sys.remote_exec",
)
BLOCKED_IMPORTS = {"ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters"}
# Events that change the file system: (index of a path argument, index of its dir_fd or None).
WRITE_EVENTS = {
    "os.mkdir": ((0, 2),), "os.rmdir": ((0, 1),), "os.remove": ((0, 1),),
    "os.rename": ((0, 2), (1, 3)), "os.link": ((1, 3),), "os.symlink": ((1, 2),),
    "os.truncate": ((0, None),), "os.chmod": ((0, 2),), "os.chown": ((0, 3),),
    "os.utime": ((0, 3),), "os.chflags": ((0, None),), "os.lchflags": ((0, None),),
    "os.setxattr": ((0, None),), "os.removexattr": ((0, None),), "shutil.rmtree": ((0, None),),
    "shutil.copyfile": ((1, None),), "shutil.copymode": ((1, None),),
    "shutil.copystat": ((1, None),), "shutil.move": ((0, None), (1, None)),
    "shutil.unpack_archive": ((1, None),), "sqlite3.connect": ((0, None),),
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _make_hook(scratch: str):
    allowed_files = {"/dev/null"}
    realpath, join, fsdecode = os.path.realpath, os.path.join, os.fsdecode

    def inside(path, dir_fd) -> bool:
        if isinstance(path, int):  # an fd: resolve what it points at
            path, dir_fd = f"/proc/self/fd/{path}", None
        base = os.getcwd() if dir_fd is None or dir_fd < 0 else os.readlink(f"/proc/self/fd/{dir_fd}")
        full = realpath(join(base, fsdecode(path)))
        return full == scratch or full.startswith(scratch + os.sep) or full in allowed_files

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (flags or 0) & WRITE_FLAGS
            if writing and not isinstance(path, int) and not inside(path, None):
                raise PermissionError(f"sandbox: writing outside the scratch directory: {path!r}")
        elif event in WRITE_EVENTS:
            for i, j in WRITE_EVENTS[event]:
                dir_fd = args[j] if j is not None and j < len(args) else None
                if i < len(args) and args[i] not in (None, ":memory:") and not inside(args[i], dir_fd):
                    raise PermissionError(f"sandbox: {event} outside the scratch directory: {args[i]!r}")
        elif event == "import":
            if args[0].partition(".")[0] in BLOCKED_IMPORTS:
                raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
        elif event.startswith(BLOCKED_PREFIXES):
            raise PermissionError(f"sandbox: {event} is not allowed")

    return hook


def run(cfg_fd: int) -> None:
    import builtins
    import types

    cfg = _read_cfg(cfg_fd)
    os.close(cfg_fd)  # the only copy of the config the program could reach
    sys.stdout.reconfigure(line_buffering=True)  # what was printed survives a kill on timeout
    # -S skips site, which is what defines exit() and quit(); generated code uses them.
    builtins.exit = builtins.quit = sys.exit
    if cfg["audit_hook"]:
        import _posixsubprocess  # noqa: F401  replaced, so its fork_exec cannot bypass the hook

        stub = types.ModuleType("_posixsubprocess")

        def fork_exec(*_args, **_kwargs):
            raise PermissionError("sandbox: creating processes is not allowed")

        stub.fork_exec = fork_exec
        sys.modules["_posixsubprocess"] = stub
        sys.addaudithook(_make_hook(os.path.realpath(os.getcwd())))
    main = types.ModuleType("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    try:
        exec(compile(cfg["code"], "<sandbox>", "exec"), main.__dict__)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001  the program's error, reported like python would
        import traceback

        traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(int(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1] == "run":
        run(int(sys.argv[2]))
