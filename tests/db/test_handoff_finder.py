"""The handoff finder and the handoff ledger, on SQLite and PostgreSQL, without Temporal: the
trigger rules as SQL, keyset paging, exactly-once claims, record leases and the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.commands.handoffs import (
    BeginInput,
    BeginResult,
    FinishInput,
    FinishResult,
    begin_handoff,
    finish_handoff,
)
from db.models import Contact, Event, Handoff, OrchestratorAction, Prospect, RecordLock
from db.queries.handoffs import (
    PendingWindow,
    find_pending_page,
    pending_for_prospect,
    why_not_pending,
)
from pipeline.contract import AgentResult, ResultStatus
from pipeline.handoffs import HandoffStatus, PendingHandoff, handoff_workflow_id
from tests.helpers.factories import add, prospect

Maker = async_sessionmaker[AsyncSession]
TTL = timedelta(hours=1)
PAGE = 1000


def ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


async def find(sessionmaker: Maker, after_id: int | None = None, limit: int = PAGE):
    return (await find_window(sessionmaker, after_id, limit)).items


async def find_window(
    sessionmaker: Maker, after_id: int | None = None, limit: int = PAGE
) -> PendingWindow:
    async with sessionmaker() as session:
        return await find_pending_page(session, after_id, limit)


async def for_prospect(sessionmaker: Maker, pid: int) -> PendingHandoff | None:
    async with sessionmaker() as session:
        return await pending_for_prospect(session, pid)


async def why_not(sessionmaker: Maker, pending: PendingHandoff) -> str | None:
    async with sessionmaker() as session:
        return await why_not_pending(session, pending)


async def the_pending(sessionmaker: Maker, pid: int) -> PendingHandoff:
    """The finder's handoff for ``pid`` (it must be there)."""
    found = [p for p in await find(sessionmaker) if p.prospect_id == pid]
    assert len(found) == 1, f"prospect {pid} is not pending"
    return found[0]


async def move(
    sessionmaker: Maker,
    pid: int,
    status: str,
    *,
    tier: str | None = None,
    at: datetime | None = None,
) -> datetime:
    """The prospect enters ``status`` (with ``tier``) at ``at``, as an agent would move it."""
    at = at or datetime.now(UTC)
    async with sessionmaker() as session:
        await session.execute(
            update(Prospect)
            .where(Prospect.id == pid)
            .values(status=status, tier=tier, status_changed_at=at, updated_at=at)
        )
        await session.commit()
    return at


async def set_prospect(sessionmaker: Maker, pid: int, **values: object) -> None:
    async with sessionmaker() as session:
        await session.execute(update(Prospect).where(Prospect.id == pid).values(**values))
        await session.commit()


async def begin(
    sessionmaker: Maker, pending: PendingHandoff, run_id: str = "run-1", *, retry: bool = False
) -> BeginResult:
    async with sessionmaker() as session:
        return await begin_handoff(
            session,
            BeginInput(
                pending=pending,
                workflow_id=handoff_workflow_id(pending.prospect_id),
                run_id=run_id,
                lease_ttl=TTL,
                retry=retry,
            ),
        )


def finish_input(
    pending: PendingHandoff,
    status: HandoffStatus,
    attempt: int = 1,
    *,
    find_next: bool = True,
    run_id: str = "run-1",
) -> FinishInput:
    result_status = ResultStatus.COMPLETED if status is HandoffStatus.COMPLETED else None
    return FinishInput(
        pending=pending,
        workflow_id=handoff_workflow_id(pending.prospect_id),
        attempt=attempt,
        run_id=run_id,
        status=status,
        detail=f"{status.value} by test",
        find_next=find_next,
        result=AgentResult(status=result_status, records_processed=1) if result_status else None,
    )


async def finish(sessionmaker: Maker, input: FinishInput) -> FinishResult:
    async with sessionmaker() as session:
        return await finish_handoff(session, input)


async def ledger(sessionmaker: Maker, pid: int) -> list[Handoff]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Handoff).where(Handoff.prospect_id == pid).order_by(Handoff.created_at)
        )
        return list(rows)


async def locks(sessionmaker: Maker, pid: int) -> list[RecordLock]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(RecordLock).where(RecordLock.prospect_id == pid)))


def flat(*row_lists: list[object]) -> list[object]:
    """All rows, prospects first (one flush per table instead of one per prospect)."""
    rows = [row for rows in row_lists for row in rows]
    return sorted(rows, key=lambda row: not isinstance(row, Prospect))


def foreign_lock(pid: int, agent: str, expires_at: datetime) -> RecordLock:
    return RecordLock(
        prospect_id=pid,
        agent_name=agent,
        run_id="other",
        acquired_at=ago(30),
        expires_at=expires_at,
    )


# --- the trigger rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "tier", "agent"),
    [
        ("identified", None, "hygiene"),
        ("needs_scoring", None, "hygiene"),
        ("scored", "A1", "researcher"),
        ("scored", "A2", "researcher"),
        ("needs_research", None, "researcher"),
        ("research_complete", "A1", "outreach"),
        ("research_complete", "A2", "outreach"),
        ("research_complete", "B", "outreach"),
        ("ready_for_outreach", None, "outreach"),
    ],
    ids=lambda v: str(v),
)
async def test_prospect_in_trigger_state_is_handed_to_the_next_agent(
    sessionmaker, agent_sessionmaker, status, tier, agent
) -> None:
    entered = ago(7)
    await add(agent_sessionmaker, *prospect(status, tier=tier, entered=entered, pid=7))
    expected = PendingHandoff(
        prospect_id=7, from_state=status, state_entered_at=entered, to_agent=agent
    )
    assert await find(sessionmaker) == [expected]
    assert await for_prospect(sessionmaker, 7) == expected


async def test_research_complete_needs_only_one_contact_with_an_email(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(
        agent_sessionmaker,
        *prospect("research_complete", tier="A1", email=None, pid=1),
        Contact(prospect_id=1, name="No mail", email=None),
        Contact(prospect_id=1, name="Bad mail", email="not-an-email"),
        Contact(prospect_id=1, name="Ada", email="ada@example.com"),
    )
    assert [(p.prospect_id, p.to_agent) for p in await find(sessionmaker)] == [(1, "outreach")]


@pytest.mark.parametrize(
    ("status", "tier", "emails"),
    [
        ("scored", "C", ["ceo@example.com"]),
        ("scored", "B", ["ceo@example.com"]),
        ("scored", "D", ["ceo@example.com"]),
        ("scored", None, ["ceo@example.com"]),
        ("research_complete", "C", ["ceo@example.com"]),
        ("research_complete", "A1", []),
        ("research_complete", "A1", [None]),
        ("research_complete", "A1", ["not-an-email"]),
        ("research_complete", "B", ["@example.com"]),
        ("research_complete", "A2", ["ada@"]),
        ("research_complete", "A1", [""]),
        ("in_sequence", "A1", ["ceo@example.com"]),
        ("nurture", "A1", ["ceo@example.com"]),
        ("disqualified", None, ["ceo@example.com"]),
        ("bogus", "A1", ["ceo@example.com"]),
    ],
    ids=[
        "scored-C",
        "scored-B",
        "scored-D",
        "scored-no-tier",
        "research_complete-C",
        "research_complete-no-contact",
        "research_complete-null-email",
        "research_complete-malformed-email",
        "research_complete-no-local-part",
        "research_complete-no-domain",
        "research_complete-empty-email",
        "in_sequence",
        "nurture",
        "disqualified",
        "unknown-state",
    ],
)
async def test_prospect_not_matching_any_trigger_is_not_pending(
    sessionmaker, agent_sessionmaker, status, tier, emails
) -> None:
    contacts = [Contact(prospect_id=1, name="Ada", email=e) for e in emails]
    await add(
        agent_sessionmaker,
        *prospect(status, tier=tier, email=None, pid=1),
        *contacts,
        *prospect("identified", pid=2),  # a control that is pending
    )
    assert [p.prospect_id for p in await find(sessionmaker)] == [2]
    assert await for_prospect(sessionmaker, 1) is None


@pytest.mark.parametrize(
    ("status", "tier"),
    [
        ("identified", None),
        ("needs_scoring", None),
        ("scored", "A1"),
        ("needs_research", None),
        ("research_complete", "A1"),
        ("ready_for_outreach", None),
    ],
    ids=lambda v: str(v),
)
async def test_deleted_prospect_is_never_pending(
    sessionmaker, agent_sessionmaker, status, tier
) -> None:
    await add(agent_sessionmaker, *prospect(status, tier=tier, deleted=True, pid=1))
    assert await find(sessionmaker) == []
    assert await for_prospect(sessionmaker, 1) is None


async def test_pending_for_prospect_agrees_with_the_finder(
    sessionmaker, agent_sessionmaker
) -> None:
    rows = [
        prospect("identified", pid=1),
        prospect("scored", tier="A2", pid=2),
        prospect("scored", tier="C", pid=3),
        prospect("research_complete", tier="B", pid=4),
        prospect("research_complete", tier="B", email=None, pid=5),
        prospect("needs_research", deleted=True, pid=6),
        prospect("in_sequence", pid=7),
        prospect("ready_for_outreach", pid=8),
    ]
    await add(agent_sessionmaker, *flat(*rows))
    found = {p.prospect_id: p for p in await find(sessionmaker)}
    assert sorted(found) == [1, 2, 4, 8]
    for pid in range(1, 10):  # 9 does not exist
        assert await for_prospect(sessionmaker, pid) == found.get(pid), pid


# --- keyset paging -------------------------------------------------------------------------


async def test_keyset_pages_cover_every_pending_prospect_once_in_id_order(
    sessionmaker, agent_sessionmaker
) -> None:
    qualifying = [
        prospect("identified", pid=1 + 3 * k)
        if k % 3 == 0
        else prospect("scored", tier="A1", pid=1 + 3 * k)
        if k % 3 == 1
        else prospect("research_complete", tier="B", pid=1 + 3 * k)
        for k in range(25)
    ]
    noise = [
        prospect("scored", tier="C", pid=2 + 3 * k)
        if k % 2 == 0
        else prospect("identified", deleted=True, pid=2 + 3 * k)
        for k in range(25)
    ] + [prospect("research_complete", tier="A1", email=None, pid=3 + 3 * k) for k in range(25)]
    await add(agent_sessionmaker, *flat(*qualifying, *noise))
    expected = [1 + 3 * k for k in range(25)]

    pages: list[list[int]] = []
    after: int | None = None
    while True:
        window = await find_window(sessionmaker, after, limit=10)
        pages.append([p.prospect_id for p in window.items])
        if window.next_cursor is None:
            break
        assert window.next_cursor >= max(pages[-1], default=0)
        after = window.next_cursor
        assert len(pages) <= 7, "paging does not end"
    # 63 live prospects sit in a trigger state (25 qualify; 13 scored C and 25 without an
    # email do not): windows of 10 of them, each judged once
    assert len(pages) == 7
    assert all(len(page) <= 10 for page in pages)
    assert [pid for page in pages for pid in page] == expected


async def test_a_window_of_prospects_that_do_not_qualify_is_empty_but_not_the_end(
    sessionmaker, agent_sessionmaker
) -> None:
    noise = [prospect("scored", tier="C", pid=pid) for pid in range(1, 6)]
    await add(agent_sessionmaker, *flat(*noise, prospect("identified", pid=9)))

    first = await find_window(sessionmaker, None, limit=5)
    assert first == PendingWindow(items=[], next_cursor=5)
    rest = await find_window(sessionmaker, first.next_cursor, limit=5)
    assert [p.prospect_id for p in rest.items] == [9]
    assert rest.next_cursor is None
    assert await find_window(sessionmaker, 9, limit=5) == PendingWindow(items=[], next_cursor=None)


# --- the ledger: one handoff per entry into a state ----------------------------------------


async def test_claimed_state_entry_is_not_pending_until_the_prospect_moves(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=1), *prospect("identified", pid=2))
    pending = await the_pending(sessionmaker, 1)
    assert (await begin(sessionmaker, pending)).outcome == "leased"

    assert [p.prospect_id for p in await find(sessionmaker)] == [2]
    assert await for_prospect(sessionmaker, 1) is None

    entered = await move(agent_sessionmaker, 1, "scored", tier="A1")
    expected = PendingHandoff(
        prospect_id=1, from_state="scored", state_entered_at=entered, to_agent="researcher"
    )
    assert [p for p in await find(sessionmaker) if p.prospect_id == 1] == [expected]
    assert await for_prospect(sessionmaker, 1) == expected


async def test_re_entering_the_same_state_is_a_new_handoff(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *prospect("needs_scoring", entered=ago(60), pid=1))
    first = await the_pending(sessionmaker, 1)
    await begin(sessionmaker, first)
    await finish(sessionmaker, finish_input(first, HandoffStatus.COMPLETED))
    assert await find(sessionmaker) == []

    entered = await move(agent_sessionmaker, 1, "needs_scoring")
    again = await the_pending(sessionmaker, 1)
    assert again.state_entered_at == entered
    assert again.id != first.id


# --- why_not_pending -----------------------------------------------------------------------


async def test_why_not_pending_is_none_while_the_prospect_still_waits(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *prospect("scored", tier="A1", pid=1))
    assert await why_not(sessionmaker, await the_pending(sessionmaker, 1)) is None


async def test_why_not_pending_says_the_prospect_moved(sessionmaker, agent_sessionmaker) -> None:
    await add(agent_sessionmaker, *prospect("scored", tier="A1", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await move(agent_sessionmaker, 1, "needs_research", tier="A1")
    reason = await why_not(sessionmaker, pending)
    assert reason is not None and "moved" in reason


async def test_why_not_pending_sees_a_status_change_without_a_new_timestamp(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *prospect("scored", tier="A1", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await set_prospect(
        agent_sessionmaker, 1, status="needs_research"
    )  # status_changed_at untouched
    reason = await why_not(sessionmaker, pending)
    assert reason is not None and "moved" in reason


async def test_why_not_pending_says_the_prospect_re_entered_its_state(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *prospect("scored", tier="A1", entered=ago(60), pid=1))
    pending = await the_pending(sessionmaker, 1)
    await move(agent_sessionmaker, 1, "scored", tier="A1")
    reason = await why_not(sessionmaker, pending)
    assert reason is not None and "moved" in reason


async def test_why_not_pending_says_the_prospect_was_deleted(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *prospect("scored", tier="A1", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await set_prospect(agent_sessionmaker, 1, deleted_at=datetime.now(UTC))
    reason = await why_not(sessionmaker, pending)
    assert reason is not None and "deleted" in reason


async def test_why_not_pending_says_the_condition_no_longer_holds(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *prospect("scored", tier="A1", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await set_prospect(agent_sessionmaker, 1, tier="C")
    reason = await why_not(sessionmaker, pending)
    assert reason is not None and "condition" in reason


# --- begin_handoff -------------------------------------------------------------------------


async def test_first_begin_leases_the_record_for_the_target_agent(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *prospect("scored", tier="A1", pid=1))
    pending = await the_pending(sessionmaker, 1)
    before = datetime.now(UTC)
    result = await begin(sessionmaker, pending)
    after = datetime.now(UTC)

    assert (result.outcome, result.attempt, result.holder) == ("leased", 1, None)
    [lock] = await locks(sessionmaker, 1)
    assert (lock.agent_name, lock.run_id) == ("researcher", pending.id)
    assert before + TTL <= lock.expires_at <= after + TTL
    [row] = await ledger(sessionmaker, 1)
    assert (row.id, row.status, row.attempt, row.to_agent, row.workflow_run_id) == (
        pending.id,
        "running",
        1,
        "researcher",
        "run-1",
    )
    assert row.finished_at is None


async def test_begin_retried_by_the_same_run_is_leased_again(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await begin(sessionmaker, pending, "run-1")
    again = await begin(sessionmaker, pending, "run-1")
    assert (again.outcome, again.attempt) == ("leased", 1)
    rows = await ledger(sessionmaker, 1)
    assert [(r.status, r.attempt) for r in rows] == [("running", 1)]
    assert [lk.run_id for lk in await locks(sessionmaker, 1)] == [pending.id]


async def test_new_run_takes_over_an_open_handoff_with_the_next_attempt(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await begin(sessionmaker, pending, "run-1")
    taken = await begin(sessionmaker, pending, "run-2")
    assert (taken.outcome, taken.attempt) == ("leased", 2)
    [row] = await ledger(sessionmaker, 1)
    assert (row.status, row.attempt, row.workflow_run_id) == ("running", 2, "run-2")
    assert [(lk.agent_name, lk.run_id) for lk in await locks(sessionmaker, 1)] == [
        ("hygiene", pending.id)
    ]


async def test_late_finish_of_an_abandoned_run_changes_nothing(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await begin(sessionmaker, pending, "run-1")
    await begin(sessionmaker, pending, "run-2")
    await finish(sessionmaker, finish_input(pending, HandoffStatus.FAILED, run_id="run-1"))
    [row] = await ledger(sessionmaker, 1)
    assert (row.status, row.finished_at, row.workflow_run_id) == ("running", None, "run-2")
    assert [lk.run_id for lk in await locks(sessionmaker, 1)] == [pending.id]


async def test_completed_handoff_never_triggers_twice(sessionmaker, agent_sessionmaker) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await begin(sessionmaker, pending, "run-1")
    await finish(sessionmaker, finish_input(pending, HandoffStatus.COMPLETED))
    for run_id, retry in (("run-2", False), ("run-3", True)):
        result = await begin(sessionmaker, pending, run_id, retry=retry)
        assert result.outcome == "done", run_id
    [row] = await ledger(sessionmaker, 1)
    assert (row.status, row.attempt, row.workflow_run_id) == ("completed", 1, "run-1")
    assert await locks(sessionmaker, 1) == []


async def test_failed_handoff_is_begun_again_only_when_retried(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await begin(sessionmaker, pending, "run-1")
    await finish(sessionmaker, finish_input(pending, HandoffStatus.FAILED))

    assert (await begin(sessionmaker, pending, "run-2")).outcome == "done"
    [row] = await ledger(sessionmaker, 1)
    assert (row.status, row.attempt) == ("failed", 1)

    retried = await begin(sessionmaker, pending, "run-3", retry=True)
    assert (retried.outcome, retried.attempt) == ("leased", 2)
    [row] = await ledger(sessionmaker, 1)
    assert (row.status, row.attempt, row.workflow_run_id) == ("running", 2, "run-3")
    assert row.finished_at is None
    assert [lk.run_id for lk in await locks(sessionmaker, 1)] == [pending.id]


async def test_lease_held_by_another_agent_blocks_the_handoff(
    sessionmaker, agent_sessionmaker
) -> None:
    expires = datetime.now(UTC) + timedelta(minutes=10)
    await add(
        agent_sessionmaker, *prospect("identified", pid=1), foreign_lock(1, "researcher", expires)
    )
    pending = await the_pending(sessionmaker, 1)
    result = await begin(sessionmaker, pending)
    assert (result.outcome, result.holder) == ("blocked", "researcher")
    [row] = await ledger(sessionmaker, 1)
    assert row.status == "blocked"
    [lock] = await locks(sessionmaker, 1)
    assert (lock.agent_name, lock.run_id, lock.expires_at) == ("researcher", "other", expires)


async def test_expired_lease_of_another_agent_is_taken_over(
    sessionmaker, agent_sessionmaker
) -> None:
    expired = datetime.now(UTC) - timedelta(minutes=1)
    await add(
        agent_sessionmaker, *prospect("identified", pid=1), foreign_lock(1, "researcher", expired)
    )
    pending = await the_pending(sessionmaker, 1)
    result = await begin(sessionmaker, pending)
    assert (result.outcome, result.attempt) == ("leased", 1)
    [lock] = await locks(sessionmaker, 1)
    assert (lock.agent_name, lock.run_id) == ("hygiene", pending.id)
    assert lock.expires_at > datetime.now(UTC)
    [row] = await ledger(sessionmaker, 1)
    assert row.status == "running"


async def test_prospect_that_moved_before_begin_is_superseded(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *prospect("scored", tier="A1", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await move(agent_sessionmaker, 1, "disqualified")
    result = await begin(sessionmaker, pending)
    assert result.outcome == "superseded"
    assert result.reason is not None and "moved" in result.reason
    [row] = await ledger(sessionmaker, 1)
    assert (row.id, row.status) == (pending.id, "superseded")
    assert row.finished_at is not None
    assert await locks(sessionmaker, 1) == []


async def test_blocked_handoff_whose_prospect_moved_is_closed_as_superseded(
    sessionmaker, agent_sessionmaker
) -> None:
    expires = datetime.now(UTC) + timedelta(minutes=10)
    await add(
        agent_sessionmaker, *prospect("identified", pid=1), foreign_lock(1, "researcher", expires)
    )
    pending = await the_pending(sessionmaker, 1)
    assert (await begin(sessionmaker, pending, "run-1")).outcome == "blocked"
    # the lease holder moves the prospect; the blocked workflow run tries again on its timer
    await move(agent_sessionmaker, 1, "disqualified")
    assert (await begin(sessionmaker, pending, "run-1")).outcome == "superseded"
    [row] = await ledger(sessionmaker, 1)
    assert row.status == "superseded"
    assert row.finished_at is not None


# --- finish_handoff ------------------------------------------------------------------------


async def test_finish_releases_its_own_lease(sessionmaker, agent_sessionmaker) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await begin(sessionmaker, pending)
    await finish(sessionmaker, finish_input(pending, HandoffStatus.COMPLETED))
    assert await locks(sessionmaker, 1) == []


async def test_finish_leaves_a_lease_held_by_another_run_alone(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await begin(sessionmaker, pending)
    async with sessionmaker() as session:  # our lease lapsed and another agent took it
        await session.execute(
            update(RecordLock)
            .where(RecordLock.prospect_id == 1)
            .values(agent_name="researcher", run_id="other")
        )
        await session.commit()
    await finish(sessionmaker, finish_input(pending, HandoffStatus.COMPLETED))
    assert [(lk.agent_name, lk.run_id) for lk in await locks(sessionmaker, 1)] == [
        ("researcher", "other")
    ]


@pytest.mark.parametrize(
    ("status", "action"),
    [(HandoffStatus.COMPLETED, "handoff_executed"), (HandoffStatus.FAILED, "handoff_failed")],
    ids=["completed", "failed"],
)
async def test_finish_audits_once_even_when_repeated(
    sessionmaker, agent_sessionmaker, status, action
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await begin(sessionmaker, pending)
    done = finish_input(pending, status)
    await finish(sessionmaker, done)
    await finish(sessionmaker, done)

    [row] = await ledger(sessionmaker, 1)
    assert (row.status, row.detail) == (status.value, done.detail)
    assert row.finished_at is not None
    async with sessionmaker() as session:
        actions = list(await session.scalars(select(OrchestratorAction)))
        events = list(await session.scalars(select(Event)))
    assert [(a.action, a.prospect_id, a.agent_name) for a in actions] == [(action, 1, "hygiene")]
    assert actions[0].details is not None and actions[0].details["handoff_id"] == pending.id
    assert [(e.kind, e.agent_name) for e in events] == [(f"handoff_{status.value}", "hygiene")]
    assert events[0].payload["prospect_id"] == 1


async def test_finish_returns_the_next_handoff_when_the_prospect_moved_into_a_trigger(
    sessionmaker,
    agent_sessionmaker,
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await begin(sessionmaker, pending)
    entered = await move(agent_sessionmaker, 1, "scored", tier="A1")
    result = await finish(sessionmaker, finish_input(pending, HandoffStatus.COMPLETED))
    assert result.next == PendingHandoff(
        prospect_id=1, from_state="scored", state_entered_at=entered, to_agent="researcher"
    )


async def test_finish_replayed_after_a_lost_workflow_task_returns_the_entry_it_claimed(
    sessionmaker,
    agent_sessionmaker,
) -> None:
    """A worker dies after finishing one hop and claiming the next in one workflow task; the
    task is run again elsewhere and finishes the first hop again: it must get the same next
    handoff back (its own open claim), or the claimed entry stays open with nobody on it."""
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await begin(sessionmaker, pending)
    await move(agent_sessionmaker, 1, "scored", tier="A1")
    first = await finish(sessionmaker, finish_input(pending, HandoffStatus.COMPLETED))
    assert first.next is not None and first.closed
    assert (await begin(sessionmaker, first.next)).outcome == "leased"

    again = await finish(sessionmaker, finish_input(pending, HandoffStatus.COMPLETED))
    assert (again.next, again.closed) == (first.next, False)
    assert (await begin(sessionmaker, again.next)).outcome == "leased"
    other_run = finish_input(pending, HandoffStatus.COMPLETED, run_id="run-2")
    assert (await finish(sessionmaker, other_run)).next is None  # another run's claim


@pytest.mark.parametrize(
    ("moved_to", "tier", "status", "find_next"),
    [
        (None, None, HandoffStatus.COMPLETED, True),
        ("scored", "C", HandoffStatus.COMPLETED, True),
        ("disqualified", None, HandoffStatus.COMPLETED, True),
        ("scored", "A1", HandoffStatus.FAILED, True),
        ("scored", "A1", HandoffStatus.COMPLETED, False),
    ],
    ids=["did-not-move", "scored-C", "disqualified", "failed", "chain-limit"],
)
async def test_finish_returns_no_next_handoff_otherwise(
    sessionmaker, agent_sessionmaker, moved_to, tier, status, find_next
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    pending = await the_pending(sessionmaker, 1)
    await begin(sessionmaker, pending)
    if moved_to is not None:
        await move(agent_sessionmaker, 1, moved_to, tier=tier)
    result = await finish(sessionmaker, finish_input(pending, status, find_next=find_next))
    assert result.next is None


# --- set-based ----------------------------------------------------------------------------


async def test_finder_issues_two_statements_whatever_the_number_of_prospects(
    engine: AsyncEngine, sessionmaker, agent_sessionmaker
) -> None:
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    async def statements_for(first_pid: int, n: int) -> tuple[int, int]:
        rows = [
            prospect("research_complete", tier="A2", pid=pid)
            if pid % 2
            else prospect("scored", tier="A1", pid=pid)
            for pid in range(first_pid, first_pid + n)
        ]
        await add(agent_sessionmaker, *flat(*rows))
        statements.clear()
        event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            page = await find(sessionmaker, None, limit=5000)
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", record)
        return len(statements), len(page)

    small = await statements_for(1, 20)
    large = await statements_for(21, 1980)
    assert small == (2, 20)
    assert large == (2, 2000)
