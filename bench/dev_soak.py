"""Start/stop cycles of ``orchestrator dev --simulate`` under load, as a user runs it.

Each cycle starts the stack on the same state directory and ports, waits for the API, starts
a validate cycle, reads the API from several clients at once while the simulated pipeline
moves, then sends SIGINT and times the stop. A cycle fails when the stop takes longer than
``--stop-within`` seconds, the process does not exit 0, any process of the stack is left
behind (read from /proc), or "database is locked" appears in its log.

    python -m bench.dev_soak                  # twenty cycles at --speed 20 (about 8 minutes)
    python -m bench.dev_soak --cycles 3 --run-seconds 10

tests/integration/test_dev_signals.py runs a few cycles of the same through :func:`soak`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.helpers.api import free_port

ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"
LOCKED = b"database is locked"
READ_PATHS = (
    "/api/v1/orchestrator/health",
    "/api/v1/orchestrator/pipeline",
    "/api/v1/handoffs?limit=50",
    "/api/v1/alerts",
    "/api/v1/events?follow=false",
    "/api/v1/agents",
)


def processes_mentioning(text: str) -> list[int]:
    """Live processes (zombies aside) whose command line contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            args = (proc / "cmdline").read_bytes()
            zombie = "\nState:\tZ" in (proc / "status").read_text()
        except OSError:
            continue
        if text.encode() in args and not zombie:
            found.append(int(proc.name))
    return found


async def until_gone(text: str, within: float = 15.0) -> list[int]:
    """Wait for every process mentioning ``text`` to end; those still there after
    ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not processes_mentioning(text):
            return []
        await asyncio.sleep(0.2)
    return processes_mentioning(text)


@dataclass
class DevStack:
    """``orchestrator dev`` on a state directory and ports of its own, logging to a file."""

    state_dir: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """Settings for the stack (``ORCH_...``); none of the caller's own reach it."""
    ports: dict[str, int] = field(
        default_factory=lambda: {name: free_port() for name in ("temporal", "ui", "api")}
    )
    process: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def temporal(self) -> str:
        return f"127.0.0.1:{self.ports['temporal']}"

    @property
    def log(self) -> Path:
        return self.state_dir.parent / "dev.log"

    @property
    def key(self) -> str:
        return (self.state_dir / "dev-api-key").read_text().strip()

    def start(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")} | self.env
        ports = [(f"--{name}-port", str(port)) for name, port in self.ports.items()]
        command = [
            str(ORCHESTRATOR),
            "dev",
            "--state-dir",
            str(self.state_dir),
            *(arg for pair in ports for arg in pair),
            *self.args,
        ]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=env, cwd=self.state_dir.parent, stdout=log, stderr=subprocess.STDOUT
            )
        return self.process

    async def ready(self, within: float = 90.0) -> None:
        """Until ``/readyz`` answers 200 (the key file exists by then)."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=5) as http:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"dev exited with {self.process.returncode}; see {self.log}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{self.api}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.3)
        raise TimeoutError(f"{self.api}/readyz did not answer 200 within {within} s")

    async def stop(self, *signals: signal.Signals, within: float = 30.0) -> float:
        """Send ``signals`` (a quarter second apart) and wait for the exit; seconds taken."""
        assert self.process is not None
        began = time.monotonic()
        for n, sig in enumerate(signals):
            if n:
                await asyncio.sleep(0.25)
            self.process.send_signal(sig)
        while self.process.poll() is None:
            if time.monotonic() - began > within:
                self.process.send_signal(signal.SIGABRT)  # a traceback, with PYTHONFAULTHANDLER
                await asyncio.sleep(1)
                self.process.kill()
                raise TimeoutError(f"dev did not stop within {within} s after {signals}")
            await asyncio.sleep(0.05)
        return time.monotonic() - began

    def kill_all(self) -> None:
        """Last resort for a failed test: kill whatever of the stack is still there."""
        for pid in processes_mentioning(str(self.state_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def read_until(stack: DevStack, stop: asyncio.Event, errors: list[str]) -> int:
    """Read the API in a loop until ``stop``; how many reads. 5xx answers go in ``errors``
    (refused connections do not: the stack is going away at the end)."""
    reads = 0
    async with httpx.AsyncClient(timeout=10, headers={"X-API-Key": stack.key}) as http:
        while not stop.is_set():
            path = READ_PATHS[reads % len(READ_PATHS)]
            with contextlib.suppress(httpx.TransportError):
                response = await http.get(f"{stack.api}{path}")
                if response.status_code >= 500:
                    errors.append(f"{path}: {response.status_code} {response.text[:200]}")
            reads += 1
    return reads


async def start_validate(stack: DevStack) -> None:
    async with httpx.AsyncClient(timeout=10, headers={"X-API-Key": stack.key}) as http:
        response = await http.post(f"{stack.api}/api/v1/orchestrator/run?mode=validate")
        response.raise_for_status()


@dataclass
class Cycle:
    stop_seconds: float
    returncode: int
    reads: int
    left_behind: list[int]
    errors: list[str]


async def one_cycle(stack: DevStack, run_seconds: float, readers: int) -> Cycle:
    """Start, load for ``run_seconds``, SIGINT; what the stop looked like."""
    stack.start()
    await stack.ready()
    await start_validate(stack)
    errors: list[str] = []
    done = asyncio.Event()
    reading = [asyncio.create_task(read_until(stack, done, errors)) for _ in range(readers)]
    await asyncio.sleep(run_seconds)
    took = await stack.stop(signal.SIGINT)
    done.set()
    reads = sum(await asyncio.gather(*reading))
    left = await until_gone(str(stack.state_dir), within=5)
    assert stack.process is not None
    return Cycle(took, stack.process.returncode, reads, left, errors)


async def soak(
    workdir: Path, cycles: int, *, speed: float = 20, run_seconds: float = 15, readers: int = 4
) -> list[Cycle]:
    """``cycles`` start/stop cycles of ``dev --simulate --speed`` on one state directory."""
    stack = DevStack(workdir / "state", args=["--simulate", "--speed", f"{speed:g}"])
    results = []
    try:
        for n in range(1, cycles + 1):
            result = await one_cycle(stack, run_seconds, readers)
            results.append(result)
            print(
                f"cycle {n}: stopped in {result.stop_seconds:.2f} s, exit {result.returncode}, "
                f"{result.reads} reads, {len(result.errors)} 5xx, left {result.left_behind}",
                flush=True,
            )
    finally:
        stack.kill_all()
    return results


def problems(results: list[Cycle], log: Path, stop_within: float) -> list[str]:
    """What went wrong over a soak, in words; empty when nothing did."""
    found = [
        f"cycle {n}: {what}"
        for n, r in enumerate(results, start=1)
        for what in (
            *([f"stop took {r.stop_seconds:.1f} s"] if r.stop_seconds > stop_within else []),
            *([f"exit status {r.returncode}"] if r.returncode != 0 else []),
            *([f"left behind {r.left_behind}"] if r.left_behind else []),
            *r.errors,
        )
    ]
    if LOCKED in log.read_bytes():
        found.append(f'"database is locked" in {log}')
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--speed", type=float, default=20)
    parser.add_argument("--run-seconds", type=float, default=15)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--stop-within", type=float, default=10)
    parser.add_argument("--workdir", type=Path, default=Path("bench/results/dev_soak"))
    args = parser.parse_args()
    # absolute: the stack runs with the work directory as its current directory
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    options = {"speed": args.speed, "run_seconds": args.run_seconds, "readers": args.readers}
    results = asyncio.run(soak(args.workdir, args.cycles, **options))
    slowest = max(r.stop_seconds for r in results)
    print(f"{len(results)} cycles; slowest stop {slowest:.2f} s; log {args.workdir / 'dev.log'}")
    if found := problems(results, args.workdir / "dev.log", args.stop_within):
        print("\n".join(found))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
