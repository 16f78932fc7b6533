"""SQL of the change feed: live state entries since a time, and recent handoffs per prospect.

The range query reads the ``(status_changed_at, id)`` index of live prospects, so a poll
costs the entries since its lower bound (the overlap window plus what is new), not the table.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Handoff, Prospect
from db.queries.handoffs import not_yet_handed_off, pending_from_rows, trigger_clause
from pipeline.handoffs import PendingHandoff
from pipeline.triggers import HANDOFF_TRIGGERS, HandoffTrigger


@dataclass(frozen=True)
class StateEntries:
    """Pending handoffs among the state entries since a time, oldest first."""

    items: list[PendingHandoff]
    full: bool
    """The limit was reached: more entries may follow the last one."""


def state_entries_query(
    since: datetime,
    limit: int,
    triggers: Mapping[str, HandoffTrigger] = HANDOFF_TRIGGERS,
    agents: Collection[str] | None = None,
    exclude: Collection[int] = (),
) -> Select[tuple[int, str, datetime]]:
    """Live prospects that entered a trigger state at or after ``since``, admitted by its
    trigger and not yet handed off for that entry; ``agents`` keeps only their triggers,
    ``exclude`` leaves out prospects whose handoff was started and has not begun (so a
    burst larger than a page does not read the same first page until they begin)."""
    chosen = [t for t in triggers.values() if agents is None or t.next_agent in agents]
    query = (
        select(Prospect.id, Prospect.status, Prospect.status_changed_at)
        .where(
            Prospect.deleted_at.is_(None),
            Prospect.status_changed_at >= since,
            or_(*(trigger_clause(t) for t in chosen)),
            not_yet_handed_off(),
        )
        .order_by(Prospect.status_changed_at, Prospect.id)
        .limit(limit)
    )
    return query.where(Prospect.id.not_in(sorted(exclude))) if exclude else query


async def find_state_entries(
    session: AsyncSession,
    since: datetime,
    limit: int,
    *,
    agents: Collection[str] | None = None,
    exclude: Collection[int] = (),
    triggers: Mapping[str, HandoffTrigger] = HANDOFF_TRIGGERS,
) -> StateEntries:
    """One statement: the oldest ``limit`` pending state entries since ``since``."""
    query = state_entries_query(since, limit, triggers, agents, exclude)
    items = pending_from_rows((await session.execute(query)).all(), triggers)
    return StateEntries(items=items, full=len(items) >= limit)


async def handoffs_since(
    session: AsyncSession, prospect_ids: Collection[int], since: datetime
) -> dict[int, int]:
    """Ledger rows written since ``since`` per prospect (one grouped query on the
    ``prospect_id`` index): how many hops each one's chains made lately."""
    if not prospect_ids:
        return {}
    rows = await session.execute(
        select(Handoff.prospect_id, func.count())
        .where(Handoff.prospect_id.in_(sorted(prospect_ids)), Handoff.created_at >= since)
        .group_by(Handoff.prospect_id)
    )
    return {pid: int(n) for pid, n in rows.all()}
