"""Keeping a child server from outliving its parent, and finding one that did.

Plain POSIX and Linux calls, for :mod:`orchestrator.devserver`: a parent-death signal, a
process's command line, a lock the kernel drops when its holder dies however it dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1
"""``prctl``'s option for the signal a process gets when its parent dies (linux/prctl.h)."""


class DirectoryInUse(RuntimeError):
    pass


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child sent ``sig`` when its parent dies (Linux), or
    None where the platform has no such signal.

    The kernel sends it when the *thread* that forked the child ends, not the process:
    spawn from the thread that lives as long as the process (asyncio's subprocesses are
    forked by the event loop's own thread, the main one under ``asyncio.run``). ``prctl``
    is looked up here, before the fork, so the child runs as little Python as possible
    between fork and exec. A parent that died before the call is caught by comparing the
    parent's pid afterwards."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:
            os._exit(1)

    return set_parent_death_signal


def command_line(pid: int) -> list[str]:
    """The arguments ``pid`` runs with; empty when there is no such process (or a zombie).
    From /proc on Linux, else from ``ps``."""
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            return [a for a in proc.read_bytes().decode(errors="replace").split("\0") if a]
        except OSError:
            return []
    done = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True)
    return done.stdout.decode(errors="replace").split()


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def stop_process(pid: int, is_it: Callable[[int], bool], grace: float = 5.0) -> None:
    """SIGTERM to ``pid``'s process group, SIGKILL after ``grace``; done once ``is_it``
    says the pid is no longer that process. The caller checked it is, just before."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not is_it(pid):
                return
            time.sleep(0.05)


class DirectoryLock:
    """An exclusive ``flock`` on a file in a directory, held from :meth:`acquire` until
    :meth:`release` or the holder's death. It says whether a live process owns the
    directory: a pid file alone cannot, since pids are reused."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = self.path.open("a+")  # not inherited by children: Python opens with O_CLOEXEC
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            file.close()
            raise DirectoryInUse(
                f"{self.path.parent} is in use by another `orchestrator dev` (pid {holder}); "
                "stop that one, or give this one another --state-dir"
            ) from exc
        file.truncate(0)
        file.write(f"{os.getpid()}\n")
        file.flush()
        self._file = file

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file drops the lock
            self._file = None
