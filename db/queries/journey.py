"""One prospect's journey: every record that names it, merged into one timeline in time
order, newest entries kept when there are more than the cap."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import String, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    Activity,
    AgentRun,
    Alert,
    Handoff,
    OrchestratorAction,
    Prospect,
    RecordLock,
    StateViolation,
)
from db.queries.handoffs import has_contact_email


class TimelineEntry(BaseModel):
    at: datetime
    kind: str
    """``state_entered``, ``handoff``, ``agent_run``, ``lease``, ``violation``, ``alert``
    or ``action`` (the orchestrator's audit log)."""
    summary: str
    status: str | None = None
    agent: str | None = None
    handoff_id: str | None = None
    attempt: int | None = None
    workflow_id: str | None = None
    web_ui_url: str | None = None
    detail: dict[str, Any] | None = None


async def prospect_with_email(session: AsyncSession, prospect_id: int) -> Any | None:
    """(prospect, has contact email), deleted or not; None for an unknown id."""
    query = select(Prospect, has_contact_email()).where(Prospect.id == prospect_id)
    return (await session.execute(query)).first()


async def timeline(
    session: AsyncSession, prospect: Prospect, limit: int
) -> tuple[list[TimelineEntry], bool]:
    """The newest ``limit`` entries, oldest first, and whether older ones were left out.
    Each table is read once, at most ``limit`` rows, so the cap bounds the work too."""
    pid = prospect.id
    handoffs = await _newest(session, select(Handoff).where(Handoff.prospect_id == pid), limit)
    ids = [h.id for h in handoffs]
    runs = await _newest(session, select(AgentRun).where(AgentRun.handoff_id.in_(ids)), limit)
    changes = await _newest(
        session,
        select(Activity).where(Activity.prospect_id == pid, Activity.type == "status_change"),
        limit,
    )
    entries = _state_entries(prospect, changes, handoffs)
    entries += [_handoff(h) for h in handoffs] + [_run(r) for r in runs]
    entries += [_violation(v) for v in await _newest(session, _of(StateViolation, pid), limit)]
    # an alert names a prospect in details.prospect_id; compared as text, which both
    # databases can do for any value found there (an integer cast could fail on PostgreSQL)
    named = cast(Alert.details["prospect_id"].as_string(), String)
    alerts = select(Alert).where(named == str(pid))
    entries += [_alert(a) for a in await _newest(session, alerts, limit)]
    entries += [_action(a) for a in await _newest(session, _of(OrchestratorAction, pid), limit)]
    lease = await session.scalar(select(RecordLock).where(RecordLock.prospect_id == pid))
    entries += [_lease(lease)] if lease is not None else []
    entries.sort(key=lambda e: e.at)  # stable: at one time, a handoff before its runs
    return entries[-limit:], len(entries) > limit


def _of(model: Any, prospect_id: int) -> Any:
    return select(model).where(model.prospect_id == prospect_id)


ORDER = {
    Activity: Activity.created_at,
    AgentRun: AgentRun.started_at,
    Alert: Alert.first_seen,
    Handoff: Handoff.created_at,
    OrchestratorAction: OrchestratorAction.created_at,
    StateViolation: StateViolation.first_seen,
}


async def _newest(session: AsyncSession, query: Any, limit: int) -> list[Any]:
    column = ORDER[query.column_descriptions[0]["entity"]]
    return list(await session.scalars(query.order_by(column.desc()).limit(limit)))


def _state_entries(
    prospect: Prospect, changes: list[Activity], handoffs: list[Handoff]
) -> list[TimelineEntry]:
    """Each entry into a state once: from the status changes the agents logged, the state
    entries the ledger handed off, and the current one."""
    entries = {(e.status, e.at): e for e in map(_entered, changes)}
    for row in handoffs:
        entries.setdefault(
            (row.from_state, row.state_entered_at),
            TimelineEntry(
                at=row.state_entered_at,
                kind="state_entered",
                status=row.from_state,
                summary=f"entered {row.from_state}",
            ),
        )
    entries.setdefault((prospect.status, prospect.status_changed_at), _current(prospect))
    return list(entries.values())


def _entered(row: Activity) -> TimelineEntry:
    details = row.details or {}
    to, came = details.get("to"), details.get("from")
    return TimelineEntry(
        at=row.created_at,
        kind="state_entered",
        status=to,
        summary=f"{came} → {to}" if came else f"entered {to}",
        detail=details,
    )


def _current(prospect: Prospect) -> TimelineEntry:
    return TimelineEntry(
        at=prospect.status_changed_at,
        kind="state_entered",
        status=prospect.status,
        summary=f"entered {prospect.status} (its current state)",
    )


def _handoff(row: Handoff) -> TimelineEntry:
    outcome = f": {row.detail}" if row.detail else ""
    return TimelineEntry(
        at=row.created_at,
        kind="handoff",
        status=row.status,
        agent=row.to_agent,
        handoff_id=row.id,
        attempt=row.attempt,
        workflow_id=row.workflow_id,
        summary=f"handoff {row.from_state} → {row.to_agent}, attempt {row.attempt}: "
        f"{row.status}{outcome}",
        detail={"finished_at": row.finished_at, "result": row.result},
    )


def _run(row: AgentRun) -> TimelineEntry:
    error = f": {row.error}" if row.error else ""
    return TimelineEntry(
        at=row.started_at,
        kind="agent_run",
        status=row.status,
        agent=row.agent_name,
        handoff_id=row.handoff_id,
        summary=f"{row.agent_name} run {row.id} {row.status}{error}",
        detail={"run_id": row.id, "completed_at": row.completed_at},
    )


def _lease(row: RecordLock) -> TimelineEntry:
    return TimelineEntry(
        at=row.acquired_at,
        kind="lease",
        agent=row.agent_name,
        handoff_id=row.run_id,
        summary=f"leased by {row.agent_name} for {row.run_id} until {row.expires_at.isoformat()}",
        detail={"holder": row.run_id, "until": row.expires_at},
    )


def _violation(row: StateViolation) -> TimelineEntry:
    state = "resolved" if row.resolved_at is not None else "open"
    return TimelineEntry(
        at=row.first_seen,
        kind="violation",
        status=state,
        summary=f"{row.kind} in {row.state}: {row.detail or ''} ({state})",
        detail={"last_seen": row.last_seen, "resolved_at": row.resolved_at},
    )


def _alert(row: Alert) -> TimelineEntry:
    return TimelineEntry(
        at=row.first_seen,
        kind="alert",
        status=row.status,
        agent=row.agent_name,
        summary=f"{row.severity} alert: {row.message}",
        detail={"alert_id": row.id, "last_seen": row.last_seen},
    )


def _action(row: OrchestratorAction) -> TimelineEntry:
    details = row.details or {}
    done = details.get("done")
    attempt = details.get("attempt")
    return TimelineEntry(
        at=row.created_at,
        kind="action",
        status=row.action,
        agent=row.agent_name,
        handoff_id=details.get("handoff_id"),
        attempt=attempt if isinstance(attempt, int) else None,
        workflow_id=row.workflow_id,
        summary=f"{row.action.replace('_', ' ')}" + (f": {done}" if done else ""),
        detail=details,
    )
