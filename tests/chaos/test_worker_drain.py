"""A worker drained with SIGTERM while its activities are in flight: it stops polling, lets
them finish within its graceful shutdown, and exits; the other two workers take over.

The agent is reached over HTTP, so its call is an activity of the orchestrator's own worker
(``trigger_http_agent``); it holds every request until the test lets it go. Worker A starts
alone and so holds every call of the first batch; B and C start, A gets SIGTERM, the agent
answers. An activity cut short would be retried and call the agent a second time: every
handoff calls it exactly once, every handoff completes, and a second batch, started once A
has exited, is served by B and C.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from fastapi import FastAPI, Request, Response
from temporalio.client import Client

from db.models import Handoff
from pipeline.contract import AgentTask
from tests.helpers.agents import FakeAgent
from tests.helpers.api import free_port, served
from tests.helpers.devserver import own_server  # noqa: F401 (this module's ``client``)
from tests.helpers.factories import add, count, prospect
from tests.helpers.handoffs import wait_until
from tests.helpers.outage import open_work, start_sweep, start_worker, stop_worker, worker_env

BATCH = 20
GRACEFUL = "PT30S"


class HeldAgent:
    """Hygiene behind HTTP: counts calls per handoff, answers once ``gate`` is set."""

    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent
        self.gate = asyncio.Event()
        self.calls: Counter[str] = Counter()

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/tasks")
        async def take(request: Request) -> Response:
            task = AgentTask.model_validate_json(await request.body())
            self.calls[task.handoff_id] += 1
            await self.gate.wait()
            result = await self.agent._advance(task)
            return Response(result.model_dump_json(), media_type="application/json")

        return app


def log_says(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text(errors="replace")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_sigterm_lets_in_flight_activities_finish_and_others_take_over(
    client: Client, agent_sessionmaker, sessionmaker, worker_settings, tmp_path: Path
) -> None:
    held = HeldAgent(FakeAgent("hygiene", agent_sessionmaker, tier=lambda _pid: "C"))
    port = free_port()
    endpoints = {"hygiene": {"transport": "http", "url": f"http://127.0.0.1:{port}/tasks"}}
    task_queue = worker_settings.temporal.task_queue
    env = worker_env(
        worker_settings.database_url,
        worker_settings.temporal.address,
        task_queue,
        ORCH_AGENT_ENDPOINTS=json.dumps(endpoints),
        ORCH_WORKER__GRACEFUL_SHUTDOWN=GRACEFUL,
        ORCH_FEED__ENABLED="false",
        ORCH_LOG_LEVEL="INFO",
    )
    logs = [tmp_path / f"worker-{name}.log" for name in "abc"]
    await add(agent_sessionmaker, *[r for pid in range(1, BATCH + 1) for r in prospect(pid=pid)])
    workers: list[subprocess.Popen[bytes]] = []
    try:
        async with served(held.app(), port):
            workers.append(start_worker(env, logs[0]))
            await start_sweep(client, task_queue)
            await wait_until(lambda: len(held.calls) == BATCH, within=60)
            workers += [start_worker(env, log) for log in logs[1:]]

            os.killpg(workers[0].pid, signal.SIGTERM)
            await wait_until(lambda: log_says(logs[0], "worker stopping"), within=30)
            assert workers[0].poll() is None  # still finishing what it holds
            held.gate.set()
            drained = await asyncio.wait_for(asyncio.to_thread(workers[0].wait), 60)

            await add(
                agent_sessionmaker,
                *[r for pid in range(BATCH + 1, 2 * BATCH + 1) for r in prospect(pid=pid)],
            )
            await start_sweep(client, task_queue)
            await wait_until(lambda: _done(sessionmaker), within=90)
    finally:
        exits = [stop_worker(w) for w in workers]
    assert drained == 0
    assert exits[1:] == [None, None]  # the others kept running until stopped
    assert len(held.calls) == 2 * BATCH
    assert set(held.calls.values()) == {1}  # nothing cut short and retried
    assert log_says(logs[0], "worker stopped")
    assert await count(sessionmaker, Handoff, Handoff.status == "completed") == 2 * BATCH


async def _done(sessionmaker) -> bool:
    open_rows, waiting = await open_work(sessionmaker)
    return open_rows == 0 and waiting == 0
