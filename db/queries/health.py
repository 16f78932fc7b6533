"""Agent health from ``agent_runs``, in a constant number of set-based queries.

Two queries whatever the number of runs: one aggregate over the window for every agent, and
one union of index seeks for each agent's latest success, latest failure and first run. The
spec loads every run of the last 24 hours into Python and counts there; at a million runs a
day that is the difference between milliseconds and minutes.

The window aggregate reads the hours already rolled up from ``agent_run_hours`` and only the
rest from ``agent_runs`` (db/queries/health_window.py); the scheduled check refreshes the
rollup first (db/commands/health_rollup.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AgentRun
from db.queries.health_window import Totals, window_totals
from pipeline.health import (
    AgentHealth,
    HealthMetrics,
    HealthThresholds,
    determine_status,
)

COMPLETED, FAILED = "completed", "failed"


class WindowStats(BaseModel):
    runs: int = 0
    errors: int = 0
    successes: int = 0
    avg_records: float = 0.0
    avg_duration: float = 0.0


class _Milestones(BaseModel):
    last_success_started: datetime | None = None
    last_success_completed: datetime | None = None
    last_failure_at: datetime | None = None
    last_error: str | None = None
    first_run_at: datetime | None = None


WindowReader = Callable[
    [AsyncSession, Sequence[str], datetime, datetime], Awaitable[dict[str, WindowStats]]
]
"""Reads the window's runs per agent: ``(session, names, start, end)``."""


async def compute_agent_health(
    session: AsyncSession,
    expected: Mapping[str, int],
    thresholds: HealthThresholds,
    as_of: datetime,
    *,
    window: WindowReader | None = None,
) -> list[AgentHealth]:
    """Health of every configured agent at ``as_of``, in the configured order. The rollup
    is read as it is (never refreshed here: API reads stay read-only); ``window`` replaces
    how the window is read (the tests' oracle aggregates every run)."""
    names = list(expected)
    stats = await (window or read_window_stats)(session, names, as_of - thresholds.window, as_of)
    milestones = await _milestones(session, names, as_of)
    return [
        _agent_health(
            name,
            stats.get(name, WindowStats()),
            milestones.get(name, _Milestones()),
            expected[name],
            thresholds,
            as_of,
        )
        for name in names
    ]


async def read_window_stats(
    session: AsyncSession, names: Sequence[str], start: datetime, end: datetime
) -> dict[str, WindowStats]:
    """Runs started in [start, end], per agent: rollup rows where sealed, runs elsewhere."""
    totals = await window_totals(session, names, start, end)
    return {name: _stats_of(t) for name, t in totals.items()}


def _stats_of(t: Totals) -> WindowStats:
    return WindowStats(
        runs=t.runs,
        errors=t.errors,
        successes=t.successes,
        avg_records=t.records_sum / t.records_n if t.records_n else 0.0,
        avg_duration=t.duration_sum / t.duration_n if t.duration_n else 0.0,
    )


def _latest(kind: str, agent: str, as_of: datetime) -> Select[Any]:
    """One index seek: the run of ``kind`` for ``agent`` that matters at ``as_of``."""
    columns = (AgentRun.agent_name, AgentRun.started_at, AgentRun.completed_at, AgentRun.error)
    query = select(*columns).where(AgentRun.agent_name == agent)
    if kind == "first":
        query = query.where(AgentRun.started_at <= as_of).order_by(AgentRun.started_at.asc())
    else:
        status = COMPLETED if kind == "success" else FAILED
        query = query.where(
            AgentRun.status == status,
            AgentRun.completed_at.is_not(None),
            AgentRun.completed_at <= as_of,
        ).order_by(AgentRun.completed_at.desc())
    inner = query.limit(1).subquery()
    return select(literal(kind).label("kind"), *inner.c)


async def _milestones(
    session: AsyncSession, names: Sequence[str], as_of: datetime
) -> dict[str, _Milestones]:
    parts = [
        _latest(kind, name, as_of) for name in names for kind in ("success", "failure", "first")
    ]
    result: dict[str, _Milestones] = {name: _Milestones() for name in names}
    for kind, name, started, completed, error in (await session.execute(union_all(*parts))).all():
        m = result[name]
        if kind == "success":
            m.last_success_started, m.last_success_completed = _utc(started), _utc(completed)
        elif kind == "failure":
            m.last_failure_at, m.last_error = _utc(completed), error
        else:
            m.first_run_at = _utc(started)
    return result


def _utc(value: datetime | str | None) -> datetime | None:
    """Columns read through a UNION lose their type on SQLite and come back as text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _agent_health(
    name: str,
    stats: WindowStats,
    ms: _Milestones,
    expected: int,
    thresholds: HealthThresholds,
    as_of: datetime,
) -> AgentHealth:
    since = ms.last_success_completed or ms.first_run_at
    metrics = HealthMetrics(
        ever_ran=ms.first_run_at is not None,
        runs_in_window=stats.runs,
        errors_in_window=stats.errors,
        successes_in_window=stats.successes,
        avg_records_per_success=stats.avg_records,
        expected_records_per_run=expected,
        time_since_success=None if since is None else max(as_of - since, timedelta(0)),
    )
    verdict = determine_status(metrics, thresholds)
    last_duration = 0.0
    if ms.last_success_started and ms.last_success_completed:
        last_duration = (ms.last_success_completed - ms.last_success_started).total_seconds()
    return AgentHealth(
        agent_name=name,
        status=verdict.status,
        reasons=verdict.reasons,
        last_successful_run=ms.last_success_completed,
        last_run_duration_seconds=last_duration,
        avg_run_duration_seconds=stats.avg_duration,
        runs_last_24h=stats.runs,
        errors_last_24h=stats.errors,
        error_rate=metrics.error_rate,
        avg_records_per_run=stats.avg_records,
        expected_records_per_run=expected,
        last_failure_at=ms.last_failure_at,
        last_error=ms.last_error,
        checked_at=as_of,
    )
