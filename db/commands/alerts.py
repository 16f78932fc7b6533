"""Alerts people trust: one unresolved alert per fingerprint, and notifications only when
they carry news.

The same condition seen again updates its open alert (last seen, count, severity, message).
People are told when an alert opens, when it gets worse, when it is still open (and not
acknowledged) after the repeat interval, and once when it resolves; never while its agent is
silenced. A notification is written to the outbox (``notifications``) in the same transaction
as the alert, one row per sink, and delivered afterwards: a sink that is down loses nothing.
Updates at or before the alert's last sighting are ignored, so a retried activity is harmless.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AgentControl, Alert, Notification, OrchestratorAction

log = logging.getLogger(__name__)

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


class AlertChange(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    RESOLVED = "resolved"


class AlertSpec(BaseModel):
    fingerprint: str
    kind: str
    severity: str
    message: str
    agent_name: str | None = None
    details: dict[str, Any] | None = None


class NotifyPolicy(BaseModel):
    sinks: list[str] = ["log"]
    repeat_after: timedelta = timedelta(hours=4)
    web_ui_url: str | None = None


async def open_alerts(session: AsyncSession, fingerprints: list[str]) -> dict[str, Alert]:
    rows = await session.scalars(
        select(Alert).where(Alert.fingerprint.in_(fingerprints), Alert.status != "resolved")
    )
    return {a.fingerprint: a for a in rows}


async def raise_alert(
    session: AsyncSession,
    spec: AlertSpec,
    now: datetime,
    policy: NotifyPolicy,
    current: Alert | None = None,
) -> AlertChange:
    """Open the alert, or refresh the open one (pass it as ``current`` when already read)."""
    if current is None:
        current = (await open_alerts(session, [spec.fingerprint])).get(spec.fingerprint)
    if current is None:
        alert = Alert(
            fingerprint=spec.fingerprint,
            kind=spec.kind,
            agent_name=spec.agent_name,
            severity=spec.severity,
            status="open",
            message=spec.message,
            details=spec.details,
            first_seen=now,
            last_seen=now,
            count=1,
        )
        session.add(alert)
        await session.flush()
        log.warning("alert opened: %s", spec.message)
        await _notify(session, alert, "opened", now, policy)
        return AlertChange.CREATED
    if current.last_seen >= now:
        return AlertChange.UNCHANGED
    current.severity, current.message, current.details = spec.severity, spec.message, spec.details
    current.last_seen, current.count = now, current.count + 1
    if current.notified_at is None:  # nobody has heard of it yet (it opened while silenced)
        await _notify(session, current, "opened", now, policy)
    elif SEVERITY_RANK[spec.severity] > SEVERITY_RANK[current.notified_severity or "info"]:
        await _notify(session, current, "worsened", now, policy)
    elif current.status == "open" and _due(current, now, policy.repeat_after):
        await _notify(session, current, "repeat", now, policy)
    return AlertChange.UPDATED


async def resolve_alert(
    session: AsyncSession,
    fingerprint: str,
    now: datetime,
    policy: NotifyPolicy,
    current: Alert | None = None,
) -> AlertChange:
    if current is None:
        current = (await open_alerts(session, [fingerprint])).get(fingerprint)
    if current is None:
        return AlertChange.UNCHANGED
    current.status, current.resolved_at, current.last_seen = "resolved", now, now
    log.info("alert resolved: %s", fingerprint)
    if current.notified_at is not None:  # people heard it open; they hear it close, once
        await _notify(session, current, "resolved", now, policy)
    return AlertChange.RESOLVED


async def alert_over_threshold(
    session: AsyncSession,
    spec: AlertSpec,
    count: int,
    threshold: int,
    now: datetime,
    policy: NotifyPolicy,
) -> AlertChange:
    """Raise ``spec`` while ``count`` is over ``threshold``; resolve it once it is not."""
    if count > threshold:
        return await raise_alert(session, spec, now, policy)
    return await resolve_alert(session, spec.fingerprint, now, policy)


def _due(alert: Alert, now: datetime, repeat_after: timedelta) -> bool:
    return alert.notified_at is None or now - alert.notified_at >= repeat_after


async def _silenced(session: AsyncSession, agent: str | None, now: datetime) -> bool:
    if agent is None:
        return False
    until = await session.scalar(
        select(AgentControl.silenced_until).where(AgentControl.agent_name == agent)
    )
    return until is not None and until > now


async def _notify(
    session: AsyncSession, alert: Alert, event: str, now: datetime, policy: NotifyPolicy
) -> None:
    if await _silenced(session, alert.agent_name, now):
        log.info(
            "alert %s %s while %s is silenced: not sent", alert.fingerprint, event, alert.agent_name
        )
        return
    payload = notification_payload(alert, event, policy.web_ui_url)
    for sink in policy.sinks:
        session.add(
            Notification(
                alert_id=alert.id,
                sink=sink,
                event=event,
                payload=payload,
                status="pending",
                attempts=0,
                created_at=now,
            )
        )
    if event != "resolved":
        alert.notified_at, alert.notified_severity = now, alert.severity


def notification_payload(alert: Alert, event: str, web_ui_url: str | None) -> dict[str, Any]:
    details = alert.details or {}
    return {
        "event": event,
        "alert_id": alert.id,
        "fingerprint": alert.fingerprint,
        "kind": alert.kind,
        "agent": alert.agent_name,
        "severity": alert.severity,
        "status": details.get("status"),
        "error_rate": details.get("error_rate"),
        "message": alert.message,
        "count": alert.count,
        "first_seen": alert.first_seen.isoformat(),
        "last_seen": alert.last_seen.isoformat(),
        "web_ui_url": web_ui_url,
    }


async def acknowledge(
    session: AsyncSession, alert_id: int, *, by: str | None, now: datetime
) -> Alert | None:
    """Someone is on it: an open alert becomes acknowledged (one conditional update, so the
    worker resolving it meanwhile wins, and a second click changes nothing), with an audit
    row the first time. The alert as it is now; ``None`` if there is none."""
    acked = await session.execute(
        update(Alert)
        .where(Alert.id == alert_id, Alert.status == "open")
        .values(status="acknowledged", acknowledged_at=now, acknowledged_by=by)
    )
    alert = await session.get(Alert, alert_id, populate_existing=True)
    if alert is not None and acked.rowcount:
        session.add(
            OrchestratorAction(
                action="alert_acknowledged",
                agent_name=alert.agent_name,
                created_at=now,
                details={"alert_id": alert_id, "fingerprint": alert.fingerprint, "by": by},
            )
        )
    await session.commit()
    return alert
