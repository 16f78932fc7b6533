"""The ``http`` transport against real local HTTP servers: a researcher agent reached by a
signed POST that answers at once, or accepts with 202 and calls the API back later."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from temporalio.client import Client

from activities.agent_http import CALLBACK_HEADER
from api.app import create_app
from db.queries.presence import endpoint_answers
from orchestrator.settings import AgentEndpoint, Settings
from orchestrator.signing import SIGNATURE_HEADER, sign, verify
from pipeline.contract import AgentResult, AgentTask, ResultStatus
from tests.helpers.agents import FakeAgent, prospect_status
from tests.helpers.api import free_port, served
from tests.helpers.factories import add, prospect
from tests.helpers.handoffs import ledger, record_history, running, sweep, wait_closed

SECRET = "s3cret-for-tests"


@dataclass
class HttpResearcher:
    """A researcher agent behind HTTP. ``mode`` says how it answers."""

    agent: FakeAgent
    mode: Literal["sync", "async", "refuse"] = "sync"
    received: list[tuple[AgentTask, bool, str | None]] = field(default_factory=list)
    callback_statuses: list[int] = field(default_factory=list)
    background: set[asyncio.Task[None]] = field(default_factory=set)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/tasks")
        async def take(request: Request) -> Response:
            body = await request.body()
            signed = verify(body, SECRET, request.headers.get(SIGNATURE_HEADER))
            task = AgentTask.model_validate_json(body)
            self.received.append((task, signed, request.headers.get("Idempotency-Key")))
            if self.mode == "refuse":
                return Response("unknown prospect", status_code=400)
            if self.mode == "sync":
                result = await self.agent._advance(task)
                return Response(result.model_dump_json(), media_type="application/json")
            job = asyncio.create_task(self._later(task, request.headers[CALLBACK_HEADER]))
            self.background.add(job)
            return Response(status_code=202)

        return app

    async def _later(self, task: AgentTask, callback: str) -> None:
        await asyncio.sleep(0.3)
        result = await self.agent._advance(task)
        body = result.model_dump_json().encode()
        async with httpx.AsyncClient() as http:
            forged = await http.post(
                callback, content=body, headers={SIGNATURE_HEADER: sign(body, "wrong")}
            )
            good = await http.post(
                callback, content=body, headers={SIGNATURE_HEADER: sign(body, SECRET)}
            )
        self.callback_statuses += [forged.status_code, good.status_code]


@dataclass
class Stack:
    settings: Settings
    researcher: HttpResearcher
    api: str


@pytest.fixture
async def stack(
    client: Client, sessionmaker, worker_settings: Settings, agents: dict[str, FakeAgent]
) -> AsyncIterator[Stack]:
    researcher = HttpResearcher(agents.pop("researcher"))
    agent_port, api_port = free_port(), free_port()
    settings = worker_settings.model_copy(
        update={
            "agent_endpoints": {
                "researcher": AgentEndpoint(
                    transport="http", secret=SECRET, url=f"http://127.0.0.1:{agent_port}/tasks"
                )
            },
            "api_public_url": f"http://127.0.0.1:{api_port}",
        }
    )
    async with (
        served(researcher.app(), agent_port),
        served(create_app(settings, temporal_client=client), api_port) as api,
        running(client, sessionmaker, settings, agents),
    ):
        yield Stack(settings, researcher, api)


async def test_http_agent_answering_at_once_is_signed_and_chained(
    client: Client, sessionmaker, agent_sessionmaker, stack: Stack
) -> None:
    await add(agent_sessionmaker, *prospect("scored", tier="A1", pid=21))
    await sweep(client, stack.settings)
    await wait_closed(client, 21)
    [(task, signed, idempotency_key)] = stack.researcher.received
    assert signed and idempotency_key == task.handoff_id
    assert (task.prospect_id, task.from_state, task.agent) == (21, "scored", "researcher")
    rows = await ledger(sessionmaker, 21)
    assert [(r.to_agent, r.status) for r in rows] == [
        ("researcher", "completed"),
        ("outreach", "completed"),
    ]
    assert await prospect_status(sessionmaker, 21) == "in_sequence"
    async with sessionmaker() as session:  # its answer is its presence
        assert set(await endpoint_answers(session)) == {"researcher"}


async def test_http_agent_accepting_with_202_completes_through_the_signed_callback(
    client: Client, sessionmaker, agent_sessionmaker, stack: Stack
) -> None:
    stack.researcher.mode = "async"
    await add(agent_sessionmaker, *prospect("needs_research", tier="B", pid=22))
    await sweep(client, stack.settings)
    await wait_closed(client, 22)
    await record_history(client, "handoff-22", "handoff_http_callback", stack.settings)
    assert stack.researcher.callback_statuses == [401, 202]
    rows = await ledger(sessionmaker, 22)
    assert rows[0].status == "completed"
    assert AgentResult.model_validate(rows[0].result).status is ResultStatus.COMPLETED
    assert await prospect_status(sessionmaker, 22) == "in_sequence"


async def test_http_agent_refusing_the_task_fails_the_handoff_without_retries(
    client: Client, sessionmaker, agent_sessionmaker, stack: Stack
) -> None:
    stack.researcher.mode = "refuse"
    await add(agent_sessionmaker, *prospect("needs_research", pid=23))
    await sweep(client, stack.settings)
    await wait_closed(client, 23)
    assert len(stack.researcher.received) == 1
    [row] = await ledger(sessionmaker, 23)
    assert row.status == "failed"
    assert "HTTP 400" in (row.detail or "") and "unknown prospect" in (row.detail or "")
