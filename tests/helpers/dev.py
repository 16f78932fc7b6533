"""``orchestrator dev`` as a user runs it: one real process on free ports, for the tests
that drive the whole stack (the CLI's own tests and the dashboard's browser tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.api import free_port

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"


@dataclass
class DevStack:
    process: subprocess.Popen[bytes]
    state_dir: Path
    api: str
    ui: str
    temporal: str
    log: Path
    """Everything it printed."""


def start_dev(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> DevStack:
    """``orchestrator dev`` with these extra arguments and ``ORCH_*`` settings (none from
    this environment), in a session of its own, its output in ``tmp_path/dev.log``."""
    ports = {name: free_port() for name in ("temporal", "ui", "api")}
    state_dir = tmp_path / "state"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    command = [str(ORCHESTRATOR), "dev", "--state-dir", str(state_dir)]
    for name in ("temporal", "ui", "api"):
        command += [f"--{name}-port", str(ports[name])]
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, *args],
            env={**clean, **(env or {})},
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return DevStack(
        process,
        state_dir,
        api=f"http://127.0.0.1:{ports['api']}",
        ui=f"http://127.0.0.1:{ports['ui']}",
        temporal=f"127.0.0.1:{ports['temporal']}",
        log=log,
    )


def stop_dev(stack: DevStack) -> None:
    """Ctrl-C, as a user stops it; its whole session killed if it is not gone in 30 s."""
    process = stack.process
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
