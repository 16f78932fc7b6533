"""State validation: every rule of ``pipeline.validation`` as one ``INSERT ... SELECT``.

The database finds the violations and records them (one open row per prospect and kind,
refreshed when seen again) without a row passing through Python. Sweeps go by ranges of
prospect ids, so each statement stays bounded; once every range is done, open rows not seen
in this sweep are closed: the violation no longer holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from db.commands.alerts import AlertSpec, NotifyPolicy, alert_over_threshold
from db.dialect import insert_for
from db.models import Activity, OutreachSequence, Prospect, StateViolation
from db.queries.handoffs import has_contact_email, not_yet_handed_off, trigger_clause
from pipeline.states import KNOWN_STATES
from pipeline.triggers import HANDOFF_TRIGGERS
from pipeline.validation import ALLOWED_MOVES, ValidationRules, ViolationKind

VIOLATIONS_ALERT = "state_violations"


class ClosedViolations(BaseModel):
    resolved: int
    open_total: int
    open_by_kind: dict[str, int]
    alert: str


def _live(low: int, high: int) -> ColumnElement[bool]:
    return and_(Prospect.deleted_at.is_(None), Prospect.id >= low, Prospect.id < high)


def _prospect_rule(where: ColumnElement[bool], detail: Any) -> Any:
    return lambda low, high, _now, _rules: select(Prospect.id, Prospect.status, detail).where(
        _live(low, high), where
    )


def _stuck(low: int, high: int, now: datetime, rules: ValidationRules) -> Select[Any]:
    late = [
        and_(Prospect.status == s, Prospect.status_changed_at < now - d)
        for s, d in rules.dwell.items()
    ]
    detail = case(
        {s: f"in {s} longer than its dwell time of {d}" for s, d in rules.dwell.items()},
        value=Prospect.status,
        else_="stuck",
    )
    return select(Prospect.id, Prospect.status, detail).where(_live(low, high), or_(*late))


def _dropped(low: int, high: int, now: datetime, rules: ValidationRules) -> Select[Any]:
    waiting = or_(*(trigger_clause(t) for t in HANDOFF_TRIGGERS.values()))
    detail = literal("waits for a handoff that was never started")
    return select(Prospect.id, Prospect.status, detail).where(
        _live(low, high),
        waiting,
        not_yet_handed_off(),
        Prospect.status_changed_at < now - rules.dropped_handoff_grace,
    )


def _illegal(low: int, high: int, now: datetime, rules: ValidationRules) -> Select[Any]:
    moved_from = func.coalesce(Activity.details["from"].as_string(), "?")
    moved_to = func.coalesce(Activity.details["to"].as_string(), "?")
    return (
        select(
            Activity.prospect_id,
            func.max(moved_to),
            literal("illegal move, e.g. ") + func.max(moved_from + " -> " + moved_to),
        )
        .join(Prospect, Prospect.id == Activity.prospect_id)
        .where(
            _live(low, high),
            Activity.type == "status_change",
            Activity.created_at >= now - rules.transition_lookback,
            Activity.created_at <= now,
            ~tuple_(moved_from, moved_to).in_(ALLOWED_MOVES),
        )
        .group_by(Activity.prospect_id)
    )


RULES: Mapping[ViolationKind, Any] = {
    ViolationKind.UNKNOWN_STATE: _prospect_rule(
        Prospect.status.not_in(sorted(KNOWN_STATES)), literal("status not in the state graph")
    ),
    ViolationKind.STUCK: _stuck,
    ViolationKind.DROPPED_HANDOFF: _dropped,
    ViolationKind.ILLEGAL_TRANSITION: _illegal,
    ViolationKind.SCORED_WITHOUT_TIER: _prospect_rule(
        and_(Prospect.status == "scored", Prospect.tier.is_(None)), literal("scored, no tier")
    ),
    ViolationKind.RESEARCH_WITHOUT_ACTIVITY: _prospect_rule(
        and_(
            Prospect.status == "research_complete",
            ~exists().where(
                Activity.prospect_id == Prospect.id, Activity.type == "research_completed"
            ),
        ),
        literal("research_complete without a research_completed activity"),
    ),
    ViolationKind.SEQUENCE_WITHOUT_ACTIVE: _prospect_rule(
        and_(
            Prospect.status == "in_sequence",
            ~exists().where(
                OutreachSequence.prospect_id == Prospect.id, OutreachSequence.status == "active"
            ),
        ),
        literal("in_sequence without an active sequence"),
    ),
    ViolationKind.OUTREACH_WITHOUT_EMAIL: _prospect_rule(
        and_(Prospect.status == "ready_for_outreach", ~has_contact_email()),
        literal("ready_for_outreach without any contact email"),
    ),
}


async def record_range(
    session: AsyncSession, rules: ValidationRules, low: int, high: int, now: datetime
) -> dict[str, int]:
    """Record every kind of violation among prospects ``low <= id < high``; counts found."""
    found: dict[str, int] = {}
    for kind, rule in RULES.items():
        query = rule(low, high, now, rules)
        found[kind.value] = await _upsert(session, kind, query, now)
    await session.commit()
    return found


async def _upsert(
    session: AsyncSession, kind: ViolationKind, query: Select[Any], now: datetime
) -> int:
    rows = query.add_columns(
        literal(kind.value),
        literal(now, StateViolation.first_seen.type),
        literal(now, StateViolation.last_seen.type),
    )
    statement = insert_for(session, StateViolation).from_select(
        ["prospect_id", "state", "detail", "kind", "first_seen", "last_seen"], rows
    )
    statement = statement.on_conflict_do_update(
        index_elements=["prospect_id", "kind"],
        index_where=StateViolation.resolved_at.is_(None),
        set_={
            "last_seen": statement.excluded.last_seen,
            "state": statement.excluded.state,
            "detail": statement.excluded.detail,
        },
    )
    result = await session.execute(statement)
    return result.rowcount or 0


async def close_sweep(
    session: AsyncSession,
    rules: ValidationRules,
    now: datetime,
    policy: NotifyPolicy | None = None,
) -> ClosedViolations:
    """Close what this sweep did not see again, and alert when too many stay open."""
    resolved = await session.execute(
        update(StateViolation)
        .where(StateViolation.resolved_at.is_(None), StateViolation.last_seen < now)
        .values(resolved_at=now)
    )
    rows = await session.execute(
        select(StateViolation.kind, func.count())
        .where(StateViolation.resolved_at.is_(None))
        .group_by(StateViolation.kind)
    )
    by_kind = {kind: n for kind, n in rows.all()}
    total = sum(by_kind.values())
    spec = AlertSpec(
        fingerprint=VIOLATIONS_ALERT,
        kind=VIOLATIONS_ALERT,
        severity="warning",
        message=f"{total} open state violations (threshold {rules.alert_threshold})",
        details={"open_by_kind": by_kind},
    )
    change = await alert_over_threshold(
        session, spec, total, rules.alert_threshold, now, policy or NotifyPolicy()
    )
    await session.commit()
    return ClosedViolations(
        resolved=resolved.rowcount or 0, open_total=total, open_by_kind=by_kind, alert=change.value
    )


async def prospect_id_range(session: AsyncSession) -> tuple[int | None, int | None]:
    """The lowest and highest prospect id: the validation sweep's ranges span them."""
    low, high = (await session.execute(select(func.min(Prospect.id), func.max(Prospect.id)))).one()
    return low, high
