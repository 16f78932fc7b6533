"""The resolve cycle's activities: conflicts over leases and claims, resolved through
``db.commands.conflicts``, and the audit of the handoffs the cycle restarted. Reads what a
handoff workflow works on (a query) and signals a blocked one to retry; never starts one."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from db.commands.conflicts import (
    Conflict,
    ResolveSummary,
    audit_row,
    blocked_handoffs,
    close_as_duplicate,
    duplicate_claims,
    duplicate_runs,
    open_claims_untouched_since,
    release_stale_leases,
)
from db.queries.handoffs import pending_from_row
from pipeline.conflicts import ConflictRules
from pipeline.handoffs import HandoffPolicy, PendingHandoff, handoff_workflow_id


class ResolveInput(BaseModel):
    as_of: datetime


class RecordRestartsInput(BaseModel):
    as_of: datetime
    restarted: list[PendingHandoff] = []
    refused: list[PendingHandoff] = []
    """Another handoff of the prospect was running: nothing restarted."""


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
        rows = await open_claims_untouched_since(
            session, now - self._rules.contention_after, self._rules.batch
        )
        for row in rows:
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
                restarted = audit_row(
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
            summary.conflicts_found,
            summary.resolved,
            len(summary.unresolved),
        )
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
                    session.add(
                        audit_row(
                            "handoff_retry_signalled",
                            now,
                            prospect_id,
                            agent,
                            found=f"{handoff_id} blocked on a lease now free",
                            done="signalled the handoff to retry",
                            why="the lease it waited on was released",
                        )
                    )
            elif since < now - self._rules.contention_after:
                summary.count("contention", 1, 0)
                summary.unresolved.append(
                    Conflict(
                        kind="contention",
                        prospect_id=prospect_id,
                        detail=f"{handoff_id} for {agent} blocked since {since.isoformat()}: "
                        f"{holder} holds the lease until {until.isoformat()} and keeps it",
                    )
                )
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
            summary.unresolved.append(
                Conflict(
                    kind="duplicate_run",
                    detail=f"{agent} has {runs} runs in progress for handoff {handoff_id}; "
                    "the orchestrator cannot stop an agent's run",
                )
            )

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
