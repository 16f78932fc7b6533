"""An hourly rollup of ``agent_runs`` for the health window, kept in ``agent_run_hours``.

An hour that is over hardly changes, so each one is summed once per agent (sums and counts,
so hours add up to exactly one aggregate over the window) and the check reads at most 24 rows
per agent plus the runs of the hours not rolled up. A refresh (before each scheduled check)
invalidates sealed hours that changed, seals settled ones, prunes; how late rows are found
and what a refresh cannot see are in docs/ARCHITECTURE.md ("The health rollup").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from db.dialect import insert_for
from db.models import AgentRun, AgentRunHour, AgentRunRollupMark
from db.queries.health_window import (
    HOUR,
    RUNNING,
    agents_table,
    count_if,
    floor_hour,
    hour_starts,
    run_sums,
)
from db.types import UTCDateTime, epoch_hour

LATE_LAG = timedelta(minutes=5)
"""The longest an agent's transaction may hold a run id before committing it."""
RETENTION_MARGIN = timedelta(hours=24)
"""Hours kept beyond the window, for checks judged a little in the past."""
LOCK_KEY = 0x6F72_6368_0000_0001
"""PostgreSQL advisory lock that makes refreshes take turns ("orch" + 1)."""
HourKey = tuple[str, datetime]


@dataclass(frozen=True)
class RollupPolicy:
    window: timedelta
    settle: timedelta

    @property
    def retention(self) -> timedelta:
        return self.window + RETENTION_MARGIN


@dataclass
class RefreshResult:
    skipped: bool = False
    """Another refresh held the lock; this one did nothing."""
    watermark: int | None = None
    invalidated: int = 0
    sealed: int = 0
    pruned: int = 0


async def refresh_rollup(
    session: AsyncSession, names: Sequence[str], policy: RollupPolicy, now: datetime
) -> RefreshResult:
    """Invalidate, seal, prune and mark, as the module docstring says. The caller commits."""
    if not await _take_turn(session):
        return RefreshResult(skipped=True)
    newest_id = await session.scalar(select(func.coalesce(func.max(AgentRun.id), 0)))
    watermark = await _watermark(session)
    lo, hi = floor_hour(now - policy.retention), floor_hour(now - policy.settle)
    result = RefreshResult(watermark=None if watermark is None else watermark[0])
    if watermark is None:
        # nothing tells which sealed hours saw every row: start again from an empty rollup
        result.invalidated = int((await session.execute(delete(AgentRunHour))).rowcount or 0)
    else:
        kept, result.invalidated = await _invalidate(session, names, watermark[0], lo)
        result.sealed = await _seal(session, names, hour_starts(lo, hi), kept, now)
    result.pruned = await _prune(session, lo, None if watermark is None else watermark[1])
    session.add(AgentRunRollupMark(max_run_id=newest_id or 0, recorded_at=now))
    await session.flush()
    return result


async def _take_turn(session: AsyncSession) -> bool:
    """One refresh at a time. Otherwise one could find a late run while another's seal of
    its hour is not yet committed, have nothing to delete, and the seal, committed after,
    would never count the run. PostgreSQL: an advisory lock held to the end of the
    transaction (busy: another refresh is doing the work, this one stands aside). SQLite: a
    first write takes the database's write lock (a concurrent refresh waits for it), so the
    reads that follow see what an earlier refresh committed."""
    if session.bind.dialect.name == "postgresql":
        return bool(await session.scalar(select(func.pg_try_advisory_xact_lock(LOCK_KEY))))
    await session.execute(delete(AgentRunRollupMark).where(AgentRunRollupMark.id < 0))
    return True


async def _watermark(session: AsyncSession) -> tuple[int, datetime] | None:
    """(max run id, recorded at) of the newest mark recorded at least ``LATE_LAG`` before
    the newest mark; None when there is none yet."""
    m = AgentRunRollupMark
    marks = (await session.execute(select(m.max_run_id, m.recorded_at).order_by(m.id))).all()
    if not marks:
        return None
    limit = max(at for _, at in marks) - LATE_LAG
    older = [(run_id, at) for run_id, at in marks if at <= limit]
    return max(older, key=lambda mark: mark[1]) if older else None


async def _invalidate(
    session: AsyncSession, names: Sequence[str], watermark: int, lo: datetime
) -> tuple[set[HourKey], int]:
    """Delete the sealed hours that changed since they were sealed; the sealed hours kept
    and how many were deleted."""
    sealed = await _sealed(session, names, lo)
    late = await _late(session, names, watermark, lo)
    stale = (late | await _finished(session, names, lo, sealed)) & sealed.keys()
    if stale:
        h = AgentRunHour
        await session.execute(delete(h).where(tuple_(h.agent_name, h.hour).in_(list(stale))))
    return sealed.keys() - stale, len(stale)


async def _sealed(session: AsyncSession, names: Sequence[str], lo: datetime) -> dict[HourKey, int]:
    """Sealed (agent, hour) of the span, with the runs that were running when sealed."""
    h = AgentRunHour
    query = select(h.agent_name, h.hour, h.running).where(h.agent_name.in_(names), h.hour >= lo)
    return {(name, hour): running for name, hour, running in await session.execute(query)}


async def _late(
    session: AsyncSession, names: Sequence[str], watermark: int, lo: datetime
) -> set[HourKey]:
    """(agent, hour) of every run past the watermark: the primary key finds them."""
    hour = epoch_hour(AgentRun.started_at)
    query = (
        select(AgentRun.agent_name, hour)
        .where(AgentRun.id > watermark, AgentRun.agent_name.in_(names), AgentRun.started_at >= lo)
        .distinct()
    )
    return {(name, _from_epoch_hour(n)) for name, n in await session.execute(query)}


async def _finished(
    session: AsyncSession,
    names: Sequence[str],
    lo: datetime,
    sealed: dict[HourKey, int],
) -> set[HourKey]:
    """Sealed hours whose running runs are not the number sealed: one finished (or one
    arrived late). The (agent_name, status, ...) index finds the running runs."""
    hour = epoch_hour(AgentRun.started_at)
    query = (
        select(AgentRun.agent_name, hour, func.count())
        .where(
            AgentRun.agent_name.in_(names),
            AgentRun.status == RUNNING,
            AgentRun.started_at >= lo,
        )
        .group_by(AgentRun.agent_name, hour)
    )
    now_running = {
        (name, _from_epoch_hour(n)): count for name, n, count in await session.execute(query)
    }
    return {key for key, running in sealed.items() if now_running.get(key, 0) != running}


async def _seal(
    session: AsyncSession,
    names: Sequence[str],
    hours: list[datetime],
    kept: set[HourKey],
    now: datetime,
) -> int:
    """Seal the (agent, hour) pairs not kept: one statement per hour; how many were sealed."""
    sealed = 0
    for hour in hours:
        missing = [name for name in names if (name, hour) not in kept]
        if missing:
            await session.execute(_seal_statement(session, missing, hour, now))
            sealed += len(missing)
    return sealed


def _seal_statement(
    session: AsyncSession, names: Sequence[str], hour: datetime, now: datetime
) -> Any:
    """INSERT ... SELECT of one hour's sums for ``names`` (zeros for an agent without runs).
    On conflict the newer sums win, so two writers of one hour agree."""
    agents = agents_table(names)
    in_hour = and_(
        AgentRun.agent_name == agents.c.agent_name,
        AgentRun.started_at >= hour,
        AgentRun.started_at < hour + HOUR,
    )
    sums = run_sums()
    body = (
        select(
            agents.c.agent_name,
            literal(hour, UTCDateTime()),
            *sums.values(),
            count_if(AgentRun.status == RUNNING),
            literal(now, UTCDateTime()),
        )
        .select_from(agents.outerjoin(AgentRun, in_hour))
        # SQLite reads an ON after a bare SELECT as a join's; a WHERE ends the SELECT
        .where(agents.c.agent_name.is_not(None))
        .group_by(agents.c.agent_name)
    )
    columns = ["agent_name", "hour", *sums, "running", "sealed_at"]
    insert = insert_for(session, AgentRunHour).from_select(columns, body)
    return insert.on_conflict_do_update(
        index_elements=["agent_name", "hour"],
        set_={name: insert.excluded[name] for name in columns[2:]},
    )


async def _prune(session: AsyncSession, lo: datetime, watermark_at: datetime | None) -> int:
    """Rollup rows older than the span; marks older than the watermark (it stays)."""
    pruned = await session.execute(delete(AgentRunHour).where(AgentRunHour.hour < lo))
    if watermark_at is not None:
        m = AgentRunRollupMark
        await session.execute(delete(m).where(m.recorded_at < watermark_at))
    return int(pruned.rowcount or 0)


# --- helpers --------------------------------------------------------------------------------


def _from_epoch_hour(n: int) -> datetime:
    return datetime.fromtimestamp(int(n) * 3600, UTC)
