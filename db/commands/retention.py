"""Retention: delete the orchestrator's own old rows in small batches.

Each batch picks at most ``limit`` ids by an indexed key (the migration 0005 adds the indexes
the deletes seek on) and deletes them by primary key; the caller commits after every batch,
so no transaction is long. On PostgreSQL the ids are picked ``FOR UPDATE SKIP LOCKED``: a
row some other transaction holds is left for the next run rather than waited on, so
housekeeping never queues behind an agent or a handoff.

Exactly-once: the ledger's unique state-entry key is what stops a state entry being handed
off twice after Temporal has forgotten the workflow. A finished ledger row is deleted only
when its prospect has left that state entry (``status_changed_at`` moved on) or no longer
exists; the row of the entry a prospect still sits in is kept however old, so the finder's
``not_yet_handed_off`` keeps finding it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.dialect import insert_for
from db.models import (
    Alert,
    Event,
    Handoff,
    Notification,
    OrchestratorAction,
    PipelineReport,
    Prospect,
    RetentionMark,
    StateViolation,
)
from pipeline.handoffs import OPEN_STATUSES


@dataclass(frozen=True)
class PruneRule:
    """What may go from one table: rows matching ``where(cutoff)``, oldest ``key`` first."""

    model: Any
    key: Any
    where: Callable[[datetime], ColumnElement[bool]]
    marked: bool = False
    """Record the highest id deleted in ``retention_marks`` (the event stream reads it)."""


def _finished_and_left(cutoff: datetime) -> ColumnElement[bool]:
    """Finished before ``cutoff``, and its prospect is no longer in that state entry."""
    still_there = exists().where(
        Prospect.id == Handoff.prospect_id,
        Prospect.status_changed_at == Handoff.state_entered_at,
    )
    return (
        (Handoff.finished_at < cutoff) & Handoff.status.not_in(sorted(OPEN_STATUSES)) & ~still_there
    )


def _resolved_alert(cutoff: datetime) -> ColumnElement[bool]:
    """Resolved before ``cutoff`` and no notification refers to it any more (pending and
    given-up notifications are kept, and so are their alerts)."""
    referred = exists().where(Notification.alert_id == Alert.id)
    return (Alert.resolved_at < cutoff) & (Alert.status == "resolved") & ~referred


RULES: dict[str, PruneRule] = {
    "events": PruneRule(Event, Event.created_at, lambda c: Event.created_at < c, marked=True),
    "notifications": PruneRule(
        Notification,
        Notification.created_at,
        lambda c: (Notification.status == "sent") & (Notification.created_at < c),
    ),
    "alerts": PruneRule(Alert, Alert.resolved_at, _resolved_alert),
    "violations": PruneRule(
        StateViolation, StateViolation.resolved_at, lambda c: StateViolation.resolved_at < c
    ),
    "audit": PruneRule(
        OrchestratorAction,
        OrchestratorAction.created_at,
        lambda c: OrchestratorAction.created_at < c,
    ),
    "handoffs": PruneRule(Handoff, Handoff.finished_at, _finished_and_left),
    "reports": PruneRule(
        PipelineReport, PipelineReport.created_at, lambda c: PipelineReport.created_at < c
    ),
}
"""One rule per table named in ``RetentionSettings``."""


def batch_query(table: str, cutoff: datetime, limit: int) -> Select[tuple[Any]]:
    """The ids of the next batch of ``table`` to delete, oldest first by its indexed key."""
    rule = RULES[table]
    pk = rule.model.__mapper__.primary_key[0]
    return select(pk).where(rule.where(cutoff)).order_by(rule.key).limit(limit)


async def prune_batch(
    session: AsyncSession, table: str, cutoff: datetime, limit: int, now: datetime
) -> int:
    """Delete up to ``limit`` rows of ``table`` older than ``cutoff``; how many went. The
    caller commits: one batch, one transaction."""
    rule = RULES[table]
    query = batch_query(table, cutoff, limit)
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=rule.model)
    ids = list(await session.scalars(query))
    if not ids:
        return 0
    pk = rule.model.__mapper__.primary_key[0]
    await session.execute(delete(rule.model).where(pk.in_(ids)))
    if rule.marked:
        await _mark(session, table, max(ids), now)
    return len(ids)


async def _mark(session: AsyncSession, table: str, pruned_through: int, now: datetime) -> None:
    """Raise the table's mark to ``pruned_through``; never lower it (batches go by time,
    not id, so a later batch may hold lower ids)."""
    statement = insert_for(session, RetentionMark).values(
        table_name=table, pruned_through=pruned_through, updated_at=now
    )
    new = statement.excluded.pruned_through
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["table_name"],
            set_={
                "pruned_through": case(
                    (new > RetentionMark.pruned_through, new),
                    else_=RetentionMark.pruned_through,
                ),
                "updated_at": statement.excluded.updated_at,
            },
        )
    )


@dataclass(frozen=True)
class PrunePlan:
    """One housekeeping pass: which tables, kept how long, in what steps."""

    windows: Mapping[str, timedelta]
    """Tables kept for a limited time and for how long (``RetentionSettings.windows()``)."""
    as_of: datetime
    batch_size: int
    batch_pause: timedelta
    max_batches: int
    """Batches in this pass at most, so one call stays short; the caller calls again."""
    max_seconds: float | None = None
    """And no batch starts after this long: a pass stays short however slow the database."""
    busy_share: float = 1.0
    """At most this share of the pass is spent in batches: after a batch that took ``t``
    it pauses ``t * (1 / busy_share - 1)`` (at least ``batch_pause``), so on a busy
    database, where batches take longer, it steps back further by itself."""

    def pause_after(self, took: float) -> float:
        return max(self.batch_pause.total_seconds(), took * (1 / self.busy_share - 1))


@dataclass
class PrunePass:
    removed: dict[str, int] = field(default_factory=dict)
    remaining: list[str] = field(default_factory=list)
    """Tables not finished when the pass ran out of batches (empty: all done)."""
    batches: int = 0


async def prune_tables(
    sessionmaker: async_sessionmaker[AsyncSession],
    plan: PrunePlan,
    tables: Sequence[str],
    on_batch: Callable[[str, int], None] = lambda _t, _n: None,
) -> PrunePass:
    """Prune ``tables`` in order, one transaction per batch, pausing between batches; stop
    after ``plan.max_batches`` and say which tables are left. ``on_batch`` is told after
    every batch (the activity heartbeats there)."""
    result, started = PrunePass(), time.monotonic()
    for i, table in enumerate(tables):
        cutoff = plan.as_of - plan.windows[table]
        result.removed.setdefault(table, 0)
        while True:
            if result.batches >= plan.max_batches or _overdue(plan, started):
                result.remaining = list(tables[i:])
                return result
            began = time.monotonic()
            async with sessionmaker() as session:
                n = await prune_batch(session, table, cutoff, plan.batch_size, plan.as_of)
                await session.commit()
            took = time.monotonic() - began
            result.batches += 1
            result.removed[table] += n
            on_batch(table, n)
            if n < plan.batch_size:
                break
            await asyncio.sleep(plan.pause_after(took))
    return result


def _overdue(plan: PrunePlan, started: float) -> bool:
    return plan.max_seconds is not None and time.monotonic() - started >= plan.max_seconds
