"""Conflict resolution over record leases and handoff claims.

Policy (documented in the README):
- an expired lease, or one whose holder is finished (its agent run completed or failed, or
  its handoff closed), is released;
- a live lease is never released: its holder keeps it. A handoff blocked on a lease that has
  since been freed is signalled to retry now; one still blocked past the contention time is
  reported, with who holds the lease until when;
- two open claims on one prospect: the claim the prospect's handoff workflow is working on
  stays, the others are closed as superseded; two running agent runs for one handoff are
  reported (the orchestrator cannot stop an agent).

Releases are ``DELETE ... RETURNING``: when several cycles resolve at once, each lease is
released, and audited, by exactly one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, String, cast, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AgentRun, Handoff, OrchestratorAction, RecordLock
from pipeline.conflicts import ConflictRules
from pipeline.handoffs import HandoffPolicy, HandoffStatus, PendingHandoff


class Conflict(BaseModel):
    kind: str
    prospect_id: int | None = None
    detail: str


class ResolveSummary(BaseModel):
    """The spec's ``_resolve_conflicts`` result, plus what could not be resolved and why."""

    conflicts_found: int = 0
    resolved: int = 0
    by_kind: dict[str, int] = {}
    unresolved: list[Conflict] = []
    restart: list[PendingHandoff] = []
    """Open claims no workflow works on: the cycle starts their handoffs again (an activity
    never starts a workflow), then ``record_restarts`` audits what it started."""
    restart_policy: HandoffPolicy | None = None

    def count(self, kind: str, found: int, resolved: int) -> None:
        self.conflicts_found += found
        self.resolved += resolved
        if found:
            self.by_kind[kind] = self.by_kind.get(kind, 0) + found


def audit_row(
    action: str,
    now: datetime,
    prospect_id: int | None,
    agent: str | None,
    found: str,
    done: str,
    why: str,
) -> OrchestratorAction:
    return OrchestratorAction(
        action=action,
        prospect_id=prospect_id,
        agent_name=agent,
        created_at=now,
        details={"found": found, "done": done, "why": why},
    )


def stale_lease_clause(now: datetime) -> ColumnElement[bool]:
    """A lease resolve releases: expired, or its holder (handoff or agent run) finished."""
    finished_handoff = exists().where(
        Handoff.id == RecordLock.run_id, Handoff.finished_at.is_not(None)
    )
    finished_run = exists().where(
        cast(AgentRun.id, String) == RecordLock.run_id,
        AgentRun.status.in_(("completed", "failed")),
    )
    return or_(RecordLock.expires_at < now, finished_handoff, finished_run)


async def stale_leases(session: AsyncSession, now: datetime, batch: int) -> list[RecordLock]:
    """The leases the next resolve would release, oldest expiry first (read only)."""
    query = (
        select(RecordLock)
        .where(stale_lease_clause(now))
        .order_by(RecordLock.expires_at)
        .limit(batch)
    )
    return list(await session.scalars(query))


async def release_stale_leases(session: AsyncSession, now: datetime, batch: int) -> tuple[int, int]:
    """Release expired and orphaned leases; (expired, orphaned) released by this call."""
    stale = select(RecordLock.id).where(stale_lease_clause(now)).limit(batch)
    released = await session.execute(
        delete(RecordLock)
        .where(RecordLock.id.in_(stale))
        .returning(
            RecordLock.prospect_id, RecordLock.agent_name, RecordLock.run_id, RecordLock.expires_at
        )
    )
    expired = orphaned = 0
    for prospect_id, agent, run_id, expires_at in released.all():
        is_expired = expires_at < now
        expired, orphaned = expired + is_expired, orphaned + (not is_expired)
        why = (
            f"expired at {expires_at.isoformat()}"
            if is_expired
            else f"its holder {run_id} has finished"
        )
        session.add(
            audit_row(
                "lease_released",
                now,
                prospect_id,
                agent,
                found=f"lease held by {agent} for {run_id}",
                done="released the lease",
                why=why,
            )
        )
    await session.commit()
    return expired, orphaned


async def blocked_handoffs(
    session: AsyncSession, now: datetime, rules: ConflictRules
) -> Sequence[Any]:
    """Blocked handoffs with the lease they wait on (None when it is free now)."""
    query = (
        select(
            Handoff.id,
            Handoff.prospect_id,
            Handoff.to_agent,
            Handoff.updated_at,
            RecordLock.agent_name,
            RecordLock.expires_at,
        )
        .outerjoin(RecordLock, RecordLock.prospect_id == Handoff.prospect_id)
        .where(Handoff.status == HandoffStatus.BLOCKED.value, Handoff.finished_at.is_(None))
        .order_by(Handoff.updated_at)
        .limit(rules.batch)
    )
    return (await session.execute(query)).all()


async def duplicate_claims(session: AsyncSession, batch: int) -> list[tuple[int, list[str]]]:
    """Prospects with more than one open ledger row, and those rows' ids."""
    prospects = (
        select(Handoff.prospect_id)
        .where(Handoff.finished_at.is_(None))
        .group_by(Handoff.prospect_id)
        .having(func.count() > 1)
        .limit(batch)
    )
    rows = await session.execute(
        select(Handoff.prospect_id, Handoff.id)
        .where(Handoff.finished_at.is_(None), Handoff.prospect_id.in_(prospects))
        .order_by(Handoff.prospect_id, Handoff.created_at)
    )
    claims: dict[int, list[str]] = {}
    for prospect_id, handoff_id in rows.all():
        claims.setdefault(prospect_id, []).append(handoff_id)
    return list(claims.items())


async def duplicate_runs(session: AsyncSession, batch: int) -> list[tuple[str, str, int]]:
    rows = await session.execute(
        select(AgentRun.handoff_id, AgentRun.agent_name, func.count())
        .where(AgentRun.status == "running", AgentRun.handoff_id.is_not(None))
        .group_by(AgentRun.handoff_id, AgentRun.agent_name)
        .having(func.count() > 1)
        .limit(batch)
    )
    return [(h, a, n) for h, a, n in rows.all()]


async def close_as_duplicate(
    session: AsyncSession, handoff_ids: list[str], kept: str, now: datetime
) -> int:
    why = f"the prospect's handoff continues with {kept}"
    closed = await session.execute(
        update(Handoff)
        .where(Handoff.id.in_(handoff_ids), Handoff.finished_at.is_(None))
        .values(
            status=HandoffStatus.SUPERSEDED.value,
            detail=f"duplicate claim: {why}",
            updated_at=now,
            finished_at=now,
        )
        .returning(Handoff.id, Handoff.prospect_id, Handoff.to_agent)
    )
    count = 0
    for handoff_id, prospect_id, agent in closed.all():
        count += 1
        session.add(
            audit_row(
                "duplicate_handoff_closed",
                now,
                prospect_id,
                agent,
                found=f"open claim {handoff_id}",
                done="closed as superseded",
                why=why,
            )
        )
    await session.commit()
    return count


async def open_claims_untouched_since(
    session: AsyncSession, before: datetime, batch: int
) -> list[Handoff]:
    """Open ledger rows whose status has not moved since ``before``, oldest first."""
    rows = await session.scalars(
        select(Handoff)
        .where(Handoff.finished_at.is_(None), Handoff.updated_at < before)
        .order_by(Handoff.updated_at)
        .limit(batch)
    )
    return list(rows)
