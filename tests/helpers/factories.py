"""Rows for tests, written the way an agent would write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AgentRun, Contact, Handoff, Prospect, RecordLock
from pipeline.handoffs import handoff_id, handoff_workflow_id

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def run(
    agent: str,
    status: str = "completed",
    *,
    ago: timedelta = timedelta(hours=1),
    duration: timedelta = timedelta(minutes=2),
    records: int | None = 20,
    error: str | None = None,
    now: datetime = NOW,
) -> AgentRun:
    """A run that started ``ago`` before ``now``; finished runs end ``duration`` later."""
    started = now - ago
    return AgentRun(
        agent_name=agent,
        status=status,
        started_at=started,
        completed_at=None if status == "running" else started + duration,
        records_processed=records if status == "completed" else None,
        error=error if error is not None else ("boom" if status == "failed" else None),
    )


async def add(sessionmaker: async_sessionmaker[AsyncSession], *rows: object) -> None:
    """Insert in the given order, one table at a time (models have no relationships, so the
    unit of work would not order parents before children). Agents' rows need the agents'
    connection (the ``agent_sessionmaker`` fixture): the orchestrator's role cannot write them."""
    async with sessionmaker() as session:
        for _, group in groupby(rows, key=type):
            session.add_all(list(group))
            await session.flush()
        await session.commit()


def prospect(
    status: str = "identified",
    *,
    tier: str | None = None,
    email: str | None = "ceo@example.com",
    deleted: bool = False,
    entered: datetime | None = None,
    pid: int,
) -> list[object]:
    """A prospect (and its contact, when ``email`` is given), as the prospector writes it."""
    entered = entered or datetime.now(UTC) - timedelta(minutes=1)
    p = Prospect(
        id=pid,
        company_name="Acme",
        domain="acme.example",
        status=status,
        tier=tier,
        status_changed_at=entered,
        created_at=entered,
        updated_at=entered,
        deleted_at=entered if deleted else None,
    )
    rows: list[object] = [p]
    if email is not None:
        rows.append(Contact(prospect_id=pid, name="Ada", email=email, title="CEO"))
    return rows


def mixed_history(now: datetime) -> list[AgentRun]:
    """hygiene healthy, researcher failing on errors (50%), outreach degraded on records
    (4 of 10 expected), prospector failing on a last success 30 h ago."""
    hours = [timedelta(hours=h) for h in range(1, 11)]
    rows = [run("hygiene", ago=ago, records=20, now=now) for ago in hours]
    rows += [
        run("researcher", "failed" if i % 2 else "completed", ago=ago, records=5, now=now)
        for i, ago in enumerate(hours)
    ]
    rows += [
        run("outreach", ago=ago, records=r, now=now)
        for ago, r in zip(hours[:4], [2, 4, 6, 4], strict=True)
    ]
    rows.append(run("prospector", ago=timedelta(hours=30), records=10, now=now))
    return rows


def held_lease(
    pid: int, agent: str, *, run_id: str = "someone-else", held_for: timedelta = timedelta(days=1)
) -> RecordLock:
    """A live record lease of another agent on prospect ``pid``, taken now."""
    now = datetime.now(UTC)
    return RecordLock(
        prospect_id=pid, agent_name=agent, run_id=run_id, acquired_at=now, expires_at=now + held_for
    )


async def count(sessionmaker: async_sessionmaker[AsyncSession], model: Any, *where: Any) -> int:
    """Rows of ``model`` matching ``where``, counted by the database."""
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0


FINISHED = ("completed", "failed", "cancelled", "superseded")


def ledger_entry(
    pid: int,
    state: str,
    *,
    status: str,
    agent: str = "hygiene",
    ago: timedelta = timedelta(0),
    at: datetime | None = None,
    entered: datetime | None = None,
) -> Handoff:
    """A ledger row of prospect ``pid``'s entry into ``state``, last changed at ``at``
    (default ``ago`` before now); finished then unless its status is an open one."""
    at = at or datetime.now(UTC) - ago
    entered = entered or at - timedelta(seconds=1)
    return Handoff(
        id=handoff_id(pid, state, entered),
        prospect_id=pid,
        from_state=state,
        state_entered_at=entered,
        to_agent=agent,
        status=status,
        attempt=1,
        workflow_id=handoff_workflow_id(pid),
        created_at=at,
        updated_at=at,
        finished_at=at if status in FINISHED else None,
    )


def finished_handoff(
    pid: int, state: str, entered: datetime, *, status: str = "completed"
) -> Handoff:
    """The ledger row of ``pid``'s entry into ``state``, finished a minute after it entered
    (``status="running"``: still open)."""
    return ledger_entry(
        pid, state, status=status, entered=entered, at=entered + timedelta(minutes=1)
    )
