"""``orchestrator dev`` ended every way a laptop ends it: the terminal closing (SIGHUP), a
service manager (SIGTERM), an impatient double Ctrl-C, a hard kill. Each time the next
``orchestrator dev`` on the same state directory and ports starts cleanly, finds the
workflows of the earlier run, and nothing of the earlier run is left (read from /proc)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from bench.dev_soak import LOCKED, DevStack, problems, processes_mentioning, soak, until_gone
from cli.devserver import DevServer

pytestmark = pytest.mark.skipif(not Path("/proc/self").exists(), reason="reads /proc")

SOAK_CYCLES = 3
"""bench/dev_soak.py runs twenty; the suite runs a few, for time."""
STOP_WITHIN = 10.0
"""The issue's own bound on a stop of ``orchestrator dev --simulate`` under load."""


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[DevStack]:
    stack = DevStack(tmp_path / "state")
    yield stack
    if stack.process is not None and stack.process.poll() is None:
        stack.process.kill()
        stack.process.wait()
    stack.kill_all()


async def workflow_ids(address: str) -> set[str]:
    client = await Client.connect(address)
    return {w.id async for w in client.list_workflows("WorkflowType = 'orchestrator-cycle'")}


async def first_cycle(address: str) -> set[str]:
    for _ in range(120):
        if ids := await workflow_ids(address):
            return ids
        await asyncio.sleep(0.5)
    raise TimeoutError("no cycle workflow within a minute of starting")


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGHUP,), (signal.SIGTERM,), (signal.SIGINT, signal.SIGINT), (signal.SIGKILL,)],
    ids=["sighup", "sigterm", "double-sigint", "sigkill"],
)
async def test_the_next_dev_starts_cleanly_however_the_last_one_ended(
    stack: DevStack, signals: tuple[signal.Signals, ...]
) -> None:
    stack.start()
    await stack.ready()
    earlier = await first_cycle(stack.temporal)
    await stack.stop(*signals)
    assert await until_gone(str(stack.state_dir)) == [], "a process outlived dev"
    if signals[0] is not signal.SIGKILL:
        assert stack.process is not None and stack.process.returncode in (0, 128 + signals[-1])

    stack.start()
    await stack.ready()
    assert earlier <= await workflow_ids(stack.temporal)
    assert await stack.stop(signal.SIGINT) < STOP_WITHIN
    assert stack.process is not None and stack.process.returncode == 0
    assert await until_gone(str(stack.state_dir)) == []
    log = stack.log.read_bytes()
    assert b"already in use" not in log and LOCKED not in log


async def test_a_dev_server_left_behind_is_stopped_with_one_line(stack: DevStack) -> None:
    """As a run on a platform without a parent-death signal leaves it: running, its pid in
    the state directory, nobody holding the directory's lock."""
    server = DevServer(stack.state_dir, port=stack.ports["temporal"], ui_port=stack.ports["ui"])
    stack.state_dir.mkdir(parents=True)
    orphan = subprocess.Popen(server.command(), start_new_session=True)
    server.pid_file.write_text(f"{orphan.pid}\n")

    stack.start()
    await stack.ready()
    assert orphan.wait(timeout=10) is not None
    await stack.stop(signal.SIGINT)
    lines = [line for line in stack.log.read_text().splitlines() if "left running" in line]
    assert len(lines) == 1 and f"pid {orphan.pid}" in lines[0], lines


async def test_a_pid_file_naming_another_process_kills_nothing(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        server = DevServer(tmp_path / "state")
        server.state_dir.mkdir(parents=True)
        server.pid_file.write_text(f"{bystander.pid}\n")
        server.lock.acquire()
        server.stop_left_behind()
        assert bystander.poll() is None
        assert not server.pid_file.exists()
    finally:
        server.lock.release()
        bystander.kill()
        bystander.wait()


async def test_a_second_dev_on_a_state_dir_in_use_refuses_and_harms_nothing(
    stack: DevStack,
) -> None:
    stack.start()
    await stack.ready()
    second = DevStack(stack.state_dir).start()  # other ports, same directory (and log)
    assert second.wait(timeout=60) == 1
    assert "another `orchestrator dev`" in " ".join(stack.log.read_text().split())
    assert len(processes_mentioning(str(stack.state_dir / "temporal.db"))) == 1
    assert await stack.stop(signal.SIGINT) < STOP_WITHIN


async def test_dev_simulate_stops_quickly_under_load_without_locking_sqlite(
    tmp_path: Path,
) -> None:
    results = await soak(tmp_path, SOAK_CYCLES, run_seconds=10)
    assert problems(results, tmp_path / "dev.log", STOP_WITHIN) == []
