"""Running the orchestrator with stand-in agents, and reading what happened."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle

from db.models import Handoff, RecordLock
from orchestrator.settings import HandoffSettings, Settings
from pipeline.handoffs import HandoffState, handoff_workflow_id
from tests.helpers.agents import FakeAgent
from worker import build_worker
from workflows.cycle import CycleWorkflow
from workflows.handoff import HandoffWorkflow
from workflows.types import CycleInput, CycleSummary

AGENTS = ("hygiene", "researcher", "outreach")
HISTORIES = Path(__file__).parents[1] / "histories"


@asynccontextmanager
async def running(
    client: Client, sessionmaker, settings: Settings, agents: dict[str, FakeAgent]
) -> AsyncIterator[None]:
    """The orchestrator's worker and each agent's worker, until the block ends."""
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(build_worker(client, sessionmaker, settings))
        for agent in agents.values():
            await stack.enter_async_context(agent.worker(client))
        yield


async def sweep(client: Client, settings: Settings, record_as: str | None = None) -> CycleSummary:
    workflow_id = f"sweep-{uuid.uuid4().hex[:10]}"
    summary = await client.execute_workflow(
        CycleWorkflow.run,
        CycleInput(mode="handoffs"),
        id=workflow_id,
        task_queue=settings.temporal.task_queue,
    )
    if record_as:
        await record_history(client, workflow_id, record_as, settings)
    return summary


async def wait_closed(client: Client, prospect_id: int, within: float = 60.0) -> WorkflowHandle:
    """Wait for a prospect's handoff to close; fail after ``within`` seconds, never hang."""
    handle = client.get_workflow_handle(handoff_workflow_id(prospect_id))
    await asyncio.wait_for(handle.result(), within)
    return handle


async def wait_until(check: Callable[[], object], within: float = 20.0) -> None:
    """Poll ``check`` (sync or async) until it is truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {within} s")
        await asyncio.sleep(0.1)


async def live_state(client: Client, prospect_id: int) -> HandoffState | None:
    handle = client.get_workflow_handle(handoff_workflow_id(prospect_id))
    return await handle.query(HandoffWorkflow.state)


async def ledger(sessionmaker, prospect_id: int) -> list[Handoff]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Handoff).where(Handoff.prospect_id == prospect_id).order_by(Handoff.created_at)
        )
        return list(rows)


async def locks(sessionmaker) -> list[RecordLock]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(RecordLock)))


async def listed_by_status(client: Client, status: str, prospect_id: int) -> bool:
    """Whether the Web UI's query language finds the handoff by its status attribute."""
    query = f"HandoffStatus = '{status}' AND ProspectId = '{prospect_id}'"
    return any([w async for w in client.list_workflows(query)])


async def record_history(client: Client, workflow_id: str, name: str, settings: Settings) -> None:
    """With ORCH_RECORD_HISTORIES=1, keep this workflow's history for the replay tests
    (recorded once, from the SQLite run)."""
    if os.environ.get("ORCH_RECORD_HISTORIES") != "1" or "sqlite" not in settings.database_url:
        return
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())


def with_handoffs(settings: Settings, **policy: object) -> Settings:
    """``settings`` with these handoff policy values."""
    return settings.model_copy(update={"handoffs": HandoffSettings(**policy)})


async def run_cycle(client: Client, settings: Settings, mode: str = "monitor") -> CycleSummary:
    """Run one cycle of ``mode`` on this test's task queue and wait for its summary."""
    return await client.execute_workflow(
        CycleWorkflow.run,
        CycleInput(mode=mode),
        id=f"test-{mode}-{uuid.uuid4().hex[:10]}",
        task_queue=settings.temporal.task_queue,
    )
