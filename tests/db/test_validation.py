"""State validation on SQLite and PostgreSQL: every kind of violation with its negative twin,
one open row per prospect and kind, closing what no longer holds, the alert threshold, sweeps by
id ranges, a statement count that does not grow with the data, and real ``validate`` cycles."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, event, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from db.commands.validation import (
    RULES,
    VIOLATIONS_ALERT,
    ClosedViolations,
    close_sweep,
    record_range,
)
from db.models import Activity, Alert, Contact, OutreachSequence, Prospect, StateViolation
from orchestrator.settings import Settings, ValidationSettings
from pipeline.validation import ValidationRules, ViolationKind
from tests.helpers.factories import add, ledger_entry, prospect
from tests.helpers.handoffs import record_history
from worker import build_worker
from workflows.cycle import CycleWorkflow
from workflows.types import CycleInput, ValidationSummary

Maker = async_sessionmaker[AsyncSession]
K = ViolationKind
EVERYWHERE = (0, 10**9)
NO_VIOLATIONS = {kind.value: 0 for kind in ViolationKind}


def rules(**overrides: object) -> ValidationRules:
    return ValidationSettings(**overrides).rules()  # type: ignore[arg-type]


def flat(*row_lists: list[object]) -> list[object]:
    """All rows, prospects first (children reference them), one flush per table."""
    rows = [row for rows in row_lists for row in rows]
    return sorted(rows, key=lambda row: (not isinstance(row, Prospect), type(row).__name__))


async def sweep(
    sessionmaker: Maker,
    now: datetime,
    the_rules: ValidationRules | None = None,
    ranges: list[tuple[int, int]] | None = None,
) -> tuple[dict[str, int], ClosedViolations]:
    """What a ``validate`` cycle does: every range at one instant, then the close."""
    the_rules = the_rules or rules()
    found: Counter[str] = Counter()
    async with sessionmaker() as session:
        for low, high in ranges or [EVERYWHERE]:
            found.update(await record_range(session, the_rules, low, high, now))
        closed = await close_sweep(session, the_rules, now)
    return {kind.value: found[kind.value] for kind in ViolationKind}, closed


async def violations(sessionmaker: Maker, *, open_only: bool = False) -> list[StateViolation]:
    async with sessionmaker() as session:
        query = select(StateViolation).order_by(StateViolation.prospect_id, StateViolation.id)
        if open_only:
            query = query.where(StateViolation.resolved_at.is_(None))
        return list(await session.scalars(query))


async def open_kinds(sessionmaker: Maker) -> dict[int, set[str]]:
    kinds: dict[int, set[str]] = {}
    for v in await violations(sessionmaker, open_only=True):
        kinds.setdefault(v.prospect_id, set()).add(v.kind)
    return kinds


async def set_prospect(sessionmaker: Maker, pid: int, **values: object) -> None:
    async with sessionmaker() as session:
        await session.execute(update(Prospect).where(Prospect.id == pid).values(**values))
        await session.commit()


# --- each kind of violation and its negative twin ------------------------------------------
#
# Every builder makes one prospect that breaks exactly one rule (positive) or none at all
# (negative): in particular both stay inside the dropped-handoff grace and the dwell times.

Rows = list[object]


def moved(pid: int, at: datetime, *moves: tuple[str, str]) -> Rows:
    """Status changes, one second apart, the last one at ``at``."""
    return [
        Activity(
            prospect_id=pid,
            type="status_change",
            details={"from": src, "to": dst},
            created_at=at - timedelta(seconds=len(moves) - 1 - i),
        )
        for i, (src, dst) in enumerate(moves)
    ]


def researched(pid: int, at: datetime) -> Activity:
    return Activity(prospect_id=pid, type="research_completed", created_at=at, details={})


def sequence(pid: int, status: str, at: datetime) -> OutreachSequence:
    done = None if status == "active" else at
    return OutreachSequence(prospect_id=pid, status=status, started_at=at, completed_at=done)


def illegal_move(pid: int, now: datetime) -> Rows:
    at = now - timedelta(minutes=1)
    return [
        *prospect("research_complete", tier="C", entered=at, pid=pid),
        researched(pid, at),
        *moved(pid, at, ("identified", "research_complete")),
    ]


def legal_moves(pid: int, now: datetime) -> Rows:
    at = now - timedelta(minutes=1)
    return [
        *prospect("research_complete", tier="C", entered=at, pid=pid),
        researched(pid, at),
        *moved(
            pid,
            at,
            ("identified", "scored"),
            ("scored", "needs_research"),
            ("needs_research", "research_complete"),
        ),
    ]


def unknown_state(pid: int, now: datetime) -> Rows:
    return prospect("bogus", entered=now - timedelta(minutes=1), pid=pid)


def known_state(pid: int, now: datetime) -> Rows:
    return prospect("nurture", tier="C", entered=now - timedelta(days=1), pid=pid)


def stuck(pid: int, now: datetime) -> Rows:
    entered = now - timedelta(days=31)  # in_sequence may last 30 days
    return [
        *prospect("in_sequence", tier="A1", entered=entered, pid=pid),
        sequence(pid, "active", entered),
    ]


def within_dwell(pid: int, now: datetime) -> Rows:
    entered = now - timedelta(days=29)
    return [
        *prospect("in_sequence", tier="A1", entered=entered, pid=pid),
        sequence(pid, "active", entered),
    ]


def dropped(pid: int, now: datetime) -> Rows:
    return prospect("identified", entered=now - timedelta(minutes=30), pid=pid)


def handed_off(pid: int, now: datetime) -> Rows:
    entered = now - timedelta(minutes=30)
    return [
        *prospect("identified", entered=entered, pid=pid),
        ledger_entry(pid, "identified", status="running", at=entered, entered=entered),
    ]


def scored_without_tier(pid: int, now: datetime) -> Rows:
    return prospect("scored", tier=None, entered=now - timedelta(minutes=1), pid=pid)


def scored_with_tier(pid: int, now: datetime) -> Rows:
    return prospect("scored", tier="C", entered=now - timedelta(minutes=1), pid=pid)


def research_without_activity(pid: int, now: datetime) -> Rows:
    return prospect("research_complete", tier="C", entered=now - timedelta(minutes=1), pid=pid)


def research_with_activity(pid: int, now: datetime) -> Rows:
    at = now - timedelta(minutes=1)
    return [*prospect("research_complete", tier="C", entered=at, pid=pid), researched(pid, at)]


def sequence_not_active(pid: int, now: datetime) -> Rows:
    at = now - timedelta(minutes=1)
    return [
        *prospect("in_sequence", tier="A1", entered=at, pid=pid),
        sequence(pid, "completed", at - timedelta(days=40)),
    ]


def sequence_active(pid: int, now: datetime) -> Rows:
    at = now - timedelta(minutes=1)
    return [*prospect("in_sequence", tier="A1", entered=at, pid=pid), sequence(pid, "active", at)]


def ready_without_email(pid: int, now: datetime) -> Rows:
    at = now - timedelta(minutes=1)
    return [
        *prospect("ready_for_outreach", tier="A1", email=None, entered=at, pid=pid),
        Contact(prospect_id=pid, name="No mail", email=None),
        Contact(prospect_id=pid, name="Bad mail", email="not-an-email"),
    ]


def ready_with_email(pid: int, now: datetime) -> Rows:
    at = now - timedelta(minutes=1)
    return prospect("ready_for_outreach", tier="A1", entered=at, pid=pid)


Builder = Callable[[int, datetime], Rows]
CASES: dict[ViolationKind, tuple[Builder, Builder]] = {
    K.ILLEGAL_TRANSITION: (illegal_move, legal_moves),
    K.UNKNOWN_STATE: (unknown_state, known_state),
    K.STUCK: (stuck, within_dwell),
    K.DROPPED_HANDOFF: (dropped, handed_off),
    K.SCORED_WITHOUT_TIER: (scored_without_tier, scored_with_tier),
    K.RESEARCH_WITHOUT_ACTIVITY: (research_without_activity, research_with_activity),
    K.SEQUENCE_WITHOUT_ACTIVE: (sequence_not_active, sequence_active),
    K.OUTREACH_WITHOUT_EMAIL: (ready_without_email, ready_with_email),
}
EXPECTED_STATE = {
    K.ILLEGAL_TRANSITION: "research_complete",
    K.UNKNOWN_STATE: "bogus",
    K.STUCK: "in_sequence",
    K.DROPPED_HANDOFF: "identified",
    K.SCORED_WITHOUT_TIER: "scored",
    K.RESEARCH_WITHOUT_ACTIVITY: "research_complete",
    K.SEQUENCE_WITHOUT_ACTIVE: "in_sequence",
    K.OUTREACH_WITHOUT_EMAIL: "ready_for_outreach",
}


def test_every_kind_of_violation_has_a_case_and_a_rule() -> None:
    assert set(CASES) == set(ViolationKind) == set(RULES)


@pytest.mark.parametrize("kind", list(ViolationKind), ids=str)
async def test_violation_is_recorded(sessionmaker, agent_sessionmaker, kind: ViolationKind) -> None:
    now = datetime.now(UTC)
    positive, _ = CASES[kind]
    await add(agent_sessionmaker, *flat(positive(7, now)))
    found, closed = await sweep(sessionmaker, now)
    assert found == {**NO_VIOLATIONS, kind.value: 1}
    [row] = await violations(sessionmaker)
    assert (row.prospect_id, row.kind, row.state) == (7, kind.value, EXPECTED_STATE[kind])
    assert (row.first_seen, row.last_seen, row.resolved_at) == (now, now, None)
    assert row.detail
    assert (closed.open_total, closed.open_by_kind, closed.resolved) == (1, {kind.value: 1}, 0)


@pytest.mark.parametrize("kind", list(ViolationKind), ids=str)
async def test_negative_twin_is_not_flagged(
    sessionmaker, agent_sessionmaker, kind: ViolationKind
) -> None:
    now = datetime.now(UTC)
    positive, negative = CASES[kind]
    await add(agent_sessionmaker, *flat(negative(7, now), positive(8, now)))  # 8: a control
    found, closed = await sweep(sessionmaker, now)
    assert found == {**NO_VIOLATIONS, kind.value: 1}
    assert await open_kinds(sessionmaker) == {8: {kind.value}}
    assert closed.open_total == 1


async def test_illegal_move_names_the_move(sessionmaker, agent_sessionmaker) -> None:
    now = datetime.now(UTC)
    await add(agent_sessionmaker, *flat(illegal_move(7, now)))
    await sweep(sessionmaker, now)
    [row] = await violations(sessionmaker)
    assert "identified -> research_complete" in (row.detail or "")


async def test_illegal_move_outside_the_lookback_or_after_the_sweep_is_not_flagged(
    sessionmaker,
    agent_sessionmaker,
) -> None:
    now = datetime.now(UTC)
    old, later = now - timedelta(days=8), now + timedelta(minutes=1)
    await add(
        agent_sessionmaker,
        *flat(legal_moves(1, now), legal_moves(2, now)),
        *moved(1, old, ("identified", "research_complete")),
        *moved(2, later, ("identified", "research_complete")),
    )
    found, _ = await sweep(sessionmaker, now)
    assert found == NO_VIOLATIONS
    found, _ = await sweep(sessionmaker, now, rules(transition_lookback=timedelta(days=9)))
    assert found == {**NO_VIOLATIONS, K.ILLEGAL_TRANSITION.value: 1}
    assert await open_kinds(sessionmaker) == {1: {K.ILLEGAL_TRANSITION.value}}


async def test_terminal_states_are_never_stuck_and_dwell_times_can_be_overridden(
    sessionmaker,
    agent_sessionmaker,
) -> None:
    now = datetime.now(UTC)
    long_ago = now - timedelta(days=400)
    await add(
        agent_sessionmaker,
        *flat(
            *(
                prospect(s, tier="A1", entered=long_ago, pid=i)
                for i, s in enumerate(["meeting_booked", "closed_lost", "disqualified"], 1)
            ),
            stuck(4, now),
        ),
    )
    found, _ = await sweep(sessionmaker, now)
    assert found == {**NO_VIOLATIONS, K.STUCK.value: 1}
    assert await open_kinds(sessionmaker) == {4: {K.STUCK.value}}
    found, closed = await sweep(
        sessionmaker, now + timedelta(seconds=1), rules(dwell={"in_sequence": timedelta(days=60)})
    )
    assert found == NO_VIOLATIONS
    assert (closed.resolved, closed.open_total) == (1, 0)


async def test_a_handoff_waiting_within_its_grace_is_not_dropped(
    sessionmaker, agent_sessionmaker
) -> None:
    now = datetime.now(UTC)
    await add(
        agent_sessionmaker,
        *flat(
            prospect("identified", entered=now - timedelta(minutes=5), pid=1),
            prospect("scored", tier="C", entered=now - timedelta(hours=1), pid=2),
            dropped(3, now),
        ),
    )
    found, _ = await sweep(sessionmaker, now)
    assert found == {**NO_VIOLATIONS, K.DROPPED_HANDOFF.value: 1}
    assert await open_kinds(sessionmaker) == {3: {K.DROPPED_HANDOFF.value}}


# --- one open row per prospect and kind ------------------------------------------------------


async def test_seen_again_keeps_one_open_row_and_refreshes_last_seen(
    sessionmaker, agent_sessionmaker
) -> None:
    first = datetime.now(UTC)
    second = first + timedelta(minutes=1)
    await add(
        agent_sessionmaker, *flat(scored_without_tier(7, first), ready_without_email(8, first))
    )
    found_first, _ = await sweep(sessionmaker, first)
    found_second, closed = await sweep(sessionmaker, second)
    expected = {**NO_VIOLATIONS, K.SCORED_WITHOUT_TIER.value: 1, K.OUTREACH_WITHOUT_EMAIL.value: 1}
    assert found_first == found_second == expected
    rows = await violations(sessionmaker)
    assert [(r.prospect_id, r.first_seen, r.last_seen, r.resolved_at) for r in rows] == [
        (7, first, second, None),
        (8, first, second, None),
    ]
    assert (closed.resolved, closed.open_total) == (0, 2)


async def test_a_prospect_breaking_two_rules_has_one_open_row_per_kind(
    sessionmaker, agent_sessionmaker
) -> None:
    t1 = datetime.now(UTC)
    t2 = t1 + timedelta(minutes=1)
    await add(agent_sessionmaker, *prospect("scored", entered=t1 - timedelta(days=2), pid=7))
    for at in (t1, t2):
        found, closed = await sweep(sessionmaker, at)
        assert found == {**NO_VIOLATIONS, K.STUCK.value: 1, K.SCORED_WITHOUT_TIER.value: 1}
        assert (closed.open_total, closed.resolved) == (2, 0)
    rows = await violations(sessionmaker)
    assert sorted((r.kind, r.first_seen, r.last_seen) for r in rows) == [
        (K.SCORED_WITHOUT_TIER.value, t1, t2),
        (K.STUCK.value, t1, t2),
    ]


async def test_fixed_record_closes_its_violation_and_a_new_one_opens_a_new_row(
    sessionmaker,
    agent_sessionmaker,
) -> None:
    t1 = datetime.now(UTC)
    t2, t3 = t1 + timedelta(minutes=1), t1 + timedelta(minutes=2)
    await add(agent_sessionmaker, *flat(scored_without_tier(7, t1), scored_without_tier(8, t1)))
    await sweep(sessionmaker, t1)
    await set_prospect(agent_sessionmaker, 7, tier="B")
    found, closed = await sweep(sessionmaker, t2)
    assert found == {**NO_VIOLATIONS, K.SCORED_WITHOUT_TIER.value: 1}
    assert (closed.resolved, closed.open_total) == (1, 1)
    rows = {r.prospect_id: r for r in await violations(sessionmaker)}
    assert (rows[7].resolved_at, rows[7].last_seen) == (t2, t1)
    assert (rows[8].resolved_at, rows[8].last_seen) == (None, t2)
    await set_prospect(agent_sessionmaker, 7, tier=None)  # broken again: a new occurrence
    _, closed = await sweep(sessionmaker, t3)
    assert (closed.resolved, closed.open_total) == (0, 2)
    sevens = [r for r in await violations(sessionmaker) if r.prospect_id == 7]
    assert [(r.first_seen, r.resolved_at) for r in sevens] == [(t1, t2), (t3, None)]


@pytest.mark.parametrize("how", ["soft", "hard"])
async def test_deleted_prospects_are_ignored_and_their_violations_close(
    sessionmaker, agent_sessionmaker, how: str
) -> None:
    t1 = datetime.now(UTC)
    t2 = t1 + timedelta(minutes=1)
    await add(
        agent_sessionmaker,
        *flat(
            prospect("scored", tier=None, email=None, pid=7),
            prospect("bogus", email=None, deleted=True, pid=8),
            prospect("ready_for_outreach", email=None, deleted=True, pid=9),
        ),
    )
    found, _ = await sweep(sessionmaker, t1)
    assert found == {**NO_VIOLATIONS, K.SCORED_WITHOUT_TIER.value: 1}
    async with agent_sessionmaker() as session:
        if how == "soft":
            await session.execute(update(Prospect).where(Prospect.id == 7).values(deleted_at=t2))
        else:
            await session.execute(delete(Prospect).where(Prospect.id == 7))
        await session.commit()
    found, closed = await sweep(sessionmaker, t2)
    assert found == NO_VIOLATIONS
    assert (closed.resolved, closed.open_total) == (1, 0)
    [row] = await violations(sessionmaker)
    assert (row.prospect_id, row.resolved_at) == (7, t2)


# --- the alert ---------------------------------------------------------------------------------


async def alerts(sessionmaker: Maker) -> list[Alert]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Alert).where(Alert.fingerprint == VIOLATIONS_ALERT).order_by(Alert.id)
        )
        return list(rows)


async def test_alert_opens_above_the_threshold_and_resolves_when_back_under(
    sessionmaker, agent_sessionmaker
) -> None:
    t = [datetime.now(UTC) + timedelta(minutes=i) for i in range(4)]
    few = rules(alert_threshold=2)
    await add(agent_sessionmaker, *flat(*(scored_without_tier(pid, t[0]) for pid in (1, 2))))
    _, at_threshold = await sweep(sessionmaker, t[0], few)
    assert (at_threshold.open_total, at_threshold.alert) == (2, "unchanged")
    assert await alerts(sessionmaker) == []

    await add(agent_sessionmaker, *flat(ready_without_email(3, t[1])))
    _, above = await sweep(sessionmaker, t[1], few)
    assert (above.open_total, above.alert) == (3, "created")
    [alert] = await alerts(sessionmaker)
    assert (alert.status, alert.kind, alert.count) == ("open", VIOLATIONS_ALERT, 1)
    assert alert.details == {
        "open_by_kind": {K.SCORED_WITHOUT_TIER.value: 2, K.OUTREACH_WITHOUT_EMAIL.value: 1}
    }
    assert "3 open state violations" in alert.message

    _, still = await sweep(sessionmaker, t[2], few)
    assert still.alert == "updated"
    assert [(a.status, a.count) for a in await alerts(sessionmaker)] == [("open", 2)]

    await set_prospect(agent_sessionmaker, 1, tier="C")
    _, under = await sweep(sessionmaker, t[3], few)
    assert (under.open_total, under.alert) == (2, "resolved")
    [alert] = await alerts(sessionmaker)
    assert (alert.status, alert.resolved_at) == ("resolved", t[3])


# --- ranges and set-based statements ----------------------------------------------------------


async def test_prospects_split_across_ranges_are_each_found_exactly_once(
    sessionmaker, agent_sessionmaker
) -> None:
    now = datetime.now(UTC)
    builders = [positive for positive, _ in CASES.values()]
    pids = [1, 2, 3, 4, 5, 6, 9, 10, 12, 13]  # gaps, and ids on every range boundary
    await add(
        agent_sessionmaker,
        *flat(*(builders[i % len(builders)](pid, now) for i, pid in enumerate(pids))),
    )
    ranges = [(low, low + 3) for low in range(1, 14, 3)]  # [1,4) [4,7) [7,10) [10,13) [13,16)
    per_range: list[int] = []
    async with sessionmaker() as session:
        for low, high in ranges:
            per_range.append(sum((await record_range(session, rules(), low, high, now)).values()))
        closed = await close_sweep(session, rules(), now)
    assert per_range == [3, 3, 1, 2, 1]
    rows = await violations(sessionmaker)
    assert sorted(r.prospect_id for r in rows) == pids
    assert Counter(r.kind for r in rows) == Counter(
        kind.value for kind, _ in zip(list(CASES) * 2, pids, strict=False)
    )
    assert (closed.resolved, closed.open_total) == (0, 10)
    found, closed = await sweep(sessionmaker, now + timedelta(minutes=1), ranges=ranges)
    assert sum(found.values()) == 10
    assert (closed.resolved, closed.open_total) == (0, 10)
    assert len(await violations(sessionmaker)) == 10


async def test_record_range_issues_the_same_statements_for_20_or_2000_prospects(
    engine: AsyncEngine, sessionmaker, agent_sessionmaker
) -> None:
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    builders = [positive for positive, _ in CASES.values()]

    async def statements_for(first_pid: int, n: int, now: datetime) -> tuple[int, int]:
        await add(
            agent_sessionmaker,
            *flat(
                *(
                    builders[pid % len(builders)](pid, now)
                    for pid in range(first_pid, first_pid + n)
                )
            ),
        )
        if engine.dialect.name == "postgresql":
            # statistics, as autovacuum keeps them: without any, the planner takes the fresh
            # tables for empty and nests loops (the illegal-move rule then takes seconds)
            async with engine.begin() as conn:
                await conn.execute(text("ANALYZE"))
        statements.clear()
        event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            async with sessionmaker() as session:
                found = await record_range(session, rules(), first_pid, first_pid + n, now)
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", record)
        return len(statements), sum(found.values())

    now = datetime.now(UTC)
    small = await statements_for(1, 20, now)
    large = await statements_for(21, 2000, now)
    assert small == (len(RULES), 20)
    assert large == (len(RULES), 2000)


# --- real validate cycles on Temporal ---------------------------------------------------------


async def validate_cycle(client: Client, settings: Settings) -> ValidationSummary:
    workflow_id = f"test-validate-{uuid.uuid4().hex[:10]}"
    summary = await client.execute_workflow(
        CycleWorkflow.run,
        CycleInput(mode="validate"),
        id=workflow_id,
        task_queue=settings.temporal.task_queue,
    )
    await record_history(client, workflow_id, "cycle_validate", settings)
    assert summary.mode == "validate" and summary.steps_done == ["validate"]
    assert summary.validation is not None
    return summary.validation


@pytest.mark.parametrize(("range_size", "ranges"), [(None, 1), (3, 4)], ids=["one", "size-3"])
async def test_validate_cycle_counts_match_the_seeded_data(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    range_size: int | None,
    ranges: int,
) -> None:
    settings = worker_settings
    if range_size is not None:
        validation = ValidationSettings(range_size=range_size, alert_threshold=5)
        settings = worker_settings.model_copy(update={"validation": validation})
    now = datetime.now(UTC)
    # ids 1-8 break one rule each, 9 and 10 none: ranges [1,4) [4,7) [7,10) [10,13)
    seeded = [positive(pid, now) for pid, (positive, _) in enumerate(CASES.values(), 1)]
    seeded += [scored_with_tier(9, now), ready_with_email(10, now)]
    await add(agent_sessionmaker, *flat(*seeded))
    every_kind = {kind.value: 1 for kind in ViolationKind}
    async with build_worker(client, sessionmaker, settings):
        first = await validate_cycle(client, settings)
        await set_prospect(agent_sessionmaker, 5, tier="C")  # fixes scored_without_tier
        second = await validate_cycle(client, settings)

    assert first.found == every_kind
    assert (first.open_total, first.open_by_kind, first.resolved) == (8, every_kind, 0)
    assert first.ranges == ranges
    assert first.alert == ("created" if range_size else "unchanged")
    fixed = {k: n for k, n in every_kind.items() if k != K.SCORED_WITHOUT_TIER.value}
    assert second.found == {**fixed, K.SCORED_WITHOUT_TIER.value: 0}
    assert (second.open_total, second.open_by_kind, second.resolved) == (7, fixed, 1)
    assert second.ranges == ranges
    assert second.alert == ("updated" if range_size else "unchanged")
    open_rows = await violations(sessionmaker, open_only=True)
    assert sorted((r.prospect_id, r.kind) for r in open_rows) == sorted(
        (pid, kind.value) for pid, kind in enumerate(CASES, 1) if pid != 5
    )
