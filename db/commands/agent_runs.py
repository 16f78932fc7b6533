"""Agents' runs reported through the ingestion API (agents without database access): the
only writes to an agent-owned table, on the ingestion role's own connection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AgentRun


async def record_run(session: AsyncSession, agent: str, fields: dict[str, Any]) -> AgentRun:
    run = AgentRun(agent_name=agent, **fields)
    session.add(run)
    await session.commit()
    return run


async def finish_run(
    session: AsyncSession,
    run: AgentRun,
    *,
    status: str,
    completed_at: datetime,
    records_processed: int | None,
    error: str | None,
) -> AgentRun:
    run.status, run.completed_at = status, completed_at
    run.records_processed, run.error = records_processed, error
    await session.commit()
    return run


async def run_by_id(session: AsyncSession, run_id: int) -> AgentRun | None:
    return await session.get(AgentRun, run_id)
