"""Alerts people trust: one unresolved alert per fingerprint, and notifications only when
they carry news.

The same condition seen again updates its open alert (last seen, count, severity, message).
People are told when an alert opens, when it gets worse, when it is still open (and not
acknowledged) after the repeat interval, and once when it resolves; never while its agent is
silenced. An alert whose agent is already known to be in trouble is held back instead
(``pipeline.inhibition``: ``held_by`` names what holds it, the holder counts it) and judged
again once that clears (:func:`rejudge_held`). A notification is written to the outbox
(``notifications``) in the same transaction as the alert, one row per sink, and delivered
afterwards: a sink that is down loses nothing.
Updates at or before the alert's last sighting are ignored, so a retried activity is harmless.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AgentControl, Alert, Notification, OrchestratorAction
from pipeline.inhibition import (
    CIRCUIT_OPEN,
    PAUSED,
    SOURCE_KINDS,
    control_hold,
    inhibiting_controls,
    is_inhibitable,
    source_kinds,
)

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
    dashboard_url: str | None = None
    """The API's public base URL: each notification links to its dashboard view there."""


async def open_alerts(session: AsyncSession, fingerprints: list[str]) -> dict[str, Alert]:
    rows = await session.scalars(
        select(Alert).where(Alert.fingerprint.in_(fingerprints), Alert.status != "resolved")
    )
    return {a.fingerprint: a for a in rows}


async def open_alerts_of_kind(session: AsyncSession, kind: str) -> dict[str, Alert]:
    """Every unresolved alert of ``kind``, by fingerprint (the ``ix_alerts_status_agent``
    index narrows it to the unresolved ones)."""
    rows = await session.scalars(
        select(Alert).where(Alert.kind == kind, Alert.status != "resolved")
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


async def _hold(session: AsyncSession, alert: Alert, control: AgentControl | None) -> str | None:
    """What inhibits ``alert`` now (an open alert's fingerprint, or the agent's pause or open
    circuit), or ``None``: the rules of ``pipeline.inhibition``, matched on the agent."""
    agent = alert.agent_name
    if agent is None or not is_inhibitable(alert.kind):
        return None
    sources = [f"{kind}:{agent}" for kind in source_kinds(alert.kind)]
    sources = [f for f in sources if f != alert.fingerprint]
    holding = await open_alerts(session, sources) if sources else {}
    for fingerprint in sources:
        if fingerprint in holding:
            return fingerprint
    controls = inhibiting_controls(alert.kind)
    if control is not None and PAUSED in controls and control.paused:
        return control_hold(PAUSED, agent)
    if control is not None and CIRCUIT_OPEN in controls and control.circuit_state != "closed":
        return control_hold(CIRCUIT_OPEN, agent)
    return None


async def _notify(
    session: AsyncSession, alert: Alert, event: str, now: datetime, policy: NotifyPolicy
) -> None:
    control = await session.get(AgentControl, alert.agent_name) if alert.agent_name else None
    if event != "resolved":
        alert.held_by = await _hold(session, alert, control)
        if alert.held_by is not None:
            log.info("alert %s %s held by %s", alert.fingerprint, event, alert.held_by)
            return
    if control is not None and control.silenced_until and control.silenced_until > now:
        log.info(
            "alert %s %s while %s is silenced: not sent", alert.fingerprint, event, alert.agent_name
        )
        return
    payload = notification_payload(alert, event, policy.web_ui_url, policy.dashboard_url)
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


async def rejudge_held(session: AsyncSession, now: datetime, policy: NotifyPolicy) -> int:
    """Judge every held, still open alert again: told now if what held it has cleared (it
    still holds, so people hear of it once), held on otherwise; then each holding alert
    counts what it holds (``details.held``). How many were told."""
    held = list(
        await session.scalars(
            select(Alert)
            .where(Alert.held_by.is_not(None), Alert.status == "open")
            .order_by(Alert.id)
        )
    )
    told = 0
    for alert in held:
        await _notify(session, alert, "opened", now, policy)
        told += alert.held_by is None
    await _count_held(session)
    return told


async def _count_held(session: AsyncSession) -> None:
    counts = dict(
        (
            await session.execute(
                select(Alert.held_by, func.count())
                .where(Alert.held_by.is_not(None), Alert.status != "resolved")
                .group_by(Alert.held_by)
            )
        ).all()
    )
    holders = await session.scalars(
        select(Alert).where(
            Alert.kind.in_(sorted(SOURCE_KINDS)),
            Alert.status != "resolved",
        )
    )
    for holder in holders:
        count = counts.get(holder.fingerprint, 0)
        if (holder.details or {}).get("held", 0) != count:
            holder.details = {**(holder.details or {}), "held": count}


def dashboard_link(alert: Alert, base: str | None) -> str | None:
    """The dashboard view of what the alert is about: its prospect, else its agent."""
    if base is None:
        return None
    prospect = (alert.details or {}).get("prospect_id")
    if prospect is not None:
        return f"{base.rstrip('/')}/dashboard#prospect={prospect}"
    if alert.agent_name is not None:
        return f"{base.rstrip('/')}/dashboard#agent={quote(alert.agent_name)}"
    return f"{base.rstrip('/')}/dashboard"


def notification_payload(
    alert: Alert, event: str, web_ui_url: str | None, dashboard_url: str | None = None
) -> dict[str, Any]:
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
        "dashboard_url": dashboard_link(alert, dashboard_url),
        "prospect_id": details.get("prospect_id"),
        "held": details.get("held", 0),
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
