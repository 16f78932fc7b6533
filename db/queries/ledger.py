"""Reading the orchestrator's own records for people: the handoff ledger, alerts, the event
stream, stored reports, agents' runs and controls. Keyset pages, newest first."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AgentControl, AgentRun, Alert, Event, Handoff, PipelineReport
from db.queries.pages import newest_first


async def handoff_page(
    session: AsyncSession,
    *,
    limit: int,
    status: str | None = None,
    agent: str | None = None,
    prospect_id: int | None = None,
    before: tuple[datetime, str] | None = None,
    since: datetime | None = None,
) -> list[Handoff]:
    """Ledger rows newest first; ``before`` is the (created_at, id) the last page ended at,
    ``since`` the earliest last change (``updated_at``) a row may have."""
    query = select(Handoff)
    if status is not None:
        query = query.where(Handoff.status == status)
    if agent is not None:
        query = query.where(Handoff.to_agent == agent)
    if prospect_id is not None:
        query = query.where(Handoff.prospect_id == prospect_id)
    query = newest_first(query, Handoff.created_at, Handoff.id, limit=limit, before=before)
    if since is not None:
        query = query.where(Handoff.updated_at >= since)
    return list(await session.scalars(query))


async def handoffs_of(session: AsyncSession, prospect_id: int) -> list[Handoff]:
    query = (
        select(Handoff)
        .where(Handoff.prospect_id == prospect_id)
        .order_by(Handoff.created_at.desc())
    )
    return list(await session.scalars(query))


async def alert_list(
    session: AsyncSession, *, limit: int, status: str | None = None, agent: str | None = None
) -> list[Alert]:
    query = select(Alert)
    if status is not None:
        query = query.where(Alert.status == status)
    if agent is not None:
        query = query.where(Alert.agent_name == agent)
    query = newest_first(query, Alert.last_seen, Alert.id, limit=limit)
    return list(await session.scalars(query))


async def events_after(session: AsyncSession, after: int, limit: int) -> list[Event]:
    query = select(Event).where(Event.id > after).order_by(Event.id).limit(limit)
    return list(await session.scalars(query))


async def agent_controls(session: AsyncSession) -> dict[str, AgentControl]:
    return {c.agent_name: c for c in await session.scalars(select(AgentControl))}


async def stored_reports(
    session: AsyncSession, *, limit: int, kind: str | None = None
) -> list[PipelineReport]:
    query = (
        select(PipelineReport)
        .order_by(PipelineReport.report_date.desc(), PipelineReport.kind)
        .limit(limit)
    )
    if kind is not None:
        query = query.where(PipelineReport.kind == kind)
    return list(await session.scalars(query))


async def latest_report_date(session: AsyncSession, kind: str) -> str | None:
    """The newest stored report's date (ISO text, as the table keeps it)."""
    query = (
        select(PipelineReport.report_date)
        .where(PipelineReport.kind == kind)
        .order_by(PipelineReport.report_date.desc())
        .limit(1)
    )
    return await session.scalar(query)


async def runs_of(
    session: AsyncSession,
    agent: str,
    *,
    limit: int,
    handoff_id: str | None = None,
    status: str | None = None,
) -> list[AgentRun]:
    """An agent's latest runs, newest first."""
    query = select(AgentRun).where(AgentRun.agent_name == agent)
    if handoff_id is not None:
        query = query.where(AgentRun.handoff_id == handoff_id)
    if status is not None:
        query = query.where(AgentRun.status == status)
    query = newest_first(query, AgentRun.started_at, AgentRun.id, limit=limit)
    return list(await session.scalars(query))
