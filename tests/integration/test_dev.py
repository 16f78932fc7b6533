"""``orchestrator dev`` end to end, as a user runs it: one command, real processes, Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from db.engine import create_engine, create_sessionmaker
from tests.helpers.dev import ORCHESTRATOR, DevStack, start_dev, stop_dev
from tests.helpers.factories import add, run


async def wait_for(url: str, within: float = 60.0, key: str | None = None) -> httpx.Response:
    deadline = asyncio.get_running_loop().time() + within
    headers = {"X-API-Key": key} if key else {}
    async with httpx.AsyncClient(timeout=5, headers=headers) as http:
        while True:
            try:
                response = await http.get(url)
                if response.status_code == 200:
                    return response
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{url} did not answer 200 within {within} s")
            await asyncio.sleep(0.5)


@pytest.fixture
async def dev_stack(tmp_path: Path) -> AsyncIterator[DevStack]:
    stack = start_dev(tmp_path)
    yield stack
    stop_dev(stack)


async def cycles_completed(address: str) -> int:
    client = await Client.connect(address)
    query = "WorkflowType = 'orchestrator-cycle' AND ExecutionStatus = 'Completed'"
    return len([w async for w in client.list_workflows(query)])


async def test_dev_runs_the_whole_stack_and_stops_cleanly(dev_stack: DevStack) -> None:
    health_url = f"{dev_stack.api}/api/v1/orchestrator/health"
    await wait_for(f"{dev_stack.api}/healthz")
    key = (dev_stack.state_dir / "dev-api-key").read_text().strip()
    assert (await wait_for(f"{dev_stack.api}/readyz")).json()["ready"] is True
    async with httpx.AsyncClient() as http:
        assert (await http.get(health_url)).status_code == 401
    body = (await wait_for(health_url, key=key)).json()
    assert [a["status"] for a in body["agents"]] == ["unknown"] * 4
    assert (await wait_for(dev_stack.ui)).status_code == 200

    # the first monitor cycle shows up within a minute of starting
    for _ in range(120):
        if await cycles_completed(dev_stack.temporal):
            break
        await asyncio.sleep(0.5)
    assert await cycles_completed(dev_stack.temporal) >= 1

    # agents report runs into the embedded SQLite database; health follows
    engine = create_engine(f"sqlite+aiosqlite:///{dev_stack.state_dir / 'orchestrator.db'}")
    now = datetime.now(UTC)
    await add(
        create_sessionmaker(engine),
        *[run("hygiene", ago=timedelta(hours=1 + i), now=now) for i in range(3)],
        *[run("researcher", "failed", ago=timedelta(hours=1 + i), now=now) for i in range(3)],
    )
    await engine.dispose()
    response = await wait_for(health_url, key=key)
    statuses = {a["agent_name"]: a["status"] for a in response.json()["agents"]}
    assert statuses == {
        "prospector": "unknown",
        "hygiene": "healthy",
        "researcher": "failing",
        "outreach": "unknown",
    }

    dev_stack.process.send_signal(signal.SIGINT)
    dev_stack.process.wait(timeout=30)
    output = dev_stack.log.read_bytes()
    assert dev_stack.process.returncode == 0, output.decode(errors="replace")
    assert b"Temporal Web UI" in output
    assert key.encode() in output  # printed once, when it was made
    leftover = subprocess.run(["pgrep", "-f", str(dev_stack.state_dir)], capture_output=True)
    assert leftover.stdout == b"", "a process of the dev stack outlived Ctrl-C"


async def printed(log: Path, pattern: str, within: float = 60.0) -> re.Match[str]:
    """The first match of ``pattern`` in the dev stack's output, once it is there."""
    deadline = asyncio.get_running_loop().time() + within
    while not (found := re.search(pattern, await asyncio.to_thread(log.read_text))):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{pattern!r} not printed within {within} s")
        await asyncio.sleep(0.5)
    return found


def cli_health(stack: DevStack, **env: str) -> dict[str, str]:
    """``orchestrator health --json`` from another terminal in the stack's directory."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    clean["ORCH_STATE_DIR"] = str(stack.state_dir)
    done = subprocess.run(
        [str(ORCHESTRATOR), "health", "--json"],
        env={**clean, **env},
        capture_output=True,
        timeout=60,
        check=True,
    )
    return {a["agent_name"]: a["status"] for a in json.loads(done.stdout)["agents"]}


async def test_a_command_in_another_terminal_judges_simulated_agents_as_the_stack_does(
    tmp_path: Path,
) -> None:
    """The simulated agents process one prospect a run, which this stack expects and a
    command started elsewhere does not, unless told with the line ``dev`` prints."""
    stack = start_dev(tmp_path, "--simulate", "--speed", "10")
    try:
        found = await printed(stack.log, r"export ORCH_AGENTS='([^']+)'")
        expected = found.group(1)
        simulated = {"prospector": 5, "hygiene": 1, "researcher": 1, "outreach": 1}
        assert json.loads(expected) == simulated
        key = (stack.state_dir / "dev-api-key").read_text().strip()
        health_url = f"{stack.api}/api/v1/orchestrator/health"
        for _ in range(120):  # until hygiene has run and both read the same runs
            agents = (await wait_for(health_url, key=key)).json()["agents"]
            api = {a["agent_name"]: a["status"] for a in agents}
            told = cli_health(stack, ORCH_AGENTS=expected)
            if api["hygiene"] == "healthy" and told == api:
                break
            await asyncio.sleep(0.5)
        assert api["hygiene"] == "healthy"
        assert told == api
        assert cli_health(stack)["hygiene"] == "failing"  # 1 record a run against 20
    finally:
        stop_dev(stack)
