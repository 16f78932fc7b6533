"""The health window's totals per agent, read through the hourly rollup: whole hours that
have a row in ``agent_run_hours`` from there, everything else from ``agent_runs``, in one
statement. Correct whatever the rollup holds (it is kept by db/commands/health_rollup.py):
an hour without a row is simply read from the runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Float,
    Select,
    String,
    Subquery,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.models import AgentRun, AgentRunHour
from db.types import UTCDateTime, seconds_between

HOUR = timedelta(hours=1)
TICK = timedelta(microseconds=1)
"""The resolution of stored times: ``< end + TICK`` is ``<= end``."""
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
SUMS = ("runs", "errors", "successes", "records_sum", "records_n", "duration_sum", "duration_n")


@dataclass
class Totals:
    """One agent's runs over some span, as sums and counts that add across hours."""

    runs: int = 0
    errors: int = 0
    successes: int = 0
    records_sum: int = 0
    records_n: int = 0
    duration_sum: float = 0.0
    duration_n: int = 0

    def add(self, row: Sequence[Any]) -> None:
        for name, value in zip(SUMS, row, strict=True):
            kind = float if name == "duration_sum" else int
            setattr(self, name, getattr(self, name) + kind(value or 0))


async def window_totals(
    session: AsyncSession, names: Sequence[str], start: datetime, end: datetime
) -> dict[str, Totals]:
    """Totals of each agent's runs started in [start, end]: rollup rows for the whole hours
    that have one, ``agent_runs`` for everything else, in one statement."""
    if not names:
        return {}
    first, last = ceil_hour(start), floor_hour(end)
    dialect = session.bind.dialect.name
    query: Select[Any] = _raw_part(names, _pieces(start, end, first, last), dialect)
    if first < last:
        query = union_all(query, _rolled_part(names, first, last))  # type: ignore[assignment]
    totals: dict[str, Totals] = {}
    for name, *sums in (await session.execute(query)).all():
        totals.setdefault(name, Totals()).add(sums)
    return totals


def _pieces(
    start: datetime, end: datetime, first: datetime, last: datetime
) -> list[tuple[datetime, datetime, bool]]:
    """The window as half-open ``started_at`` ranges: the leading part hour, each whole hour
    (flagged: the rollup may hold it) and the trailing part up to and including ``end``."""
    if first >= last:
        return [(start, end + TICK, False)]
    lead = [(start, first, False)] if start < first else []
    whole = [(h, h + HOUR, True) for h in hour_starts(first, last)]
    return [*lead, *whole, (last, end + TICK, False)]


def _raw_part(
    names: Sequence[str], pieces: list[tuple[datetime, datetime, bool]], dialect: str
) -> Select[Any]:
    """Runs in every piece of every agent that no rollup row stands for. The pieces without
    a row are found first, in a subquery planned on its own (``OFFSET 0``: a few hundred
    rows at most), then each piece is one range of the (agent_name, started_at) index."""
    agents = agents_table(names)
    grid = literal_rows(
        "pieces",
        [{"lo": lo, "hi": hi, "whole": whole} for lo, hi, whole in pieces],
        {"lo": UTCDateTime(), "hi": UTCDateTime(), "whole": Boolean()},
    )
    sealed = aliased(AgentRunHour)
    covered = and_(sealed.agent_name == agents.c.agent_name, sealed.hour == grid.c.lo, grid.c.whole)
    open_pieces = (
        select(agents.c.agent_name, grid.c.lo, grid.c.hi)
        .select_from(agents.join(grid, true()).outerjoin(sealed, covered))
        .where(sealed.agent_name.is_(None))
        .offset(0)
        .subquery("open_pieces")
    )
    in_piece = and_(
        AgentRun.agent_name == open_pieces.c.agent_name,
        AgentRun.started_at >= open_pieces.c.lo,
        AgentRun.started_at < open_pieces.c.hi,
    )
    sums = [expr.label(name) for name, expr in run_sums().items()]
    by_agent = select(open_pieces.c.agent_name)
    if dialect != "postgresql":  # SQLite joins by nested loops: one index range per piece
        return (
            by_agent.add_columns(*sums).join(AgentRun, in_piece).group_by(open_pieces.c.agent_name)
        )
    # PostgreSQL cannot estimate ranges that come from a join and would hash every run of
    # the table against the pieces; an aggregate per piece (LATERAL) is one range scan each
    per_piece = select(*sums).where(in_piece).lateral("per_piece")
    return (
        by_agent.add_columns(*(func.sum(per_piece.c[name]) for name in SUMS))
        .join(per_piece, true())
        .group_by(open_pieces.c.agent_name)
    )


def _rolled_part(names: Sequence[str], first: datetime, last: datetime) -> Select[Any]:
    h = AgentRunHour
    return (
        select(
            h.agent_name,
            func.sum(h.runs),
            func.sum(h.errors),
            func.sum(h.successes),
            cast(func.sum(h.records_sum), BigInteger),
            func.sum(h.records_n),
            cast(func.sum(h.duration_sum), Float),
            func.sum(h.duration_n),
        )
        .where(h.agent_name.in_(names), h.hour >= first, h.hour < last)
        .group_by(h.agent_name)
    )


def run_sums() -> dict[str, ColumnElement[Any]]:
    """The health window's aggregates over ``agent_runs``, as sums and counts. Impossible
    values an agent may report (negative counts, ending before it started) are left out of
    the averages, as the all-raw aggregate in activities/health.py leaves them out."""
    completed = AgentRun.status == COMPLETED
    records = func.coalesce(AgentRun.records_processed, 0)
    good_records = completed & (records >= 0)
    good_duration = completed & (AgentRun.completed_at >= AgentRun.started_at)
    duration = seconds_between(AgentRun.started_at, AgentRun.completed_at)
    return {
        "runs": func.count(AgentRun.id),
        "errors": count_if(AgentRun.status == FAILED),
        "successes": count_if(completed),
        "records_sum": cast(func.coalesce(func.sum(case((good_records, records))), 0), BigInteger),
        "records_n": count_if(good_records),
        "duration_sum": cast(func.coalesce(func.sum(case((good_duration, duration))), 0), Float),
        "duration_n": count_if(good_duration),
    }


def count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count(case((condition, 1)))


# --- shared with the rollup's upkeep --------------------------------------------------------------


def agents_table(names: Sequence[str]) -> Subquery:
    return literal_rows("agents", [{"agent_name": n} for n in names], {"agent_name": String()})


def literal_rows(name: str, rows: list[dict[str, Any]], types: dict[str, Any]) -> Subquery:
    """A small table of bound values, as a UNION ALL of one-row SELECTs (SQLite cannot name
    the columns of a VALUES list)."""
    selects = [select(*(literal(v, types[k]).label(k) for k, v in row.items())) for row in rows]
    return (union_all(*selects) if len(selects) > 1 else selects[0]).subquery(name)


def floor_hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(t: datetime) -> datetime:
    floor = floor_hour(t)
    return floor if floor == t else floor + HOUR


def hour_starts(first: datetime, last: datetime) -> list[datetime]:
    """Hour starts in [first, last)."""
    count = max(0, int((last - first) / HOUR))
    return [first + i * HOUR for i in range(count)]
