"""The alert table's one rule: at most one unresolved alert per fingerprint.

The same condition seen again updates its open alert (last seen, count, severity, message)
instead of adding a row; a condition that no longer holds resolves it. Updates at or before
the alert's last sighting are ignored, which makes a retried activity harmless.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Alert

log = logging.getLogger(__name__)


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


async def open_alerts(session: AsyncSession, fingerprints: list[str]) -> dict[str, Alert]:
    rows = await session.scalars(
        select(Alert).where(Alert.fingerprint.in_(fingerprints), Alert.status != "resolved")
    )
    return {a.fingerprint: a for a in rows}


async def raise_alert(
    session: AsyncSession, spec: AlertSpec, now: datetime, current: Alert | None = None
) -> AlertChange:
    """Open the alert, or refresh the open one (pass it as ``current`` when already read)."""
    if current is None:
        current = (await open_alerts(session, [spec.fingerprint])).get(spec.fingerprint)
    if current is None:
        session.add(
            Alert(
                fingerprint=spec.fingerprint, kind=spec.kind, agent_name=spec.agent_name,
                severity=spec.severity, status="open", message=spec.message,
                details=spec.details, first_seen=now, last_seen=now, count=1,
            )
        )  # fmt: skip
        log.warning("alert opened: %s", spec.message)
        return AlertChange.CREATED
    if current.last_seen >= now:
        return AlertChange.UNCHANGED
    current.severity, current.message, current.details = spec.severity, spec.message, spec.details
    current.last_seen, current.count = now, current.count + 1
    return AlertChange.UPDATED


async def resolve_alert(
    session: AsyncSession, fingerprint: str, now: datetime, current: Alert | None = None
) -> AlertChange:
    if current is None:
        current = (await open_alerts(session, [fingerprint])).get(fingerprint)
    if current is None:
        return AlertChange.UNCHANGED
    current.status, current.resolved_at, current.last_seen = "resolved", now, now
    log.info("alert resolved: %s", fingerprint)
    return AlertChange.RESOLVED
