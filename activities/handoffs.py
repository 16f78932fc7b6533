"""Handoff I/O: find who waits, claim a handoff and its record lease, record the outcome.

The ledger row (unique per prospect, state and state-entry time) is the exactly-once promise:
a handoff is claimed by one workflow run; a retried activity of that run may go on; a later
run may take over only an abandoned open row, or a failed one when explicitly retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import case, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.controls import blocked_agents, deferrals, release_probe, settle_probe
from activities.handoff_queries import (
    PendingWindow,
    count_begun,
    count_in_flight,
    find_pending_page,
    pending_for_prospect,
    why_not_pending,
)
from activities.metrics import count_outcome, record_trigger_latency
from db.dialect import insert_for
from db.models import Event, Handoff, OrchestratorAction, RecordLock
from orchestrator.logs import log_context
from pipeline.contract import AgentResult
from pipeline.handoffs import (
    OPEN_STATUSES,
    RETRYABLE_STATUSES,
    HandoffPolicy,
    HandoffStatus,
    PendingHandoff,
    StartedPage,
)


class FindPendingInput(BaseModel):
    after_id: int | None = None
    unbegun: list[StartedPage] = []
    """Pages this sweep started whose handoffs had not all begun when last looked."""


class PendingPage(BaseModel):
    items: list[PendingHandoff]
    next_cursor: int | None
    deferred: dict[str, str] = {}
    """Handoff id -> why it waits (its agent is paused, or its circuit is open)."""
    policy: HandoffPolicy
    page_size: int
    max_children_per_run: int
    start_batch: int
    saturated: bool = False
    """Too many handoffs open to start a batch: the page is empty and the cursor unmoved."""
    in_flight: int = 0
    max_in_flight: int = 0
    saturated_wait: timedelta = timedelta(seconds=5)
    unbegun: list[StartedPage] = []
    """The input's pages still not all begun, to be passed again with the next call."""
    found_at: datetime | None = None
    feed_overlap: timedelta | None = None
    """The change feed's overlap window when the feed runs: an entry older than it when the
    sweep starts its handoff is one the feed missed."""


class BeginInput(BaseModel):
    pending: PendingHandoff
    workflow_id: str
    run_id: str
    lease_ttl: timedelta
    retry: bool = False


class BeginResult(BaseModel):
    outcome: Literal["leased", "blocked", "superseded", "done"]
    attempt: int = 1
    holder: str | None = None
    """The agent holding the record lease, when blocked."""
    reason: str | None = None


class MarkInput(BaseModel):
    handoff_id: str
    status: HandoffStatus
    detail: str | None = None


class FinishInput(BaseModel):
    pending: PendingHandoff
    workflow_id: str
    run_id: str
    attempt: int
    status: HandoffStatus
    result: AgentResult | None = None
    detail: str | None = None
    find_next: bool = True


class FinishResult(BaseModel):
    next: PendingHandoff | None = None
    deferred: str | None = None
    """The next agent, when the chain stops because that agent is paused or its circuit is
    open."""


@dataclass(frozen=True)
class Room:
    """Room under ``max_in_flight`` for new handoffs, measured by one finder call."""

    unbegun: list[StartedPage]
    in_flight: int
    page_size: int
    saturated: bool


def _now() -> datetime:
    return datetime.now(UTC)


async def begin_handoff(session: AsyncSession, input: BeginInput) -> BeginResult:
    pending, now = input.pending, _now()
    if reason := await why_not_pending(session, pending):
        await release_probe(session, pending.to_agent, pending.id, now)
        await _record_superseded(session, input, reason, now)
        return BeginResult(outcome="superseded", reason=reason)
    claim = await _claim(session, input, now)
    if claim.outcome != "leased":
        await release_probe(session, pending.to_agent, pending.id, now)
        await session.commit()
        return claim
    holder = await _take_lease(session, pending, input.lease_ttl, now)
    status = HandoffStatus.RUNNING if holder is None else HandoffStatus.BLOCKED
    await _set_status(session, pending.id, status, f"lease held by {holder}" if holder else None)
    await session.commit()
    if holder is not None:
        return BeginResult(outcome="blocked", attempt=claim.attempt, holder=holder)
    record_trigger_latency(pending, now)
    return claim


async def _claim(session: AsyncSession, input: BeginInput, now: datetime) -> BeginResult:
    pending = input.pending
    inserted = await session.execute(
        insert_for(session, Handoff)
        .values(
            id=pending.id, prospect_id=pending.prospect_id, from_state=pending.from_state,
            state_entered_at=pending.state_entered_at, to_agent=pending.to_agent,
            status=HandoffStatus.PENDING.value, attempt=1, workflow_id=input.workflow_id,
            workflow_run_id=input.run_id, created_at=now, updated_at=now,
        )
        .on_conflict_do_nothing()
    )  # fmt: skip
    if inserted.rowcount:
        return BeginResult(outcome="leased", attempt=1)
    row = await session.get(Handoff, pending.id, with_for_update=True)
    if row is None:  # another state entry with the same key; cannot happen with one clock
        return BeginResult(outcome="done", reason="ledger key taken by another row")
    if row.workflow_run_id == input.run_id:
        return BeginResult(outcome="leased", attempt=row.attempt)
    status = HandoffStatus(row.status)
    if status in OPEN_STATUSES or (input.retry and status in RETRYABLE_STATUSES):
        row.attempt += 1
        row.workflow_id, row.workflow_run_id = input.workflow_id, input.run_id
        row.status, row.updated_at, row.finished_at = HandoffStatus.PENDING.value, now, None
        return BeginResult(outcome="leased", attempt=row.attempt)
    return BeginResult(outcome="done", attempt=row.attempt, reason=f"already {status.value}")


async def _take_lease(
    session: AsyncSession, pending: PendingHandoff, ttl: timedelta, now: datetime
) -> str | None:
    """Take the record lease for the target agent; the current holder when it is not ours."""
    values = dict(agent_name=pending.to_agent, run_id=pending.id, acquired_at=now,
                  expires_at=now + ttl)  # fmt: skip
    taken = await session.execute(
        insert_for(session, RecordLock)
        .values(prospect_id=pending.prospect_id, **values)
        .on_conflict_do_nothing()
    )
    if taken.rowcount:
        return None
    renewed = await session.execute(
        update(RecordLock)
        .where(
            RecordLock.prospect_id == pending.prospect_id,
            (RecordLock.run_id == pending.id) | (RecordLock.expires_at < now),
        )
        .values(**values)
    )
    if renewed.rowcount:
        return None
    holder = await session.scalar(
        select(RecordLock.agent_name).where(RecordLock.prospect_id == pending.prospect_id)
    )
    return holder or "another holder"


async def _record_superseded(
    session: AsyncSession, input: BeginInput, reason: str, now: datetime
) -> None:
    """Record why nobody was triggered. An open row of this state entry (a blocked handoff
    whose prospect moved, or one a dead run left) is closed too, and its lease released."""
    pending = input.pending
    closed = await session.execute(
        update(Handoff)
        .where(Handoff.id == pending.id, Handoff.finished_at.is_(None))
        .values(status=HandoffStatus.SUPERSEDED.value, detail=reason, updated_at=now,
                finished_at=now, workflow_id=input.workflow_id, workflow_run_id=input.run_id)
    )  # fmt: skip
    if closed.rowcount:
        await _release_lease(session, pending)
    await session.execute(
        insert_for(session, Handoff)
        .values(
            id=pending.id, prospect_id=pending.prospect_id, from_state=pending.from_state,
            state_entered_at=pending.state_entered_at, to_agent=pending.to_agent,
            status=HandoffStatus.SUPERSEDED.value, attempt=1, workflow_id=input.workflow_id,
            workflow_run_id=input.run_id, detail=reason, created_at=now, updated_at=now,
            finished_at=now,
        )
        .on_conflict_do_nothing()
    )  # fmt: skip
    await session.commit()


async def _set_status(
    session: AsyncSession, handoff_id: str, status: HandoffStatus, detail: str | None
) -> None:
    """``updated_at`` moves only when the status changes, so it says since when a handoff
    has been blocked (or stalled), however often it retried meanwhile."""
    since = case((Handoff.status == status.value, Handoff.updated_at), else_=_now())
    await session.execute(
        update(Handoff)
        .where(Handoff.id == handoff_id)
        .values(status=status.value, detail=detail, updated_at=since)
    )


async def _release_lease(session: AsyncSession, pending: PendingHandoff) -> None:
    await session.execute(
        delete(RecordLock).where(
            RecordLock.prospect_id == pending.prospect_id, RecordLock.run_id == pending.id
        )
    )


async def finish_handoff(session: AsyncSession, input: FinishInput) -> FinishResult:
    """Close the ledger row, release the lease, audit it, and say what comes next. Only the
    run that owns the row may close it: a late finish of an abandoned run changes nothing."""
    pending, now = input.pending, _now()
    closed = await session.execute(
        update(Handoff)
        .where(
            Handoff.id == pending.id,
            Handoff.finished_at.is_(None),
            Handoff.workflow_run_id == input.run_id,
        )
        .values(
            status=input.status.value,
            result=input.result.model_dump(mode="json") if input.result else None,
            detail=input.detail,
            updated_at=now,
            finished_at=now,
        )
    )
    if closed.rowcount:  # first time for this attempt: release, audit and announce it once
        await _release_lease(session, pending)
        _audit(session, input, now)
        succeeded = input.status is HandoffStatus.COMPLETED
        await settle_probe(session, pending.to_agent, pending.id, succeeded, now)
    await session.commit()
    if closed.rowcount:
        count_outcome(pending, input.status)
    if input.status is not HandoffStatus.COMPLETED or not input.find_next:
        return FinishResult()
    following = await pending_for_prospect(session, pending.prospect_id)
    if following is not None and following.to_agent in await blocked_agents(session):
        return FinishResult(deferred=following.to_agent)  # the sweep hands it on later
    return FinishResult(next=following)


def _audit(session: AsyncSession, input: FinishInput, now: datetime) -> None:
    pending = input.pending
    action = (
        "handoff_executed"
        if input.status is HandoffStatus.COMPLETED
        else (f"handoff_{input.status.value}")
    )
    details = {
        "handoff_id": pending.id, "from_state": pending.from_state,
        "to_agent": pending.to_agent, "attempt": input.attempt, "outcome": input.status.value,
        "detail": input.detail,
        "result": input.result.model_dump(mode="json") if input.result else None,
    }  # fmt: skip
    session.add(
        OrchestratorAction(
            action=action, prospect_id=pending.prospect_id, agent_name=pending.to_agent,
            workflow_id=input.workflow_id, details=details, created_at=now,
        )
    )  # fmt: skip
    session.add(
        Event(
            dedup_key=f"handoff:{pending.id}:{input.attempt}:{input.status.value}",
            kind=f"handoff_{input.status.value}", agent_name=pending.to_agent,
            payload={**details, "prospect_id": pending.prospect_id}, created_at=now,
        )
    )  # fmt: skip


class HandoffActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        policy: HandoffPolicy,
        *,
        page_size: int = 2000,
        max_children_per_run: int = 1900,
        start_batch: int = 100,
        max_in_flight: int = 2000,
        saturated_wait: timedelta = timedelta(seconds=5),
        breaker_cooldown: timedelta = timedelta(minutes=10),
        feed_overlap: timedelta | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._policy = policy
        self._page = (page_size, max_children_per_run, start_batch)
        self._max_in_flight, self._saturated_wait = max_in_flight, saturated_wait
        self._cooldown = breaker_cooldown
        self._feed_overlap = feed_overlap

    @property
    def policy(self) -> HandoffPolicy:
        return self._policy

    @activity.defn(name="find_pending_handoffs")
    async def find_pending_handoffs(self, input: FindPendingInput) -> PendingPage:
        """The next page, no larger than the room left under ``max_in_flight``: open ledger
        rows plus the sweep's own handoffs not begun yet. With less room than a start batch
        (or half the limit, if smaller) it finds nothing: tiny pages cost a round trip each."""
        now = _now()
        async with self._sessionmaker() as session:
            room = await self.room(session, input.unbegun, now)
            found = PendingWindow(items=[], next_cursor=input.after_id)
            if not room.saturated:
                found = await find_pending_page(session, input.after_id, room.page_size)
            deferred = await self.deferrals(session, found.items, now)
        return self.page(found.items, room, now, next_cursor=found.next_cursor, deferred=deferred)

    async def room(self, session: AsyncSession, unbegun: list[StartedPage], now: datetime) -> Room:
        """How many handoffs may start now (a page never holds more children than one run
        may start), and the pages of ``unbegun`` still not all begun."""
        page_size, max_children, batch = self._page
        # not begun first: a child beginning in between is counted twice, never missed
        kept, waiting = await _still_unbegun(session, unbegun, now - self._policy.lease_ttl)
        in_flight = waiting + await count_in_flight(session, now - self._policy.lease_ttl)
        left = self._max_in_flight - in_flight
        return Room(
            unbegun=kept,
            in_flight=in_flight,
            page_size=max(min(page_size, max_children, left), 0),
            saturated=left < min(batch, max(self._max_in_flight // 2, 1)),
        )

    async def deferrals(
        self, session: AsyncSession, items: list[PendingHandoff], now: datetime
    ) -> dict[str, str]:
        """Which of ``items`` wait for their agent (paused, circuit open), and why."""
        return await deferrals(session, items, now, self._cooldown) if items else {}

    def page(
        self,
        items: list[PendingHandoff],
        room: Room,
        now: datetime,
        *,
        next_cursor: int | None = None,
        deferred: dict[str, str] | None = None,
    ) -> PendingPage:
        """What a workflow needs to start ``items``: the policy, the limits, the room."""
        _, max_children, batch = self._page
        return PendingPage(
            items=items,
            next_cursor=next_cursor,
            deferred=deferred or {},
            policy=self._policy,
            page_size=room.page_size,
            max_children_per_run=max_children,
            start_batch=batch,
            saturated=room.saturated,
            in_flight=room.in_flight,
            max_in_flight=self._max_in_flight,
            saturated_wait=self._saturated_wait,
            unbegun=room.unbegun,
            found_at=now,
            feed_overlap=self._feed_overlap,
        )

    @activity.defn(name="begin_handoff")
    async def begin_handoff(self, input: BeginInput) -> BeginResult:
        pending = input.pending
        with log_context(prospect_id=pending.prospect_id, agent=pending.to_agent):
            async with self._sessionmaker() as session:
                begun = await begin_handoff(session, input)
            _log_begun(pending, begun)
            return begun

    @activity.defn(name="mark_handoff")
    async def mark_handoff(self, input: MarkInput) -> None:
        async with self._sessionmaker() as session:
            await _set_status(session, input.handoff_id, input.status, input.detail)
            await session.commit()

    @activity.defn(name="finish_handoff")
    async def finish_handoff(self, input: FinishInput) -> FinishResult:
        pending = input.pending
        with log_context(prospect_id=pending.prospect_id, agent=pending.to_agent):
            async with self._sessionmaker() as session:
                finished = await finish_handoff(session, input)
            _log_finished(input)
            return finished


async def _still_unbegun(
    session: AsyncSession, pages: list[StartedPage], expired: datetime
) -> tuple[list[StartedPage], int]:
    """The pages with handoffs not begun yet, and how many. A page older than a lease is
    dropped: its children have begun, or were terminated before they could."""
    kept, waiting = [], 0
    for page in pages:
        left = page.started - await count_begun(session, page) if page.since >= expired else 0
        if left > 0:
            kept.append(page)
            waiting += left
    return kept, waiting


def _log_begun(pending: PendingHandoff, begun: BeginResult) -> None:
    if begun.outcome == "leased":
        what = f"triggering {pending.to_agent} (attempt {begun.attempt})"
    elif begun.outcome == "blocked":
        what = f"blocked: record lease held by {begun.holder}"
    else:
        what = f"not run: {begun.reason}"
    activity.logger.info("handoff %s from %s: %s", pending.id, pending.from_state, what)


def _log_finished(input: FinishInput) -> None:
    detail = f" ({input.detail})" if input.detail else ""
    activity.logger.info(
        "handoff %s from %s: %s%s",
        input.pending.id,
        input.pending.from_state,
        input.status.value,
        detail,
    )
