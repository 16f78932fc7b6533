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
from sqlalchemy import String, cast, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from activities.handoff_queries import pending_from_row
from db.models import AgentRun, Handoff, OrchestratorAction, RecordLock
from pipeline.conflicts import ConflictRules
from pipeline.handoffs import HandoffPolicy, HandoffStatus, PendingHandoff, handoff_workflow_id


class ResolveInput(BaseModel):
    as_of: datetime


class RecordRestartsInput(BaseModel):
    as_of: datetime
    restarted: list[PendingHandoff] = []
    refused: list[PendingHandoff] = []
    """Another handoff of the prospect was running: nothing restarted."""


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


def _audit(action: str, now: datetime, prospect_id: int | None, agent: str | None,
           found: str, done: str, why: str) -> OrchestratorAction:  # fmt: skip
    return OrchestratorAction(
        action=action, prospect_id=prospect_id, agent_name=agent, created_at=now,
        details={"found": found, "done": done, "why": why},
    )  # fmt: skip


async def release_stale_leases(session: AsyncSession, now: datetime, batch: int) -> tuple[int, int]:
    """Release expired and orphaned leases; (expired, orphaned) released by this call."""
    finished_handoff = exists().where(
        Handoff.id == RecordLock.run_id, Handoff.finished_at.is_not(None)
    )
    finished_run = exists().where(
        cast(AgentRun.id, String) == RecordLock.run_id,
        AgentRun.status.in_(("completed", "failed")),
    )
    stale = (
        select(RecordLock.id)
        .where(or_(RecordLock.expires_at < now, finished_handoff, finished_run))
        .limit(batch)
    )
    released = await session.execute(
        delete(RecordLock)
        .where(RecordLock.id.in_(stale))
        .returning(RecordLock.prospect_id, RecordLock.agent_name, RecordLock.run_id,
                   RecordLock.expires_at)
    )  # fmt: skip
    expired = orphaned = 0
    for prospect_id, agent, run_id, expires_at in released.all():
        is_expired = expires_at < now
        expired, orphaned = expired + is_expired, orphaned + (not is_expired)
        why = (f"expired at {expires_at.isoformat()}" if is_expired
               else f"its holder {run_id} has finished")  # fmt: skip
        session.add(_audit("lease_released", now, prospect_id, agent,
                           found=f"lease held by {agent} for {run_id}",
                           done="released the lease", why=why))  # fmt: skip
    await session.commit()
    return expired, orphaned


async def blocked_handoffs(
    session: AsyncSession, now: datetime, rules: ConflictRules
) -> Sequence[Any]:
    """Blocked handoffs with the lease they wait on (None when it is free now)."""
    query = (
        select(Handoff.id, Handoff.prospect_id, Handoff.to_agent, Handoff.updated_at,
               RecordLock.agent_name, RecordLock.expires_at)
        .outerjoin(RecordLock, RecordLock.prospect_id == Handoff.prospect_id)
        .where(Handoff.status == HandoffStatus.BLOCKED.value, Handoff.finished_at.is_(None))
        .order_by(Handoff.updated_at)
        .limit(rules.batch)
    )  # fmt: skip
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
        .values(status=HandoffStatus.SUPERSEDED.value, detail=f"duplicate claim: {why}",
                updated_at=now, finished_at=now)
        .returning(Handoff.id, Handoff.prospect_id, Handoff.to_agent)
    )  # fmt: skip
    count = 0
    for handoff_id, prospect_id, agent in closed.all():
        count += 1
        session.add(_audit("duplicate_handoff_closed", now, prospect_id, agent,
                           found=f"open claim {handoff_id}", done="closed as superseded",
                           why=why))  # fmt: skip
    await session.commit()
    return count


class ConflictActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: Client,
        rules: ConflictRules,
        *,
        policy: HandoffPolicy,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._client = client
        self._rules = rules
        self._policy = policy

    async def _orphaned_claims(
        self, session: AsyncSession, now: datetime, summary: ResolveSummary
    ) -> None:
        """Open claims no workflow works on (its run was terminated or lost), for the cycle
        to run again. The claim allows a new run to take an open row over, so nothing is
        triggered twice."""
        rows = await session.scalars(
            select(Handoff)
            .where(
                Handoff.finished_at.is_(None),
                Handoff.updated_at < now - self._rules.contention_after,
            )
            .order_by(Handoff.updated_at)
            .limit(self._rules.batch)
        )
        for row in list(rows):
            if await self._live_handoff(row.prospect_id) == row.id:
                continue
            summary.count("orphaned_claim", 1, 0)
            summary.restart.append(pending_from_row(row))
        summary.restart_policy = self._policy if summary.restart else None

    @activity.defn(name="record_restarts")
    async def record_restarts(self, input: RecordRestartsInput) -> None:
        """Audit the handoffs the cycle started again."""
        async with self._sessionmaker() as session:
            for pending in input.restarted:
                restarted = _audit(
                    "handoff_restarted",
                    input.as_of,
                    pending.prospect_id,
                    pending.to_agent,
                    found=f"open claim {pending.id} with no workflow working on it",
                    done="started its handoff workflow again",
                    why="a claim nobody works on would block the prospect",
                )
                session.add(restarted)
            await session.commit()

    @activity.defn(name="resolve_conflicts")
    async def resolve_conflicts(self, input: ResolveInput) -> ResolveSummary:
        summary, now = ResolveSummary(), input.as_of
        async with self._sessionmaker() as session:
            expired, orphaned = await release_stale_leases(session, now, self._rules.batch)
            summary.count("expired_lease", expired, expired)
            summary.count("orphaned_lease", orphaned, orphaned)
            await self._contention(session, now, summary)
            await self._duplicates(session, now, summary)
            await self._orphaned_claims(session, now, summary)
        activity.logger.info(
            "conflicts: %d found, %d resolved, %d unresolved",
            summary.conflicts_found, summary.resolved, len(summary.unresolved),
        )  # fmt: skip
        return summary

    async def _contention(
        self, session: AsyncSession, now: datetime, summary: ResolveSummary
    ) -> None:
        for handoff_id, prospect_id, agent, since, holder, until in await blocked_handoffs(
            session, now, self._rules
        ):
            if holder is None:  # the lease is free: the waiting handoff need not wait its timer
                if await self._signal_retry(prospect_id, handoff_id):
                    summary.count("contention", 1, 1)
                    session.add(_audit("handoff_retry_signalled", now, prospect_id, agent,
                                       found=f"{handoff_id} blocked on a lease now free",
                                       done="signalled the handoff to retry",
                                       why="the lease it waited on was released"))  # fmt: skip
            elif since < now - self._rules.contention_after:
                summary.count("contention", 1, 0)
                summary.unresolved.append(Conflict(
                    kind="contention", prospect_id=prospect_id,
                    detail=f"{handoff_id} for {agent} blocked since {since.isoformat()}: "
                    f"{holder} holds the lease until {until.isoformat()} and keeps it",
                ))  # fmt: skip
        await session.commit()

    async def _duplicates(
        self, session: AsyncSession, now: datetime, summary: ResolveSummary
    ) -> None:
        for prospect_id, handoff_ids in await duplicate_claims(session, self._rules.batch):
            # keep the claim the workflow works on; with none running, the newest (which the
            # orphaned-claim recovery below restarts)
            kept = await self._live_handoff(prospect_id) or handoff_ids[-1]
            extra = [h for h in handoff_ids if h != kept]
            closed = await close_as_duplicate(session, extra, kept, now)
            summary.count("duplicate_claim", len(extra), closed)
        for handoff_id, agent, runs in await duplicate_runs(session, self._rules.batch):
            summary.count("duplicate_run", 1, 0)
            summary.unresolved.append(Conflict(
                kind="duplicate_run",
                detail=f"{agent} has {runs} runs in progress for handoff {handoff_id}; "
                "the orchestrator cannot stop an agent's run",
            ))  # fmt: skip

    async def _live_handoff(self, prospect_id: int) -> str | None:
        handle = self._client.get_workflow_handle(handoff_workflow_id(prospect_id))
        try:
            if (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING:
                return None
            state = await handle.query("state")
        except RPCError:
            return None
        return state.get("handoff_id") if isinstance(state, dict) else None

    async def _signal_retry(self, prospect_id: int, handoff_id: str) -> bool:
        handle = self._client.get_workflow_handle(handoff_workflow_id(prospect_id))
        try:
            await handle.signal("retry")
        except RPCError as exc:
            activity.logger.warning("could not signal %s to retry: %s", handoff_id, exc)
            return False
        return True
