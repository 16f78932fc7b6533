"""The agent SDK: run history recorded around every call, one run per handoff, on a real
Temporal server (through real handoffs) and directly, into the database or through the API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from agent_sdk import AgentRuntime, ApiRecorder, DatabaseRecorder, run_every
from api.app import create_app
from db.models import Activity, AgentRun, Prospect
from orchestrator.settings import Settings
from pipeline.contract import AgentResult, AgentTask, ResultStatus
from tests.helpers.api import OPERATOR_KEY, free_port, served, with_keys
from tests.helpers.factories import add, prospect
from tests.helpers.handoffs import ledger, sweep, wait_closed, wait_until
from worker import build_worker

Sessions = async_sessionmaker[AsyncSession]


def task(handoff_id: str = "1:identified:1", prospect_id: int = 1) -> AgentTask:
    return AgentTask(
        handoff_id=handoff_id, prospect_id=prospect_id, from_state="identified", agent="hygiene"
    )


async def runs(sessionmaker: Sessions, agent: str | None = None) -> list[AgentRun]:
    async with sessionmaker() as session:
        query = select(AgentRun).order_by(AgentRun.id)
        if agent is not None:
            query = query.where(AgentRun.agent_name == agent)
        return list(await session.scalars(query))


async def run_count(sessionmaker: Sessions) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(AgentRun)) or 0


@dataclass
class Hygiene:
    """A hygiene agent's ``process``: scores the prospect tier C (so no chain follows),
    after checking that its own run is recorded as running while it works."""

    sessionmaker: Sessions
    fail_first: int = 0
    fail_always: bool = False
    calls: list[AgentTask] = field(default_factory=list)
    seen_running: list[bool] = field(default_factory=list)

    async def __call__(self, t: AgentTask) -> AgentResult:
        self.calls.append(t)
        current = await runs(self.sessionmaker, "hygiene")
        self.seen_running.append(
            [(r.status, r.handoff_id) for r in current][-1:] == [("running", t.handoff_id)]
        )
        if self.fail_always or len(self.calls) <= self.fail_first:
            raise ValueError(f"no such company (prospect {t.prospect_id})")
        now = datetime.now(UTC)
        async with self.sessionmaker() as session:
            p = await session.get(Prospect, t.prospect_id)
            if p is not None:
                session.add(
                    Activity(
                        prospect_id=p.id,
                        type="status_change",
                        created_at=now,
                        details={"from": p.status, "to": "scored"},
                    )
                )
                p.status, p.tier, p.status_changed_at, p.updated_at = "scored", "C", now, now
                await session.commit()
        return AgentResult(status=ResultStatus.COMPLETED, records_processed=1, new_status="scored")


def fewer_attempts(settings: Settings, attempts: int) -> Settings:
    handoffs = settings.handoffs.model_copy(update={"agent_max_attempts": attempts})
    return settings.model_copy(update={"handoffs": handoffs})


@contextlib.asynccontextmanager
async def orchestrated(
    client: Client, sessionmaker: Sessions, settings: Settings, process: Hygiene
) -> AsyncIterator[None]:
    """The orchestrator's worker on ``sessionmaker``, and the SDK's worker for hygiene serving
    ``process``, recording runs on the agent's own sessions."""
    runtime = AgentRuntime("hygiene", DatabaseRecorder(process.sessionmaker))
    async with build_worker(client, sessionmaker, settings), runtime.worker(client, process):
        yield


# --- through real handoffs on Temporal ----------------------------------------------------


async def test_a_handoff_is_recorded_as_one_completed_run(
    client: Client, sessionmaker: Sessions, agent_sessionmaker: Sessions, worker_settings: Settings
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    process = Hygiene(agent_sessionmaker)
    before = datetime.now(UTC)
    async with orchestrated(client, sessionmaker, worker_settings, process):
        await sweep(client, worker_settings)
        await wait_closed(client, 1)
    [handoff] = await ledger(agent_sessionmaker, 1)
    assert (handoff.to_agent, handoff.status) == ("hygiene", "completed")
    assert process.seen_running == [True]
    [row] = await runs(agent_sessionmaker)
    assert (row.agent_name, row.status, row.records_processed) == ("hygiene", "completed", 1)
    assert row.handoff_id == handoff.id == process.calls[0].handoff_id
    assert row.error is None
    assert row.completed_at is not None
    assert before <= row.started_at <= row.completed_at <= datetime.now(UTC)


async def test_a_failing_process_is_recorded_failed_on_every_attempt(
    client: Client, sessionmaker: Sessions, agent_sessionmaker: Sessions, worker_settings: Settings
) -> None:
    settings = fewer_attempts(worker_settings, 2)
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    process = Hygiene(agent_sessionmaker, fail_always=True)
    async with orchestrated(client, sessionmaker, settings, process):
        await sweep(client, settings)
        await wait_closed(client, 1)
    [handoff] = await ledger(agent_sessionmaker, 1)
    assert handoff.status == "failed"
    assert "no such company (prospect 1)" in (handoff.detail or "")
    rows = await runs(agent_sessionmaker)
    assert [(r.status, r.handoff_id) for r in rows] == [("failed", handoff.id)] * 2
    assert {r.error for r in rows} == {"ValueError: no such company (prospect 1)"}
    assert all(r.records_processed is None for r in rows)
    assert all(r.completed_at is not None and r.completed_at >= r.started_at for r in rows)


async def test_a_retried_handoff_runs_again_after_a_failure_and_then_completes(
    client: Client, sessionmaker: Sessions, agent_sessionmaker: Sessions, worker_settings: Settings
) -> None:
    """A failed run is not "done": the handoff id only skips work that completed."""
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    process = Hygiene(agent_sessionmaker, fail_first=1)
    async with orchestrated(client, sessionmaker, worker_settings, process):
        await sweep(client, worker_settings)
        await wait_closed(client, 1)
    [handoff] = await ledger(agent_sessionmaker, 1)
    assert handoff.status == "completed"
    rows = await runs(agent_sessionmaker)
    assert [(r.status, r.handoff_id) for r in rows] == [
        ("failed", handoff.id),
        ("completed", handoff.id),
    ]
    assert len(process.calls) == 2


# --- AgentRuntime.handle directly ------------------------------------------------------------


async def test_handle_records_running_then_completed(agent_sessionmaker: Sessions) -> None:
    runtime = AgentRuntime("hygiene", DatabaseRecorder(agent_sessionmaker))
    process = Hygiene(agent_sessionmaker)
    result = await runtime.handle(task("h-1"), process)
    assert (result.status, result.records_processed) == (ResultStatus.COMPLETED, 1)
    assert process.seen_running == [True]
    [row] = await runs(agent_sessionmaker)
    assert (row.status, row.records_processed, row.handoff_id) == ("completed", 1, "h-1")
    assert row.completed_at is not None and row.completed_at >= row.started_at


async def test_handle_records_a_raised_error_and_lets_it_propagate(
    agent_sessionmaker: Sessions,
) -> None:
    runtime = AgentRuntime("hygiene", DatabaseRecorder(agent_sessionmaker))
    process = Hygiene(agent_sessionmaker, fail_always=True)
    with pytest.raises(ValueError, match="no such company"):
        await runtime.handle(task("h-1", prospect_id=7), process)
    [row] = await runs(agent_sessionmaker)
    assert (row.status, row.handoff_id) == ("failed", "h-1")
    assert row.error == "ValueError: no such company (prospect 7)"
    assert row.records_processed is None
    assert row.completed_at is not None and row.completed_at >= row.started_at


async def test_handle_cuts_a_very_long_error_to_what_the_column_takes(
    agent_sessionmaker: Sessions,
) -> None:
    runtime = AgentRuntime("hygiene", DatabaseRecorder(agent_sessionmaker))

    async def process(_: AgentTask) -> AgentResult:
        raise RuntimeError("x" * 5000)

    with pytest.raises(RuntimeError):
        await runtime.handle(task(), process)
    [row] = await runs(agent_sessionmaker)
    assert row.status == "failed"
    assert row.error is not None and len(row.error) == 4000
    assert row.error.startswith("RuntimeError: xxx")


async def test_a_failed_result_is_recorded_failed_with_its_detail(
    agent_sessionmaker: Sessions,
) -> None:
    runtime = AgentRuntime("researcher", DatabaseRecorder(agent_sessionmaker))

    async def process(_: AgentTask) -> AgentResult:
        return AgentResult(status=ResultStatus.FAILED, detail="no website to research")

    result = await runtime.handle(task("h-9"), process)
    assert (result.status, result.detail) == (ResultStatus.FAILED, "no website to research")
    [row] = await runs(agent_sessionmaker)
    assert (row.agent_name, row.status, row.handoff_id) == ("researcher", "failed", "h-9")
    assert row.error == "no website to research"
    assert row.records_processed is None


async def test_the_same_handoff_twice_is_skipped_without_calling_process(
    agent_sessionmaker: Sessions,
) -> None:
    runtime = AgentRuntime("hygiene", DatabaseRecorder(agent_sessionmaker))
    process = Hygiene(agent_sessionmaker)
    first = await runtime.handle(task("h-1"), process)
    second = await runtime.handle(task("h-1"), process)
    assert first.status is ResultStatus.COMPLETED
    assert second.status is ResultStatus.SKIPPED
    assert second.detail == "handoff h-1 was already processed"
    assert len(process.calls) == 1
    assert [(r.status, r.handoff_id) for r in await runs(agent_sessionmaker)] == [
        ("completed", "h-1")
    ]
    # another agent's run of that handoff id is its own business
    other = AgentRuntime("researcher", DatabaseRecorder(agent_sessionmaker))
    assert (await other.handle(task("h-1"), process)).status is ResultStatus.COMPLETED
    assert len(process.calls) == 2


async def test_a_cancelled_process_does_not_stay_running(agent_sessionmaker: Sessions) -> None:
    runtime = AgentRuntime("hygiene", DatabaseRecorder(agent_sessionmaker))
    started = asyncio.Event()

    async def process(_: AgentTask) -> AgentResult:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    call = asyncio.create_task(runtime.handle(task(), process))
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    [row] = await runs(agent_sessionmaker)
    assert row.status == "failed"


# --- run_every ----------------------------------------------------------------------------


async def test_run_every_records_one_run_per_tick_failures_included(
    agent_sessionmaker: Sessions,
) -> None:
    runtime = AgentRuntime("prospector", DatabaseRecorder(agent_sessionmaker))
    stop = asyncio.Event()
    ticks = 0

    async def work() -> int:
        nonlocal ticks
        ticks += 1
        if ticks == 2:
            raise ConnectionError("source unavailable")
        if ticks == 4:
            stop.set()
        return 10 * ticks

    await asyncio.wait_for(run_every(runtime, work, timedelta(seconds=0.05), stop), 10)
    assert ticks == 4
    rows = await runs(agent_sessionmaker)
    assert [(r.agent_name, r.status, r.records_processed, r.error) for r in rows] == [
        ("prospector", "completed", 10, None),
        ("prospector", "failed", None, "ConnectionError: source unavailable"),
        ("prospector", "completed", 30, None),
        ("prospector", "completed", 40, None),
    ]
    assert all(r.handoff_id is None for r in rows)
    assert all(r.completed_at is not None and r.completed_at >= r.started_at for r in rows)


async def test_run_every_stops_promptly_between_ticks(agent_sessionmaker: Sessions) -> None:
    runtime = AgentRuntime("prospector", DatabaseRecorder(agent_sessionmaker))
    stop = asyncio.Event()

    async def work() -> int:
        return 5

    loop = asyncio.get_running_loop()
    schedule = asyncio.create_task(run_every(runtime, work, timedelta(hours=1), stop))
    await wait_until(lambda: run_count(agent_sessionmaker), within=10)
    asked = loop.time()
    stop.set()
    await asyncio.wait_for(schedule, 2)
    assert loop.time() - asked < 1
    assert [(r.status, r.records_processed) for r in await runs(agent_sessionmaker)] == [
        ("completed", 5)
    ]


async def test_run_every_does_not_run_when_already_stopped(agent_sessionmaker: Sessions) -> None:
    runtime = AgentRuntime("prospector", DatabaseRecorder(agent_sessionmaker))
    stop = asyncio.Event()
    stop.set()

    async def work() -> int:
        raise AssertionError("not called")

    await asyncio.wait_for(run_every(runtime, work, timedelta(seconds=1), stop), 2)
    assert await runs(agent_sessionmaker) == []


# --- ApiRecorder against the served API -------------------------------------------------------


@pytest.fixture
async def api_url(settings: Settings, agent_sessionmaker: Sessions) -> AsyncIterator[str]:
    """The real API on a socket, on this test's (migrated) database."""
    async with served(create_app(with_keys(settings)), free_port()) as url:
        yield url


@pytest.fixture
async def api_runtime(api_url: str) -> AsyncIterator[AgentRuntime]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield AgentRuntime("hygiene", ApiRecorder(api_url, OPERATOR_KEY, http=http))


async def test_api_recorder_records_running_then_completed(
    api_runtime: AgentRuntime, agent_sessionmaker: Sessions
) -> None:
    process = Hygiene(agent_sessionmaker)
    result = await api_runtime.handle(task("h-api"), process)
    assert result.status is ResultStatus.COMPLETED
    assert process.seen_running == [True]  # POSTed as running before process was called
    [row] = await runs(agent_sessionmaker)
    assert (row.agent_name, row.status, row.records_processed) == ("hygiene", "completed", 1)
    assert row.handoff_id == "h-api" and row.error is None
    assert row.completed_at is not None and row.completed_at >= row.started_at
    # the same handoff again: the API says it is done, so process is not called
    again = await api_runtime.handle(task("h-api"), process)
    assert again.status is ResultStatus.SKIPPED
    assert len(process.calls) == 1
    assert len(await runs(agent_sessionmaker)) == 1


async def test_api_recorder_records_failures(
    api_runtime: AgentRuntime, agent_sessionmaker: Sessions
) -> None:
    process = Hygiene(agent_sessionmaker, fail_always=True)
    with pytest.raises(ValueError, match="no such company"):
        await api_runtime.handle(task("h-api", prospect_id=3), process)

    async def declines(_: AgentTask) -> AgentResult:
        return AgentResult(status=ResultStatus.FAILED, detail="domain has no MX record")

    result = await api_runtime.handle(task("h-api-2"), declines)
    assert result.status is ResultStatus.FAILED
    rows = await runs(agent_sessionmaker)
    assert [(r.status, r.handoff_id, r.error, r.records_processed) for r in rows] == [
        ("failed", "h-api", "ValueError: no such company (prospect 3)", None),
        ("failed", "h-api-2", "domain has no MX record", None),
    ]
    # a failed handoff is not done: it runs again
    assert (
        await api_runtime.handle(task("h-api"), Hygiene(agent_sessionmaker))
    ).status == "completed"


async def test_api_recorder_records_a_very_long_error(
    api_runtime: AgentRuntime, agent_sessionmaker: Sessions
) -> None:
    async def process(_: AgentTask) -> AgentResult:
        raise RuntimeError("x" * 5000)

    with pytest.raises(RuntimeError):
        await api_runtime.handle(task(), process)
    [row] = await runs(agent_sessionmaker)
    assert row.status == "failed"
    assert row.error is not None and row.error.startswith("RuntimeError: xxx")
