"""Rows for tests, written the way an agent would write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AgentRun

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
    async with sessionmaker() as session:
        session.add_all(rows)
        await session.commit()
