"""Oracles: slow, obviously right ways of computing what production computes fast, for the
tests and the benchmark to compare with."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AgentRun
from db.queries.health import COMPLETED, FAILED, WindowStats
from db.types import seconds_between


async def every_run_window_stats(
    session: AsyncSession, names: Sequence[str], start: datetime, end: datetime
) -> dict[str, WindowStats]:
    """Every run of the window aggregated from ``agent_runs``: what the rollup must equal."""
    completed = AgentRun.status == COMPLETED
    records = func.coalesce(AgentRun.records_processed, 0)
    query = (
        select(
            AgentRun.agent_name,
            func.count(),
            func.coalesce(func.sum(case((AgentRun.status == FAILED, 1), else_=0)), 0),
            func.coalesce(func.sum(case((completed, 1), else_=0)), 0),
            # impossible values an agent may report (negative counts, ending before it
            # started) are left out of the averages rather than bending them
            func.avg(case((completed & (records >= 0), records))),
            func.avg(
                case(
                    (
                        completed & (AgentRun.completed_at >= AgentRun.started_at),
                        seconds_between(AgentRun.started_at, AgentRun.completed_at),
                    )
                )
            ),
        )
        .where(
            AgentRun.agent_name.in_(names),
            AgentRun.started_at >= start,
            AgentRun.started_at <= end,
        )
        .group_by(AgentRun.agent_name)
    )
    rows = (await session.execute(query)).all()
    return {
        name: WindowStats(
            runs=runs,
            errors=errors,
            successes=successes,
            avg_records=float(avg_records or 0),
            avg_duration=float(avg_duration or 0),
        )
        for name, runs, errors, successes, avg_records, avg_duration in rows
    }
