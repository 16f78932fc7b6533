"""The handoff ledger: claim a handoff and its record lease, record the outcome.

The ledger row (unique per prospect, state and state-entry time) is the exactly-once promise:
a handoff is claimed by one workflow run; a retried activity of that run may go on; a later
run may take over only an abandoned open row, or a failed one when explicitly retried.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import case, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.commands.controls import blocked_agents, release_probe, settle_probe
from db.dialect import insert_for
from db.models import Event, Handoff, OrchestratorAction, RecordLock
from db.queries.handoffs import (
    pending_for_prospect,
    why_not_pending,
)
from pipeline.contract import AgentResult
from pipeline.handoffs import (
    OPEN_STATUSES,
    RETRYABLE_STATUSES,
    HandoffStatus,
    PendingHandoff,
)


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
    leased_at: datetime | None = None
    """When the lease was taken, so the agent was triggered: the handoff latency ends."""
    no_worker: bool = False
    """Leased while no worker polled the agent's task queue: flagged, not left to stall."""


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
    closed: bool = False
    """This call closed the ledger row (not a retry of one that had)."""
    next: PendingHandoff | None = None
    deferred: str | None = None
    """The next agent, when the chain stops because that agent is paused or its circuit is
    open."""


def _now() -> datetime:
    return datetime.now(UTC)


async def begin_handoff(
    session: AsyncSession, input: BeginInput, no_worker: str | None = None
) -> BeginResult:
    """Claim the ledger row and the lease. ``no_worker`` (why, when nobody serves the agent's
    queue) is written on the row it runs with, in the same statement as its status."""
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
    if holder is not None:
        await set_status(session, pending.id, HandoffStatus.BLOCKED, f"lease held by {holder}")
        await session.commit()
        return BeginResult(outcome="blocked", attempt=claim.attempt, holder=holder)
    await set_status(
        session, pending.id, HandoffStatus.RUNNING, no_worker, no_worker=no_worker is not None
    )
    await session.commit()
    return claim.model_copy(update={"leased_at": now, "no_worker": no_worker is not None})


def _new_row(
    session: AsyncSession, input: BeginInput, status: HandoffStatus, now: datetime, **extra: Any
) -> Any:
    """An ``INSERT`` of the first ledger row of ``input``'s state entry, owned by its run."""
    pending = input.pending
    return insert_for(session, Handoff).values(
        id=pending.id,
        prospect_id=pending.prospect_id,
        from_state=pending.from_state,
        state_entered_at=pending.state_entered_at,
        to_agent=pending.to_agent,
        status=status.value,
        attempt=1,
        workflow_id=input.workflow_id,
        workflow_run_id=input.run_id,
        created_at=now,
        updated_at=now,
        **extra,
    )


async def _claim(session: AsyncSession, input: BeginInput, now: datetime) -> BeginResult:
    pending = input.pending
    inserted = await session.execute(
        _new_row(session, input, HandoffStatus.PENDING, now).on_conflict_do_nothing()
    )
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
    values = dict(
        agent_name=pending.to_agent, run_id=pending.id, acquired_at=now, expires_at=now + ttl
    )
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
        .values(
            status=HandoffStatus.SUPERSEDED.value,
            detail=reason,
            updated_at=now,
            finished_at=now,
            workflow_id=input.workflow_id,
            workflow_run_id=input.run_id,
        )
    )
    if closed.rowcount:
        await _release_lease(session, pending)
    closing = _new_row(
        session, input, HandoffStatus.SUPERSEDED, now, detail=reason, finished_at=now
    )
    await session.execute(closing.on_conflict_do_nothing())
    await session.commit()


async def set_status(
    session: AsyncSession,
    handoff_id: str,
    status: HandoffStatus,
    detail: str | None,
    **extra: object,
) -> None:
    """``updated_at`` moves only when the status changes, so it says since when a handoff
    has been blocked (or stalled), however often it retried meanwhile."""
    since = case((Handoff.status == status.value, Handoff.updated_at), else_=_now())
    await session.execute(
        update(Handoff)
        .where(Handoff.id == handoff_id)
        .values(status=status.value, detail=detail, updated_at=since, **extra)
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
    first = bool(closed.rowcount)
    if input.status is not HandoffStatus.COMPLETED or not input.find_next:
        return FinishResult(closed=first)
    # a replay of a workflow task lost after this run claimed the next entry asks again
    following = await pending_for_prospect(session, pending.prospect_id, claimed_by=input.run_id)
    if following is not None and following.to_agent in await blocked_agents(session):
        # the feed or the sweep hands it on later
        return FinishResult(deferred=following.to_agent, closed=first)
    return FinishResult(next=following, closed=first)


def _audit(session: AsyncSession, input: FinishInput, now: datetime) -> None:
    pending = input.pending
    action = (
        "handoff_executed"
        if input.status is HandoffStatus.COMPLETED
        else (f"handoff_{input.status.value}")
    )
    details = {
        "handoff_id": pending.id,
        "from_state": pending.from_state,
        "to_agent": pending.to_agent,
        "attempt": input.attempt,
        "outcome": input.status.value,
        "detail": input.detail,
        "result": input.result.model_dump(mode="json") if input.result else None,
    }
    session.add(
        OrchestratorAction(
            action=action,
            prospect_id=pending.prospect_id,
            agent_name=pending.to_agent,
            workflow_id=input.workflow_id,
            details=details,
            created_at=now,
        )
    )
    session.add(
        Event(
            dedup_key=f"handoff:{pending.id}:{input.attempt}:{input.status.value}",
            kind=f"handoff_{input.status.value}",
            agent_name=pending.to_agent,
            payload={**details, "prospect_id": pending.prospect_id},
            created_at=now,
        )
    )
