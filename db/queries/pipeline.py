"""What the pipeline looks like now: prospects per state, entries into states over a window,
handoffs per status, the newest event. Grouped counts, never rows loaded to be counted."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Activity, Alert, CycleHeartbeat, Event, Handoff, Prospect
from pipeline.reports import STATUS_CHANGE_TARGET_KEY


async def live_prospects_by_status(session: AsyncSession) -> dict[str, int]:
    query = (
        select(Prospect.status, func.count())
        .where(Prospect.deleted_at.is_(None))
        .group_by(Prospect.status)
    )
    return {status: int(n) for status, n in (await session.execute(query)).all()}


async def entries_since(session: AsyncSession, since: datetime) -> tuple[int, dict[str, int]]:
    """Prospects added since ``since``, and ``status_change`` activities into each state."""
    target = Activity.details[STATUS_CHANGE_TARGET_KEY].as_string()
    moves = (
        select(target.label("target"))
        .where(Activity.type == "status_change", Activity.created_at >= since)
        .subquery()
    )
    # grouped outside the subquery: PostgreSQL would see the JSON key bound twice otherwise
    grouped = select(moves.c.target, func.count()).group_by(moves.c.target)
    into = {state: int(n) for state, n in (await session.execute(grouped)).all() if state}
    added = select(func.count()).where(Prospect.created_at >= since)
    return int((await session.execute(added)).scalar_one()), into


async def handoffs_by_status(session: AsyncSession) -> dict[str, int]:
    query = select(Handoff.status, func.count()).group_by(Handoff.status)
    return {status: int(n) for status, n in (await session.execute(query)).all()}


async def handoffs_by_status_and_agent(session: AsyncSession) -> list[tuple[str, str, int]]:
    query = select(Handoff.status, Handoff.to_agent, func.count()).group_by(
        Handoff.status, Handoff.to_agent
    )
    return [(status, agent, int(n)) for status, agent, n in (await session.execute(query)).all()]


async def unresolved_alerts_by_severity(session: AsyncSession) -> dict[str, int]:
    query = (
        select(Alert.severity, func.count())
        .where(Alert.status != "resolved")
        .group_by(Alert.severity)
    )
    return {severity: int(n) for severity, n in (await session.execute(query)).all()}


async def last_completed_cycles(session: AsyncSession) -> dict[str, datetime]:
    """When each cycle mode last completed (its heartbeat)."""
    query = select(CycleHeartbeat.mode, CycleHeartbeat.last_completed_at)
    return dict((await session.execute(query)).all())


async def last_event_id(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.max(Event.id))) or 0)
