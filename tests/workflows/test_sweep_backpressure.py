"""A sweep starts no more than ``max_in_flight`` handoffs at once: the finder's count of open
handoffs and the page it trims (SQLite and PostgreSQL), then a handoff sweep that waits for
room and a full cycle that leaves the rest for later, on a real Temporal server."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.handoffs import FindPendingInput, HandoffActivities, PendingPage
from db.models import Handoff
from db.queries.handoffs import count_in_flight
from orchestrator.settings import Settings
from pipeline.handoffs import HandoffPolicy, HandoffStatus, PendingHandoff, StartedPage
from tests.helpers.agents import FakeAgent
from tests.helpers.factories import add, prospect
from tests.helpers.handoffs import (
    ledger,
    record_history,
    running,
    sweep,
    wait_closed,
    wait_until,
    with_handoffs,
)
from workflows.cycle import CycleWorkflow
from workflows.types import CycleInput

Maker = async_sessionmaker[AsyncSession]
POLICY = HandoffPolicy()
LEASE = POLICY.lease_ttl
OTHERS = 900_000
"""Prospect ids of ledger rows seeded as other handoffs in flight."""


def open_row(n: int, status: HandoffStatus, touched: datetime) -> Handoff:
    """A ledger row of another prospect's handoff, last touched at ``touched``."""
    return Handoff(
        id=f"{OTHERS + n}:needs_scoring:{n}",
        prospect_id=OTHERS + n,
        from_state="needs_scoring",
        state_entered_at=touched,
        to_agent="hygiene",
        status=status.value,
        created_at=touched,
        updated_at=touched,
    )


async def in_flight(sessionmaker: Maker, now: datetime) -> int:
    async with sessionmaker() as session:
        return await count_in_flight(session, now - LEASE)


async def find(
    sessionmaker: Maker,
    max_in_flight: int,
    after_id: int | None = None,
    unbegun: list[StartedPage] | None = None,
) -> PendingPage:
    activities = HandoffActivities(
        sessionmaker, POLICY, page_size=50, start_batch=2, max_in_flight=max_in_flight
    )
    found = FindPendingInput(after_id=after_id, unbegun=unbegun or [])
    return await activities.find_pending_handoffs(found)


async def test_open_rows_count_until_their_lease_could_have_expired(sessionmaker: Maker) -> None:
    now = datetime.now(UTC)
    await add(
        sessionmaker,
        *(open_row(i, s, now) for i, s in enumerate(HandoffStatus)),
        open_row(20, HandoffStatus.RUNNING, now - LEASE + timedelta(minutes=1)),
        open_row(21, HandoffStatus.RUNNING, now - LEASE - timedelta(minutes=1)),
        open_row(22, HandoffStatus.STALLED, now - LEASE - timedelta(minutes=1)),
        open_row(23, HandoffStatus.BLOCKED, now - LEASE - timedelta(hours=5)),
    )
    # pending, blocked, running, stalled, the running row still inside a lease, and a
    # handoff blocked for hours (it retries as long as the other agent holds the record);
    # not the finished ones, nor a running or stalled row no live run can hold any more
    assert await in_flight(sessionmaker, now) == 6


def waiting_prospects(n: int) -> list[object]:
    """Prospects 1..n, each waiting for hygiene."""
    return [row for pid in range(1, n + 1) for row in prospect("needs_scoring", pid=pid)]


async def seed(
    sessionmaker: Maker, agent_sessionmaker: Maker, open_status: HandoffStatus, n_open: int
) -> None:
    """Ten prospects waiting for hygiene, and ``n_open`` other handoffs open."""
    now = datetime.now(UTC)
    await add(agent_sessionmaker, *waiting_prospects(10))
    await add(sessionmaker, *(open_row(i, open_status, now) for i in range(n_open)))


async def test_a_page_is_trimmed_to_the_room_left(
    sessionmaker: Maker, agent_sessionmaker: Maker
) -> None:
    await seed(sessionmaker, agent_sessionmaker, HandoffStatus.RUNNING, 3)
    page = await find(sessionmaker, max_in_flight=6)
    assert (page.saturated, page.in_flight, page.max_in_flight) == (False, 3, 6)
    assert [p.prospect_id for p in page.items] == [1, 2, 3]
    assert page.next_cursor == 3
    rest = await find(sessionmaker, max_in_flight=100, after_id=page.next_cursor)
    assert [p.prospect_id for p in rest.items] == list(range(4, 11))


async def test_less_room_than_a_batch_finds_nothing_and_keeps_the_cursor(
    sessionmaker: Maker, agent_sessionmaker: Maker
) -> None:
    await seed(sessionmaker, agent_sessionmaker, HandoffStatus.STALLED, 5)
    page = await find(sessionmaker, max_in_flight=6, after_id=4)
    assert (page.saturated, page.items, page.next_cursor, page.in_flight) == (True, [], 4, 5)


def begun_row(pending: PendingHandoff, status: HandoffStatus) -> Handoff:
    """The ledger row a sweep's child writes when it begins (then finishes)."""
    now = datetime.now(UTC)
    return Handoff(
        id=pending.id,
        prospect_id=pending.prospect_id,
        from_state=pending.from_state,
        state_entered_at=pending.state_entered_at,
        to_agent=pending.to_agent,
        status=status.value,
        created_at=now,
        updated_at=now,
    )


async def test_handoffs_started_and_not_begun_count_until_they_begin(
    sessionmaker: Maker, agent_sessionmaker: Maker
) -> None:
    await add(agent_sessionmaker, *waiting_prospects(10))
    first = await find(sessionmaker, max_in_flight=5)
    assert [p.prospect_id for p in first.items] == [1, 2, 3, 4, 5] and first.found_at
    # the sweep started all five; none has written its ledger row yet
    started = StartedPage(after_id=None, through_id=5, started=5, since=first.found_at)
    page = await find(sessionmaker, 5, after_id=first.next_cursor, unbegun=[started])
    assert (page.saturated, page.in_flight, page.unbegun) == (True, 5, [started])
    # two begin: they count as open rows now, the other three still as not begun
    await add(sessionmaker, *(begun_row(p, HandoffStatus.RUNNING) for p in first.items[:2]))
    page = await find(sessionmaker, 5, after_id=first.next_cursor, unbegun=[started])
    assert (page.saturated, page.in_flight) == (True, 5)
    # those two finish: room for two more
    async with sessionmaker() as session:
        await session.execute(update(Handoff).values(status="completed"))
        await session.commit()
    page = await find(sessionmaker, 5, after_id=first.next_cursor, unbegun=[started])
    assert (page.saturated, page.in_flight) == (False, 3)
    assert [p.prospect_id for p in page.items] == [6, 7]
    # the rest begin and finish: the started page is done with
    await add(sessionmaker, *(begun_row(p, HandoffStatus.COMPLETED) for p in first.items[2:]))
    page = await find(sessionmaker, 5, after_id=first.next_cursor, unbegun=[started])
    assert (page.in_flight, page.unbegun) == (0, [])


async def test_a_started_page_older_than_a_lease_no_longer_counts(
    sessionmaker: Maker, agent_sessionmaker: Maker
) -> None:
    await add(agent_sessionmaker, *waiting_prospects(3))
    # its children were terminated before they began: nothing will ever write their rows
    gone = StartedPage(
        after_id=100, through_id=200, started=50, since=datetime.now(UTC) - LEASE - timedelta(1)
    )
    page = await find(sessionmaker, 5, unbegun=[gone])
    assert (page.saturated, page.in_flight, page.unbegun, len(page.items)) == (False, 0, [], 3)


async def _close_seeded(sessionmaker: Maker) -> None:
    async with sessionmaker() as session:
        await session.execute(
            update(Handoff).where(Handoff.prospect_id >= OTHERS).values(status="completed")
        )
        await session.commit()


async def test_a_handoff_sweep_waits_for_room_and_never_has_more_in_flight(
    client: Client,
    sessionmaker: Maker,
    agent_sessionmaker: Maker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    settings = with_handoffs(
        worker_settings, max_in_flight=3, start_batch=1, saturated_wait=timedelta(milliseconds=200)
    )
    now = datetime.now(UTC)
    await add(sessionmaker, *(open_row(i, HandoffStatus.RUNNING, now) for i in range(3)))
    await add(agent_sessionmaker, *waiting_prospects(8))
    hygiene = agents["hygiene"]
    gate = hygiene.gate = asyncio.Event()
    workflow_id = f"sweep-{uuid.uuid4().hex[:10]}"
    async with running(client, sessionmaker, settings, agents):
        handle = await client.start_workflow(
            CycleWorkflow.run,
            CycleInput(mode="handoffs"),
            id=workflow_id,
            task_queue=settings.temporal.task_queue,
        )

        async def waiting() -> bool:
            detail = (await handle.query(CycleWorkflow.progress)).detail or ""
            return detail.startswith("waiting for room: 3 of 3")

        # three other handoffs are open: nobody is started
        await wait_until(waiting)
        assert hygiene.calls == []
        # they finish: three of ours start, and the agent holding them keeps the sweep waiting
        await _close_seeded(sessionmaker)
        await wait_until(lambda: len(hygiene.calls) == 3)
        await wait_until(waiting)
        await asyncio.sleep(1)  # five more looks for room
        assert len(hygiene.calls) == 3
        gate.set()
        summary = await handle.result()
        for pid in range(1, 9):
            await wait_closed(client, pid)
        await record_history(client, workflow_id, "cycle_handoffs_waiting", settings)
    handoffs = summary.handoffs
    assert handoffs is not None
    assert (handoffs.pending, handoffs.started, handoffs.held_back) == (8, 8, False)
    assert handoffs.waited >= 2
    assert set(hygiene.work.values()) == {1} and len(hygiene.work) == 8


async def test_a_full_cycle_leaves_the_sweep_for_later_when_there_is_no_room(
    client: Client,
    sessionmaker: Maker,
    agent_sessionmaker: Maker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    settings = with_handoffs(worker_settings, max_in_flight=2, start_batch=1)
    now = datetime.now(UTC)
    await add(sessionmaker, *(open_row(i, HandoffStatus.BLOCKED, now) for i in range(2)))
    await add(agent_sessionmaker, *prospect("needs_scoring", pid=1))
    async with running(client, sessionmaker, settings, agents):
        full = await client.execute_workflow(
            CycleWorkflow.run,
            CycleInput(mode="full"),
            id=f"full-{uuid.uuid4().hex[:10]}",
            task_queue=settings.temporal.task_queue,
        )
        assert full.handoffs is not None
        assert (full.handoffs.held_back, full.handoffs.started, full.handoffs.waited) == (
            True,
            0,
            0,
        )
        assert full.report is not None  # the rest of the cycle went on
        assert await ledger(sessionmaker, 1) == []
        await _close_seeded(sessionmaker)
        later = await sweep(client, settings)
        await wait_closed(client, 1)
    assert later.handoffs is not None and later.handoffs.started == 1
    assert agents["hygiene"].work[(1, "needs_scoring")] == 1
