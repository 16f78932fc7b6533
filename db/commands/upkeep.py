"""What every cycle does last: note that it ran, watch the watchers, and send notifications.

The watchdog exists because the monitor must be monitored: if no monitor cycle has completed
for twice its interval, any other cycle (handoffs run every five minutes) raises an alert.
Each stalled handoff raises its own alert, about its prospect and for its agent, so the
inhibition rules can hold it back while that agent is known to be in trouble.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.commands.alerts import (
    AlertSpec,
    NotifyPolicy,
    open_alerts_of_kind,
    raise_alert,
    resolve_alert,
)
from db.dialect import insert_for
from db.models import CycleHeartbeat, Event, Handoff
from pipeline.handoffs import HandoffStatus
from pipeline.inhibition import STALLED_HANDOFF

WATCHDOG = "watchdog"
LEGACY_STALLED = "stalled_handoffs"
"""The one count-over-threshold alert stalled handoffs raised before each had its own."""


class UpkeepRules(BaseModel):
    watchdog_after: float
    """Seconds without a completed monitor cycle before the watchdog alert."""


async def note_caught_by_sweep(session: AsyncSession, caught: int, now: datetime) -> None:
    """One event for the dashboard's stream: the feed missed entries the sweep handed on
    (a clock skewed past the feed's overlap, or the feed not running). Once per cycle,
    however often the activity is retried."""
    await session.execute(
        insert_for(session, Event)
        .values(
            dedup_key=f"feed_missed:{now.isoformat()}",
            kind="feed_missed",
            payload={"caught_by_sweep": caught},
            created_at=now,
        )
        .on_conflict_do_nothing()
    )


async def beat(session: AsyncSession, mode: str, now: datetime) -> None:
    statement = insert_for(session, CycleHeartbeat).values(
        mode=mode, last_completed_at=now, first_completed_at=now
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["mode"],
            set_={"last_completed_at": statement.excluded.last_completed_at},
        )
    )


async def watch(
    session: AsyncSession, now: datetime, rules: UpkeepRules, policy: NotifyPolicy
) -> str:
    message = await _monitor_overdue(session, now, rules.watchdog_after)
    if message is not None:
        spec = AlertSpec(fingerprint=WATCHDOG, kind=WATCHDOG, severity="critical", message=message)
        return (await raise_alert(session, spec, now, policy)).value
    return (await resolve_alert(session, WATCHDOG, now, policy)).value


async def _monitor_overdue(session: AsyncSession, now: datetime, after: float) -> str | None:
    """Why the watchdog should bark, or None. A monitor that never completed is measured from
    the first cycle of any kind, so a monitor schedule broken from the start is caught too."""
    last = await session.scalar(
        select(CycleHeartbeat.last_completed_at).where(CycleHeartbeat.mode == "monitor")
    )
    if last is not None:
        if (now - last).total_seconds() <= after:
            return None
        return (
            f"no monitor cycle has completed since {last.isoformat()}; "
            "agent health is not being checked"
        )
    began = await session.scalar(select(func.min(CycleHeartbeat.first_completed_at)))
    if began is None or (now - began).total_seconds() <= after:
        return None
    return (
        f"no monitor cycle has ever completed, and cycles have run since {began.isoformat()}; "
        "agent health is not being checked"
    )


def stall_fingerprint(handoff_id: str) -> str:
    return f"{STALLED_HANDOFF}:{handoff_id}"


async def watch_stalls(session: AsyncSession, now: datetime, policy: NotifyPolicy) -> int:
    """One alert per open stalled handoff (raised, or refreshed); the alerts of handoffs no
    longer stalled are resolved (quietly if they were held and nobody was told). How many
    are stalled."""
    stalled = (
        await session.execute(
            select(Handoff.id, Handoff.prospect_id, Handoff.to_agent, Handoff.updated_at).where(
                Handoff.status == HandoffStatus.STALLED.value, Handoff.finished_at.is_(None)
            )
        )
    ).all()
    current = await open_alerts_of_kind(session, STALLED_HANDOFF)
    for row in stalled:
        fingerprint = stall_fingerprint(row.id)
        spec = AlertSpec(
            fingerprint=fingerprint,
            kind=STALLED_HANDOFF,
            agent_name=row.to_agent,
            severity="warning",
            message=(
                f"handoff {row.id} of prospect {row.prospect_id} to {row.to_agent} "
                f"is stalled (since {row.updated_at.isoformat()})"
            ),
            details={"prospect_id": row.prospect_id, "handoff_id": row.id},
        )
        await raise_alert(session, spec, now, policy, current.pop(fingerprint, None))
    for fingerprint, alert in current.items():
        await resolve_alert(session, fingerprint, now, policy, alert)
    await resolve_alert(session, LEGACY_STALLED, now, policy)
    return len(stalled)
