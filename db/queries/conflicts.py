"""What the resolve step would find right now, and what it did, for people to read.

The open conflicts are read with the very queries the resolve activity runs
(``db.commands.conflicts``) and judged by the same rules, without acting on any; which claim a
handoff workflow works on is Temporal's to say, so the caller passes that lookup in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.commands.conflicts import (
    blocked_handoffs,
    duplicate_claims,
    duplicate_runs,
    open_claims_untouched_since,
    stale_leases,
)
from db.models import OrchestratorAction
from db.queries.pages import newest_first
from pipeline.conflicts import ConflictRules

LiveHandoff = Callable[[int], Awaitable[str | None]]
"""The handoff id the prospect's running handoff workflow works on, or None."""


class ConflictKind(StrEnum):
    CONTENTION = "contention"
    EXPIRED_LEASE = "expired_lease"
    ORPHANED_LEASE = "orphaned_lease"
    DUPLICATE_CLAIM = "duplicate_claim"
    ORPHANED_CLAIM = "orphaned_claim"
    DUPLICATE_RUN = "duplicate_run"


RESOLVE_ACTIONS = {
    "lease_released": None,  # expired or orphaned: told apart by why
    "handoff_retry_signalled": ConflictKind.CONTENTION,
    "duplicate_handoff_closed": ConflictKind.DUPLICATE_CLAIM,
    "handoff_restarted": ConflictKind.ORPHANED_CLAIM,
}


class ConflictOut(BaseModel):
    kind: ConflictKind
    status: str
    """``open``: the next resolve finds it; ``resolved``: resolve acted on it."""
    prospect_id: int | None = None
    agent: str | None = None
    handoff_ids: list[str] = []
    holder: str | None = None
    """Who holds the lease (contention, leases)."""
    until: datetime | None = None
    waiters: list[str] = []
    """Handoffs blocked on the lease."""
    since: datetime | None = None
    detail: str
    resolution: str
    """What resolve does (open) or did (resolved) about it."""


async def open_conflicts(
    session: AsyncSession, now: datetime, rules: ConflictRules, live: LiveHandoff
) -> list[ConflictOut]:
    """Every conflict the resolve step would find at ``now``, in its order."""
    found = [*await _leases(session, now, rules)]
    found += await _contention(session, now, rules)
    found += await _duplicates(session, rules, live)
    found += await _orphaned_claims(session, now, rules, live)
    return found


async def _leases(session: AsyncSession, now: datetime, rules: ConflictRules) -> list[ConflictOut]:
    out = []
    for lease in await stale_leases(session, now, rules.batch):
        expired = lease.expires_at < now
        out.append(
            ConflictOut(
                kind=ConflictKind.EXPIRED_LEASE if expired else ConflictKind.ORPHANED_LEASE,
                status="open",
                prospect_id=lease.prospect_id,
                agent=lease.agent_name,
                holder=lease.run_id,
                until=lease.expires_at,
                detail=f"lease held by {lease.agent_name} for {lease.run_id}"
                + (" has expired" if expired else ", whose holder has finished"),
                resolution="resolve releases the lease",
            )
        )
    return out


async def _contention(
    session: AsyncSession, now: datetime, rules: ConflictRules
) -> list[ConflictOut]:
    """Blocked handoffs by the prospect they wait on: a free lease resolve signals them on;
    one held past the contention time is reported (a live lease is never taken away)."""
    waiting: dict[int, ConflictOut] = {}
    for handoff_id, prospect_id, agent, since, holder, until in await blocked_handoffs(
        session, now, rules
    ):
        if holder is not None and since >= now - rules.contention_after:
            continue  # not contention yet: the handoff's own retries may get the lease
        conflict = waiting.setdefault(
            prospect_id,
            ConflictOut(
                kind=ConflictKind.CONTENTION,
                status="open",
                prospect_id=prospect_id,
                agent=agent,
                holder=holder,
                until=until,
                since=since,
                detail=f"{holder} holds the lease until {until.isoformat()}"
                if holder
                else "the lease is free",
                resolution="reported: its holder keeps a live lease"
                if holder
                else "resolve signals the waiting handoffs to retry now",
            ),
        )
        conflict.waiters.append(handoff_id)
        conflict.handoff_ids.append(handoff_id)
    return list(waiting.values())


async def _duplicates(
    session: AsyncSession, rules: ConflictRules, live: LiveHandoff
) -> list[ConflictOut]:
    out = []
    for prospect_id, handoff_ids in await duplicate_claims(session, rules.batch):
        kept = await live(prospect_id) or handoff_ids[-1]
        extra = [h for h in handoff_ids if h != kept]
        out.append(
            ConflictOut(
                kind=ConflictKind.DUPLICATE_CLAIM,
                status="open",
                prospect_id=prospect_id,
                handoff_ids=handoff_ids,
                detail=f"{len(handoff_ids)} open claims on prospect {prospect_id}",
                resolution=f"resolve keeps {kept} and closes {', '.join(extra)} as superseded",
            )
        )
    for handoff_id, agent, runs in await duplicate_runs(session, rules.batch):
        out.append(
            ConflictOut(
                kind=ConflictKind.DUPLICATE_RUN,
                status="open",
                agent=agent,
                handoff_ids=[handoff_id],
                detail=f"{agent} has {runs} runs in progress for handoff {handoff_id}",
                resolution="reported: the orchestrator cannot stop an agent's run",
            )
        )
    return out


async def _orphaned_claims(
    session: AsyncSession, now: datetime, rules: ConflictRules, live: LiveHandoff
) -> list[ConflictOut]:
    rows = await open_claims_untouched_since(session, now - rules.contention_after, rules.batch)
    return [
        ConflictOut(
            kind=ConflictKind.ORPHANED_CLAIM,
            status="open",
            prospect_id=row.prospect_id,
            agent=row.to_agent,
            handoff_ids=[row.id],
            since=row.updated_at,
            detail=f"open claim {row.id} ({row.status}) with no workflow working on it",
            resolution="resolve starts its handoff again",
        )
        for row in rows
        if await live(row.prospect_id) != row.id
    ]


async def resolved_conflicts(
    session: AsyncSession,
    *,
    limit: int,
    kind: ConflictKind | None = None,
) -> list[ConflictOut]:
    """What resolve did, from the audit log, newest first (at most ``limit`` audit rows)."""
    query = select(OrchestratorAction).where(OrchestratorAction.action.in_(list(RESOLVE_ACTIONS)))
    if kind is not None:
        actions = [a for a, k in RESOLVE_ACTIONS.items() if k in (kind, None)]
        query = query.where(OrchestratorAction.action.in_(actions))
    query = newest_first(query, OrchestratorAction.created_at, OrchestratorAction.id, limit=limit)
    found = [_from_audit(row) for row in await session.scalars(query)]
    return [c for c in found if kind is None or c.kind is kind]


def _from_audit(row: OrchestratorAction) -> ConflictOut:
    details = row.details or {}
    kind = RESOLVE_ACTIONS[row.action]
    if kind is None:
        expired = str(details.get("why", "")).startswith("expired")
        kind = ConflictKind.EXPIRED_LEASE if expired else ConflictKind.ORPHANED_LEASE
    return ConflictOut(
        kind=kind,
        status="resolved",
        prospect_id=row.prospect_id,
        agent=row.agent_name,
        since=row.created_at,
        detail=str(details.get("found", row.action)),
        resolution=f"{details.get('done', row.action)} ({details.get('why', '')})",
    )
