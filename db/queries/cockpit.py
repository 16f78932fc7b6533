"""Reads of the operator's cockpit: state violations, and prospects found by text, state,
tier or being stuck (one prospect's journey is ``db.queries.journey``). Keyset pages, newest
first; every filter is a WHERE clause the database applies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Handoff, Prospect, StateViolation
from db.queries.handoffs import has_contact_email
from db.queries.pages import newest_first
from pipeline.handoffs import HandoffStatus
from pipeline.validation import ViolationKind

STUCK_KINDS = (ViolationKind.STUCK.value, ViolationKind.DROPPED_HANDOFF.value)
STUCK_HANDOFFS = (HandoffStatus.STALLED.value, HandoffStatus.BLOCKED.value)


async def violation_page(
    session: AsyncSession,
    *,
    limit: int,
    resolved: bool = False,
    kind: str | None = None,
    state: str | None = None,
    agent_states: Sequence[str] | None = None,
    prospect_id: int | None = None,
    before: tuple[datetime, int] | None = None,
) -> list[StateViolation]:
    """Open (or resolved) violations, the most recently seen first. ``agent_states`` are the
    states an agent is handed prospects from: its violations are the ones in those states."""
    query = select(StateViolation).where(
        StateViolation.resolved_at.is_not(None)
        if resolved
        else StateViolation.resolved_at.is_(None)
    )
    if kind is not None:
        query = query.where(StateViolation.kind == kind)
    if state is not None:
        query = query.where(StateViolation.state == state)
    if agent_states is not None:
        query = query.where(StateViolation.state.in_(list(agent_states)))
    if prospect_id is not None:
        query = query.where(StateViolation.prospect_id == prospect_id)
    query = newest_first(
        query, StateViolation.last_seen, StateViolation.id, limit=limit, before=before
    )
    return list(await session.scalars(query))


def is_stuck() -> ColumnElement[bool]:
    """A prospect is stuck when validation found it stuck or dropped, or its handoff is
    stalled or blocked, or its current state entry's handoff failed and nothing moved it."""
    return or_(
        exists().where(
            StateViolation.prospect_id == Prospect.id,
            StateViolation.resolved_at.is_(None),
            StateViolation.kind.in_(STUCK_KINDS),
        ),
        exists().where(
            Handoff.prospect_id == Prospect.id,
            Handoff.finished_at.is_(None),
            Handoff.status.in_(STUCK_HANDOFFS),
        ),
        exists().where(
            Handoff.prospect_id == Prospect.id,
            Handoff.status == HandoffStatus.FAILED.value,
            Handoff.from_state == Prospect.status,
            Handoff.state_entered_at == Prospect.status_changed_at,
        ),
    )


def _escaped(text: str) -> str:
    """``text`` for a LIKE pattern, its wildcards taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def prospect_page(
    session: AsyncSession,
    *,
    limit: int,
    status: str | None = None,
    tier: str | None = None,
    stuck: bool = False,
    text: str | None = None,
    before: tuple[datetime, int] | None = None,
) -> list[Any]:
    """Live prospects, the latest to change state first: (prospect, has contact email)."""
    query = select(Prospect, has_contact_email()).where(Prospect.deleted_at.is_(None))
    if status is not None:
        query = query.where(Prospect.status == status)
    if tier is not None:
        query = query.where(Prospect.tier == tier)
    if stuck:
        query = query.where(is_stuck())
    if text:
        pattern = f"%{_escaped(text.lower())}%"
        query = query.where(
            or_(
                Prospect.company_name.ilike(pattern, escape="\\"),
                Prospect.domain.ilike(pattern, escape="\\"),
            )
        )
    query = newest_first(query, Prospect.status_changed_at, Prospect.id, limit=limit, before=before)
    return list((await session.execute(query)).all())
