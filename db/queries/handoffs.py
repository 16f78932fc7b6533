"""SQL for handoffs: the trigger rules of ``pipeline.triggers`` as WHERE clauses, the paged
finder, and reads of one prospect. Every rule is evaluated by the database, never row by row
in Python."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Row, and_, exists, func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Contact, Handoff, Prospect
from pipeline.handoffs import OPEN_STATUSES, HandoffStatus, PendingHandoff, StartedPage
from pipeline.triggers import HANDOFF_TRIGGERS, HandoffTrigger

EMAIL_PATTERN = "%_@_%"
CLOCK_MARGIN = timedelta(seconds=5)
"""Workers' clocks may differ this much: the finder's ``since`` and a child's ledger row are
stamped by different processes."""


async def still_unbegun(
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


def pending_from_row(row: Handoff) -> PendingHandoff:
    """The state entry a ledger row hands off."""
    return PendingHandoff(
        prospect_id=row.prospect_id,
        from_state=row.from_state,
        state_entered_at=row.state_entered_at,
        to_agent=row.to_agent,
    )


def has_contact_email() -> ColumnElement[bool]:
    """At least one contact with something that looks like an address."""
    return exists().where(Contact.prospect_id == Prospect.id, Contact.email.like(EMAIL_PATTERN))


def trigger_clause(trigger: HandoffTrigger) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = [Prospect.status == trigger.state]
    if trigger.tiers is not None:
        parts.append(Prospect.tier.in_(sorted(trigger.tiers)))
    if trigger.requires_contact_email:
        parts.append(has_contact_email())
    return and_(*parts)


def not_yet_handed_off(claimed_by: str | None = None) -> ColumnElement[bool]:
    """No ledger row for this entry of the prospect into its current state, or, with
    ``claimed_by``, only an open one that this workflow run claimed: a run whose workflow
    task was lost after it claimed the entry asks again on replay and must get it back."""
    rows = [
        Handoff.prospect_id == Prospect.id,
        Handoff.from_state == Prospect.status,
        Handoff.state_entered_at == Prospect.status_changed_at,
    ]
    if claimed_by is not None:
        rows.append(or_(Handoff.workflow_run_id != claimed_by, Handoff.finished_at.is_not(None)))
    return ~exists().where(*rows)


@dataclass(frozen=True)
class PendingWindow:
    """One page of the finder: the pending handoffs among the next prospects in id order."""

    items: list[PendingHandoff]
    next_cursor: int | None
    """Where the next page starts (after this id); ``None`` once no prospect is left."""


async def find_pending_page(
    session: AsyncSession,
    after_id: int | None,
    limit: int,
    triggers: Mapping[str, HandoffTrigger] = HANDOFF_TRIGGERS,
) -> PendingWindow:
    """Pending handoffs among the next ``limit`` prospects in a trigger state, in id order.

    Two statements, so each prospect is read once per sweep: the ``limit``-th candidate's id,
    read from the ``(status, id)`` index alone (one seek per trigger state), bounds the page;
    then one pass over that id range applies the full rules (tier, contact email, not yet
    handed off). Judging ``limit`` rows per state and keeping the first ``limit`` of the
    merge did the expensive part up to six times over (bench/README.md, figure 3)."""
    bound = await _page_bound(session, after_id, limit, triggers)
    if bound is None:
        return PendingWindow(items=[], next_cursor=None)
    upper, full = bound
    query = select(Prospect.id, Prospect.status, Prospect.status_changed_at).where(
        Prospect.deleted_at.is_(None),
        Prospect.id <= upper,
        or_(*(trigger_clause(t) for t in triggers.values())),
        not_yet_handed_off(),
    )
    if after_id is not None:
        query = query.where(Prospect.id > after_id)
    rows = (await session.execute(query.order_by(Prospect.id))).all()
    items = pending_from_rows(rows, triggers)
    return PendingWindow(items=items, next_cursor=upper if full else None)


def pending_from_rows(
    rows: Sequence[Row[tuple[int, str, datetime]]], triggers: Mapping[str, HandoffTrigger]
) -> list[PendingHandoff]:
    """(id, status, status_changed_at) rows of prospects in a trigger state, as handoffs."""
    return [
        PendingHandoff(
            prospect_id=pid,
            from_state=status,
            state_entered_at=entered,
            to_agent=triggers[status].next_agent,
        )
        for pid, status, entered in rows
    ]


async def _page_bound(
    session: AsyncSession,
    after_id: int | None,
    limit: int,
    triggers: Mapping[str, HandoffTrigger],
) -> tuple[int, bool] | None:
    """The id of the ``limit``-th live prospect after ``after_id`` in a trigger state, and
    whether there were that many (``False``: the page reaches the end); ``None`` if none."""
    parts = []
    for state in triggers:
        part = (
            select(Prospect.id)
            .where(Prospect.deleted_at.is_(None), Prospect.status == state)
            .order_by(Prospect.id)
            .limit(limit)
        )
        if after_id is not None:
            part = part.where(Prospect.id > after_id)
        parts.append(select(part.subquery()))
    merged = union_all(*parts).subquery()
    ids = select(merged.c.id).order_by(merged.c.id).limit(limit).subquery()
    row = (await session.execute(select(func.max(ids.c.id), func.count()))).one()
    upper, found = row
    if upper is None:
        return None
    return int(upper), found >= limit


async def pending_for_prospect(
    session: AsyncSession,
    prospect_id: int,
    triggers: Mapping[str, HandoffTrigger] = HANDOFF_TRIGGERS,
    *,
    claimed_by: str | None = None,
) -> PendingHandoff | None:
    """The handoff this prospect is waiting for now, if any (the same rules as the finder);
    ``claimed_by`` a workflow run id: also the entry that run claimed and has not finished."""
    query = select(Prospect.id, Prospect.status, Prospect.status_changed_at).where(
        Prospect.id == prospect_id,
        Prospect.deleted_at.is_(None),
        or_(*(trigger_clause(t) for t in triggers.values())),
        not_yet_handed_off(claimed_by),
    )
    row = (await session.execute(query)).first()
    if row is None:
        return None
    pid, status, entered = row
    return PendingHandoff(
        prospect_id=pid,
        from_state=status,
        state_entered_at=entered,
        to_agent=triggers[status].next_agent,
    )


async def why_no_handoff(session: AsyncSession, prospect_id: int) -> str | None:
    """Why the prospect waits for no handoff now (deleted, a state without a trigger, a
    condition that does not hold, this entry already handed off); ``None`` if it does not
    exist. Call it when ``pending_for_prospect`` found nothing."""
    query = select(
        Prospect.status,
        Prospect.status_changed_at,
        Prospect.deleted_at,
        Prospect.tier,
        has_contact_email(),
    ).where(Prospect.id == prospect_id)
    row = (await session.execute(query)).first()
    if row is None:
        return None
    status, entered, deleted_at, tier, has_email = row
    trigger = HANDOFF_TRIGGERS.get(status)
    if deleted_at is not None:
        return f"prospect {prospect_id} is deleted"
    if trigger is None:
        return f"prospect {prospect_id} is {status!r}, a state no trigger hands on"
    if not trigger.admits(tier=tier, has_contact_email=bool(has_email)):
        return f"the {status!r} trigger does not admit prospect {prospect_id}: {_unmet(trigger)}"
    handed = await session.scalar(
        select(Handoff.status).where(
            Handoff.prospect_id == prospect_id,
            Handoff.from_state == status,
            Handoff.state_entered_at == entered,
        )
    )
    entry = f"its entry into {status!r} at {entered.isoformat()}"
    if handed is not None and HandoffStatus(handed) in OPEN_STATUSES:
        return f"{entry} has a handoff open ({handed})"
    return f"{entry} was already handed off ({handed})"


def _unmet(trigger: HandoffTrigger) -> str:
    needs = []
    if trigger.tiers is not None:
        needs.append(f"tier one of {', '.join(sorted(trigger.tiers))}")
    if trigger.requires_contact_email:
        needs.append("a contact with an email")
    return "it needs " + " and ".join(needs)


async def why_not_pending(session: AsyncSession, pending: PendingHandoff) -> str | None:
    """``None`` when the prospect still waits for exactly this handoff; otherwise why not."""
    trigger = HANDOFF_TRIGGERS.get(pending.from_state)
    query = select(
        Prospect.status,
        Prospect.status_changed_at,
        Prospect.deleted_at,
        trigger_clause(trigger) if trigger else Prospect.id.is_(None),
    ).where(Prospect.id == pending.prospect_id)
    row = (await session.execute(query)).first()
    if row is None:
        return "prospect no longer exists"
    status, entered, deleted_at, admitted = row
    if deleted_at is not None:
        return "prospect was deleted"
    if status != pending.from_state or entered != pending.state_entered_at:
        return f"prospect moved to {status!r} at {entered.isoformat()}"
    if not admitted:
        return f"the {pending.from_state!r} trigger's condition no longer holds"
    return None


async def pending_counts(session: AsyncSession) -> dict[str, int]:
    """Queue depth: prospects waiting for a handoff, per target agent (one grouped query)."""
    rows = await session.execute(
        select(Prospect.status, func.count())
        .where(
            Prospect.deleted_at.is_(None),
            or_(*(trigger_clause(t) for t in HANDOFF_TRIGGERS.values())),
            not_yet_handed_off(),
        )
        .group_by(Prospect.status)
    )
    depth: dict[str, int] = {}
    for status, n in rows.all():
        agent = HANDOFF_TRIGGERS[status].next_agent
        depth[agent] = depth.get(agent, 0) + n
    return depth


async def count_in_flight(session: AsyncSession, since: datetime) -> int:
    """Open ledger rows of live handoffs. A running or stalled row older than a lease
    (``hard_timeout`` plus margin, ``since``) belongs to no live run: counting it would hold
    every later sweep back for good. A blocked handoff waits for its record lease as long
    as another agent keeps it, and its row moves only when its status does, so it counts at
    any age (an abandoned one until it is retried or cancelled). Reads the ``(status,
    to_agent)`` index: it costs the open rows, never the finished history."""
    query = select(func.count()).where(
        Handoff.status.in_(sorted(s.value for s in OPEN_STATUSES)),
        or_(Handoff.status == HandoffStatus.BLOCKED.value, Handoff.updated_at >= since),
    )
    return int(await session.scalar(query) or 0)


async def count_begun(session: AsyncSession, page: StartedPage) -> int:
    """How many of the page's prospects have a ledger row written since the page was found:
    its handoffs that have begun (a chained hop is one more row of the same prospect)."""
    query = select(func.count(func.distinct(Handoff.prospect_id))).where(
        Handoff.prospect_id <= page.through_id, Handoff.created_at >= page.since - CLOCK_MARGIN
    )
    if page.prospect_ids:
        query = query.where(Handoff.prospect_id.in_(page.prospect_ids))
    if page.after_id is not None:
        query = query.where(Handoff.prospect_id > page.after_id)
    return int(await session.scalar(query) or 0)
