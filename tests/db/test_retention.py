"""Retention on both databases: what goes, what stays, and that pruning the ledger never lets
a state entry be handed off twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.commands.retention import PrunePass, PrunePlan, prune_tables
from db.models import (
    Alert,
    Event,
    Handoff,
    Notification,
    OrchestratorAction,
    PipelineReport,
    StateViolation,
)
from db.queries.feed import find_state_entries
from db.queries.handoffs import find_pending_page
from db.queries.retention import pruned_through
from orchestrator.settings import RetentionSettings
from tests.helpers.factories import add, count, finished_handoff, prospect

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=400)
"""Older than every default window."""
RECENT = NOW - timedelta(days=1)
"""Inside every default window."""


def alert(aid: int, *, resolved_at: datetime | None) -> Alert:
    """An alert raised long ago; resolved at ``resolved_at``, or still open."""
    return Alert(
        id=aid,
        fingerprint=f"f{aid}",
        kind="k",
        severity="warning",
        status="open" if resolved_at is None else "resolved",
        message="m",
        first_seen=OLD,
        last_seen=OLD,
        resolved_at=resolved_at,
    )


def notification(alert_id: int, status: str) -> Notification:
    return Notification(
        alert_id=alert_id, sink="log", event="opened", payload={}, status=status, created_at=OLD
    )


async def prune(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: RetentionSettings | None = None,
    *,
    max_batches: int = 1000,
) -> PrunePass:
    windows = (settings or RetentionSettings()).windows()
    plan = PrunePlan(
        windows=windows,
        as_of=NOW,
        batch_size=2,
        batch_pause=timedelta(0),
        max_batches=max_batches,
    )
    return await prune_tables(sessionmaker, plan, list(windows))


async def test_a_prospect_still_in_its_handed_off_entry_is_not_handed_off_again(
    sessionmaker, agent_sessionmaker
) -> None:
    """Prospect 1 entered ``identified`` 400 days ago and was handed off then; every other
    row of its history (an earlier entry's handoff, audit rows, events) is pruned, its
    entry's ledger row is kept, and neither the sweep's finder nor the feed's finds it."""
    await add(
        agent_sessionmaker,
        *prospect("identified", pid=1, entered=OLD),
        *prospect("needs_research", pid=2, entered=RECENT),
    )
    await add(
        sessionmaker,
        finished_handoff(1, "identified", OLD),
        finished_handoff(1, "new", OLD - timedelta(days=10)),  # an entry it has left
        finished_handoff(2, "identified", OLD),  # prospect 2 moved on since
        finished_handoff(3, "identified", OLD),  # prospect 3 no longer exists
        finished_handoff(2, "scored", OLD + timedelta(days=1), status="running"),  # open: kept
        OrchestratorAction(action="handoff_started", prospect_id=1, created_at=OLD),
        Event(dedup_key="e1", kind="handoff_completed", payload={}, created_at=OLD),
    )

    result = await prune(sessionmaker)

    assert result.removed["handoffs"] == 3
    assert (result.removed["audit"], result.removed["events"]) == (1, 1)
    async with sessionmaker() as session:
        rows = await session.scalars(select(Handoff))
        kept = {(h.prospect_id, h.from_state) for h in rows}
        assert kept == {(1, "identified"), (2, "scored")}
        page = await find_pending_page(session, None, 100)
        entries = await find_state_entries(session, OLD - timedelta(days=1), 100)
    assert 1 not in {p.prospect_id for p in page.items}
    assert 1 not in {p.prospect_id for p in entries.items}
    assert {p.prospect_id for p in page.items} == {2}  # the finder still works


async def test_each_table_keeps_what_is_inside_its_window_and_what_is_still_open(
    sessionmaker,
) -> None:
    await add(
        sessionmaker,
        alert(1, resolved_at=OLD),
        alert(2, resolved_at=OLD),
        alert(3, resolved_at=None),
        alert(4, resolved_at=RECENT),
        notification(1, "sent"),
        notification(2, "failed"),
        StateViolation(prospect_id=1, kind="k", first_seen=OLD, last_seen=OLD, resolved_at=OLD),
        StateViolation(prospect_id=2, kind="k", first_seen=OLD, last_seen=OLD),
        PipelineReport(
            kind="daily",
            report_date="2025-01-01",
            window_start=OLD,
            window_end=OLD,
            payload={},
            created_at=OLD,
        ),
        *[Event(dedup_key=f"old{i}", kind="k", payload={}, created_at=OLD) for i in range(5)],
        Event(dedup_key="new", kind="k", payload={}, created_at=RECENT),
    )

    result = await prune(sessionmaker)

    assert result.remaining == [] and "reports" not in result.removed  # 0 = forever
    assert result.removed == {
        "events": 5,
        "notifications": 1,
        "alerts": 1,  # 2 keeps its failed notification, 3 is open, 4 is recent
        "violations": 1,
        "audit": 0,
        "handoffs": 0,
    }
    assert await count(sessionmaker, Alert) == 3
    assert await count(sessionmaker, PipelineReport) == 1
    assert await count(sessionmaker, StateViolation, StateViolation.resolved_at.is_(None)) == 1
    async with sessionmaker() as session:
        mark = await pruned_through(session, "events")
        assert await pruned_through(session, "audit") is None
    newest = await count(sessionmaker, Event, Event.dedup_key == "new")
    assert newest == 1 and mark is not None and mark >= 5


async def test_a_pass_stops_after_its_batches_and_the_next_one_goes_on(sessionmaker) -> None:
    await add(
        sessionmaker,
        *[Event(dedup_key=f"e{i}", kind="k", payload={}, created_at=OLD) for i in range(5)],
    )
    first = await prune(sessionmaker, max_batches=2)
    assert (first.removed, first.remaining, first.batches) == ({"events": 4}, first.remaining, 2)
    assert first.remaining[0] == "events"
    second = await prune(sessionmaker)
    assert second.removed["events"] == 1
    assert await count(sessionmaker, Event) == 0


async def test_a_pass_out_of_time_leaves_the_rest_for_the_next(sessionmaker) -> None:
    await add(sessionmaker, Event(dedup_key="e", kind="k", payload={}, created_at=OLD))
    windows = RetentionSettings().windows()
    plan = PrunePlan(windows, NOW, 2, timedelta(0), max_batches=100, max_seconds=0)
    result = await prune_tables(sessionmaker, plan, list(windows))
    assert (result.batches, result.remaining) == (0, list(windows))
    assert await count(sessionmaker, Event) == 1
