"""Conflict resolution on SQLite and PostgreSQL: stale leases released (and live ones kept),
each release audited once, contention arbitrated on a real Temporal server, duplicate claims
and runs, orphaned claims restarted, and concurrent cycles releasing each lease exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus

from db.commands.conflicts import ResolveSummary, release_stale_leases
from db.models import AgentRun, Handoff, OrchestratorAction, RecordLock
from orchestrator.settings import ConflictSettings, HandoffSettings, Settings
from pipeline.handoffs import HandoffStatus, handoff_workflow_id
from tests.helpers.agents import FakeAgent, prospect_status
from tests.helpers.factories import add, ledger_entry, prospect, run
from tests.helpers.handoffs import (
    ledger,
    live_state,
    locks,
    record_history,
    running,
    sweep,
    wait_until,
)
from worker import build_worker
from workflows.cycle import CycleWorkflow
from workflows.types import CycleInput

Maker = async_sessionmaker[AsyncSession]
BATCH = 500
# handoff workflow ids come from prospect ids and the Temporal server is shared by the whole
# session: these tests keep to ids of their own
P = 7300


def now() -> datetime:
    return datetime.now(UTC)


def lease(pid: int, agent: str, run_id: str | None, expires_at: datetime) -> RecordLock:
    acquired = expires_at - timedelta(hours=1)
    return RecordLock(
        prospect_id=pid,
        agent_name=agent,
        run_id=run_id,
        acquired_at=acquired,
        expires_at=expires_at,
    )


def claim(
    pid: int,
    state: str,
    entered: datetime,
    *,
    agent: str = "hygiene",
    status: str = "running",
    updated: datetime | None = None,
    finished: datetime | None = None,
) -> Handoff:
    """A ledger row, as a handoff workflow (maybe a lost one) left it: owned by a run no
    worker knows, last changed at ``updated``, finished at ``finished`` whatever its status."""
    row = ledger_entry(pid, state, status=status, agent=agent, at=entered, entered=entered)
    row.workflow_run_id = "lost-run"
    row.updated_at = updated or entered
    row.finished_at = finished
    return row


async def release(sessionmaker: Maker, at: datetime) -> tuple[int, int]:
    async with sessionmaker() as session:
        return await release_stale_leases(session, at, BATCH)


async def audit(sessionmaker: Maker, action: str | None = None) -> list[OrchestratorAction]:
    async with sessionmaker() as session:
        query = select(OrchestratorAction).order_by(OrchestratorAction.id)
        if action is not None:
            query = query.where(OrchestratorAction.action == action)
        return list(await session.scalars(query))


def assert_audited(row: OrchestratorAction, action: str, pid: int | None, agent: str) -> None:
    assert (row.action, row.prospect_id, row.agent_name) == (action, pid, agent)
    assert row.details is not None and set(row.details) == {"found", "done", "why"}
    assert all(row.details.values())


async def lease_ids(sessionmaker: Maker) -> list[tuple[int, str | None]]:
    return sorted((lk.prospect_id, lk.run_id) for lk in await locks(sessionmaker))


# --- stale leases, without Temporal ----------------------------------------------------------


async def test_expired_lease_is_released_and_a_live_one_of_another_agent_is_kept(
    sessionmaker,
    agent_sessionmaker,
) -> None:
    t = now()
    await add(
        agent_sessionmaker,
        lease(1, "hygiene", "h-1", t - timedelta(minutes=1)),
        lease(2, "researcher", "r-2", t + timedelta(hours=1)),
        lease(3, "outreach", None, t + timedelta(seconds=5)),  # live, even without a holder id
    )
    assert await release(sessionmaker, t) == (1, 0)
    assert await lease_ids(sessionmaker) == [(2, "r-2"), (3, None)]
    [row] = await audit(sessionmaker)
    assert_audited(row, "lease_released", 1, "hygiene")
    assert "expired" in row.details["why"] and "h-1" in row.details["found"]
    # done once: a second call finds nothing and writes nothing
    assert await release(sessionmaker, t) == (0, 0)
    assert len(await audit(sessionmaker)) == 1


@pytest.mark.parametrize("status", ["completed", "failed"])
async def test_lease_of_a_finished_agent_run_is_released_a_running_ones_kept(
    sessionmaker, agent_sessionmaker, status: str
) -> None:
    t = now()
    finished, going = run("researcher", status, now=t), run("researcher", "running", now=t)
    await add(agent_sessionmaker, finished, going)
    await add(
        agent_sessionmaker,
        lease(1, "researcher", str(finished.id), t + timedelta(hours=1)),
        lease(2, "researcher", str(going.id), t + timedelta(hours=1)),
    )
    assert await release(sessionmaker, t) == (0, 1)
    assert await lease_ids(sessionmaker) == [(2, str(going.id))]
    [row] = await audit(sessionmaker)
    assert_audited(row, "lease_released", 1, "researcher")
    assert f"its holder {finished.id} has finished" == row.details["why"]
    assert await release(sessionmaker, t) == (0, 0)
    assert len(await audit(sessionmaker)) == 1


async def test_lease_of_a_closed_handoff_is_released_an_open_ones_kept(
    sessionmaker, agent_sessionmaker
) -> None:
    t = now()
    entered = t - timedelta(minutes=30)
    closed = claim(1, "identified", entered, status="completed", finished=t - timedelta(minutes=1))
    still_open = claim(2, "identified", entered, status="running")
    await add(
        agent_sessionmaker,
        closed,
        still_open,
        lease(1, "hygiene", closed.id, t + timedelta(hours=1)),
        lease(2, "hygiene", still_open.id, t + timedelta(hours=1)),
    )
    assert await release(sessionmaker, t) == (0, 1)
    assert await lease_ids(sessionmaker) == [(2, still_open.id)]
    [row] = await audit(sessionmaker)
    assert_audited(row, "lease_released", 1, "hygiene")
    assert closed.id in row.details["why"]
    assert await release(sessionmaker, t) == (0, 0)
    assert len(await audit(sessionmaker)) == 1


async def test_concurrent_releases_release_each_stale_lease_exactly_once(
    db_url: str, sessionmaker, agent_sessionmaker
) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("concurrent writers need PostgreSQL: SQLite serialises every write")
    seeded: list[int] = []
    for round_ in range(1, 4):  # three rounds: more chances for a race to show
        t, pids = now(), range(1000 * round_, 1000 * round_ + 200)
        seeded += pids
        await add(
            agent_sessionmaker,
            *(lease(pid, "hygiene", f"h-{pid}", t - timedelta(seconds=1)) for pid in pids),
        )
        results = await asyncio.gather(*(release(sessionmaker, t) for _ in range(5)))
        assert sum(expired for expired, _ in results) == 200, results
        assert sum(orphaned for _, orphaned in results) == 0
        assert await locks(sessionmaker) == []
        released = await audit(sessionmaker, "lease_released")
        assert Counter(r.prospect_id for r in released) == Counter(seeded)  # once each


# --- through real resolve cycles ---------------------------------------------------------------


async def resolve(client: Client, settings: Settings) -> ResolveSummary:
    workflow_id = f"test-resolve-{uuid.uuid4().hex[:10]}"
    summary = await client.execute_workflow(
        CycleWorkflow.run,
        CycleInput(mode="resolve"),
        id=workflow_id,
        task_queue=settings.temporal.task_queue,
    )
    await record_history(client, workflow_id, "cycle_resolve", settings)
    assert summary.steps_done == ["resolve"] and summary.conflicts is not None
    return summary.conflicts


def configured(
    settings: Settings, *, contention_after: timedelta | None = None, **handoffs: object
) -> Settings:
    update: dict[str, object] = {}
    if contention_after is not None:
        update["conflicts"] = ConflictSettings(contention_after=contention_after)
    if handoffs:
        update["handoffs"] = HandoffSettings(**handoffs)  # type: ignore[arg-type]
    return settings.model_copy(update=update)


@asynccontextmanager
async def closing(client: Client, *pids: int) -> AsyncIterator[None]:
    """Terminate these prospects' handoff workflows that are still open when the test ends:
    their ids are reused by the next backend's run of the test."""
    try:
        yield
    finally:
        for pid in pids:
            handle = client.get_workflow_handle(handoff_workflow_id(pid))
            try:
                if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
                    await handle.terminate("test over")
            except Exception:  # never started
                pass


async def blocked_handoff(
    client: Client, sessionmaker: Maker, agent_sessionmaker: Maker, settings: Settings, pid: int
) -> str:
    """A real handoff of ``pid`` (identified -> hygiene) blocked on the researcher's live
    lease; returns its ledger id."""
    t = now()
    await add(
        agent_sessionmaker,
        *prospect("identified", pid=pid),
        lease(pid, "researcher", "other-run", t + timedelta(hours=2)),
    )
    await sweep(client, settings)

    async def is_blocked() -> bool:
        rows = await ledger(sessionmaker, pid)
        return [r.status for r in rows] == ["blocked"]

    await wait_until(is_blocked)
    state = await live_state(client, pid)
    assert state is not None and state.status is HandoffStatus.BLOCKED
    return state.handoff_id


async def test_blocked_handoff_whose_lease_expires_is_signalled_and_completes(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    pid = P + 1
    settings = configured(worker_settings, blocked_retry_interval=timedelta(hours=1))
    async with running(client, sessionmaker, settings, agents), closing(client, pid):
        blocked_id = await blocked_handoff(client, sessionmaker, agent_sessionmaker, settings, pid)
        async with sessionmaker() as session:  # the researcher's lease runs out
            await session.execute(
                update(RecordLock).values(expires_at=now() - timedelta(seconds=1))
            )
            await session.commit()
        summary = await resolve(client, settings)
        # the retry timer is an hour away: only the signal makes it go on now
        await asyncio.wait_for(client.get_workflow_handle(handoff_workflow_id(pid)).result(), 20)

    assert summary.by_kind == {"expired_lease": 1, "contention": 1}
    assert (summary.conflicts_found, summary.resolved, summary.unresolved) == (2, 2, [])
    [released] = await audit(sessionmaker, "lease_released")
    assert_audited(released, "lease_released", pid, "researcher")
    [signalled] = await audit(sessionmaker, "handoff_retry_signalled")
    assert_audited(signalled, "handoff_retry_signalled", pid, "hygiene")
    assert blocked_id in signalled.details["found"]
    assert agents["hygiene"].work == {(pid, "identified"): 1}
    assert await prospect_status(sessionmaker, pid) == "in_sequence"
    assert (await ledger(sessionmaker, pid))[0].status == "completed"
    assert await locks(sessionmaker) == []


async def test_live_lease_in_contention_is_kept_and_reported_with_its_holder(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    pid = P + 2
    settings = configured(
        worker_settings,
        contention_after=timedelta(seconds=1),
        blocked_retry_interval=timedelta(hours=1),
    )
    async with running(client, sessionmaker, settings, agents), closing(client, pid):
        blocked_id = await blocked_handoff(client, sessionmaker, agent_sessionmaker, settings, pid)
        [held] = await locks(sessionmaker)
        await asyncio.sleep(1.5)  # blocked for longer than contention_after
        summary = await resolve(client, settings)
        state = await live_state(client, pid)

    assert summary.by_kind == {"contention": 1}
    assert (summary.conflicts_found, summary.resolved) == (1, 0)
    [conflict] = summary.unresolved
    assert (conflict.kind, conflict.prospect_id) == ("contention", pid)
    assert blocked_id in conflict.detail
    assert "researcher holds the lease until" in conflict.detail and "keeps it" in conflict.detail
    [still] = await locks(sessionmaker)
    assert (still.id, still.agent_name, still.run_id, still.expires_at) == (
        held.id,
        "researcher",
        "other-run",
        held.expires_at,
    )
    assert state is not None and state.status is HandoffStatus.BLOCKED
    assert [r.status for r in await ledger(sessionmaker, pid)] == ["blocked"]
    assert await audit(sessionmaker) == []
    assert agents["hygiene"].calls == []


async def test_contention_is_reported_while_the_blocked_handoff_keeps_retrying(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    pid = P + 3
    settings = configured(
        worker_settings,
        contention_after=timedelta(seconds=2),
        blocked_retry_interval=timedelta(milliseconds=300),
    )
    async with running(client, sessionmaker, settings, agents), closing(client, pid):
        await blocked_handoff(client, sessionmaker, agent_sessionmaker, settings, pid)
        await asyncio.sleep(3)  # blocked 3 s, retrying every 0.3 s
        summary = await resolve(client, settings)
    assert [(c.kind, c.prospect_id) for c in summary.unresolved] == [("contention", pid)]


async def test_duplicate_claim_is_closed_as_superseded_keeping_the_newest(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings
) -> None:
    pid, t = P + 4, now()
    older = claim(pid, "identified", t - timedelta(minutes=3), updated=t)
    newer = claim(pid, "needs_scoring", t - timedelta(minutes=2), updated=t)
    other = claim(pid + 1, "identified", t - timedelta(minutes=3), updated=t)  # one claim: fine
    await add(
        agent_sessionmaker,
        *prospect("needs_scoring", entered=newer.state_entered_at, pid=pid),
        *prospect("identified", entered=other.state_entered_at, pid=pid + 1),
    )
    await add(agent_sessionmaker, older, newer, other)
    async with build_worker(client, sessionmaker, worker_settings):
        summary = await resolve(client, worker_settings)
        again = await resolve(client, worker_settings)

    assert summary.by_kind == {"duplicate_claim": 1}
    assert (summary.conflicts_found, summary.resolved, summary.unresolved) == (1, 1, [])
    assert (again.conflicts_found, again.resolved) == (0, 0)
    rows = {r.id: r for r in await ledger(sessionmaker, pid)}
    assert (rows[older.id].status, rows[older.id].finished_at is not None) == ("superseded", True)
    assert "duplicate claim" in (rows[older.id].detail or "")
    assert (rows[newer.id].status, rows[newer.id].finished_at) == ("running", None)
    assert [r.status for r in await ledger(sessionmaker, pid + 1)] == ["running"]
    [row] = await audit(sessionmaker)
    assert_audited(row, "duplicate_handoff_closed", pid, "hygiene")
    assert older.id in row.details["found"] and newer.id in row.details["why"]


async def test_duplicate_claim_keeps_the_one_the_live_workflow_works_on(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    pid = P + 5
    settings = configured(worker_settings, blocked_retry_interval=timedelta(hours=1))
    async with running(client, sessionmaker, settings, agents), closing(client, pid):
        live_id = await blocked_handoff(client, sessionmaker, agent_sessionmaker, settings, pid)
        t = now()
        stray = claim(pid, "needs_scoring", t, status="pending", updated=t)  # newer, no workflow
        await add(agent_sessionmaker, stray)
        summary = await resolve(client, settings)
        state = await live_state(client, pid)

    assert summary.by_kind == {"duplicate_claim": 1}
    assert (summary.conflicts_found, summary.resolved, summary.unresolved) == (1, 1, [])
    rows = {r.id: r for r in await ledger(sessionmaker, pid)}
    assert (rows[live_id].status, rows[live_id].finished_at) == ("blocked", None)
    assert rows[stray.id].status == "superseded"
    assert state is not None and state.handoff_id == live_id
    [row] = await audit(sessionmaker)
    assert_audited(row, "duplicate_handoff_closed", pid, "hygiene")
    assert stray.id in row.details["found"] and live_id in row.details["why"]


async def test_two_running_agent_runs_for_one_handoff_are_reported_not_touched(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings
) -> None:
    t = now()
    rows = [run("researcher", "running", now=t) for _ in range(2)]
    for r in rows:
        r.handoff_id = "h-dup"
    negatives = [
        run("researcher", "running", now=t),
        run("researcher", "running", now=t),
        run("outreach", "running", now=t),
        run("outreach", "completed", now=t),
        run("hygiene", "running", now=t),
        run("hygiene", "running", now=t),
    ]
    for r, h in zip(negatives, ["h-a", "h-b", "h-c", "h-c", None, None], strict=True):
        r.handoff_id = h
    await add(agent_sessionmaker, *rows, *negatives)
    async with build_worker(client, sessionmaker, worker_settings):
        summary = await resolve(client, worker_settings)

    assert summary.by_kind == {"duplicate_run": 1}
    assert (summary.conflicts_found, summary.resolved) == (1, 0)
    [conflict] = summary.unresolved
    assert conflict.kind == "duplicate_run"
    assert "researcher has 2 runs in progress for handoff h-dup" in conflict.detail
    async with sessionmaker() as session:
        statuses = await session.scalars(select(AgentRun.status).order_by(AgentRun.id))
        assert list(statuses) == ["running"] * 5 + ["completed", "running", "running"]
    assert await audit(sessionmaker) == []


async def test_orphaned_claim_is_run_again_and_completes(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    pid, t = P + 6, now()
    entered = t - timedelta(minutes=30)
    lost = claim(pid, "identified", entered, updated=t - timedelta(minutes=20))
    recent = claim(pid + 1, "identified", entered, updated=t - timedelta(minutes=1))
    await add(
        agent_sessionmaker,
        *prospect("identified", entered=entered, pid=pid),
        *prospect("identified", entered=entered, pid=pid + 1),
    )
    await add(
        agent_sessionmaker, lost, recent, lease(pid, "hygiene", lost.id, t + timedelta(minutes=40))
    )
    async with running(client, sessionmaker, worker_settings, agents), closing(client, pid + 1):
        summary = await resolve(client, worker_settings)
        handle = client.get_workflow_handle(handoff_workflow_id(pid))
        await asyncio.wait_for(handle.result(), 20)
        with pytest.raises(Exception, match="not found"):  # the recent claim is left alone
            await client.get_workflow_handle(handoff_workflow_id(pid + 1)).describe()

    assert summary.by_kind == {"orphaned_claim": 1}
    assert (summary.conflicts_found, summary.resolved, summary.unresolved) == (1, 1, [])
    [row] = await audit(sessionmaker, "handoff_restarted")
    assert_audited(row, "handoff_restarted", pid, "hygiene")
    assert lost.id in row.details["found"]
    first = (await ledger(sessionmaker, pid))[0]
    assert (first.id, first.status, first.attempt) == (lost.id, "completed", 2)
    assert agents["hygiene"].work == {(pid, "identified"): 1}
    assert await prospect_status(sessionmaker, pid) == "in_sequence"
    assert [r.status for r in await ledger(sessionmaker, pid + 1)] == ["running"]
    assert await locks(sessionmaker) == []


async def test_concurrent_resolve_cycles_release_each_stale_lease_exactly_once(
    client: Client, db_url: str, sessionmaker, agent_sessionmaker, worker_settings: Settings
) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("concurrent writers need PostgreSQL: SQLite serialises every write")
    t = now()
    await add(
        agent_sessionmaker,
        *(lease(pid, "outreach", f"o-{pid}", t - timedelta(seconds=1)) for pid in range(1, 201)),
    )
    async with build_worker(client, sessionmaker, worker_settings):
        summaries = await asyncio.gather(*(resolve(client, worker_settings) for _ in range(5)))
    assert sum(s.by_kind.get("expired_lease", 0) for s in summaries) == 200
    assert sum(s.resolved for s in summaries) == 200
    assert await locks(sessionmaker) == []
    async with sessionmaker() as session:
        per_prospect = await session.execute(
            select(OrchestratorAction.prospect_id, func.count())
            .where(OrchestratorAction.action == "lease_released")
            .group_by(OrchestratorAction.prospect_id)
        )
        assert dict(per_prospect.all()) == {pid: 1 for pid in range(1, 201)}
