"""Turn a health snapshot into alerts and events.

Alerts are deduplicated by fingerprint: the same agent seen unhealthy again updates its open
alert (last seen, count, severity) instead of adding a row, and an agent that is healthy again
has its alert resolved. Writes are idempotent under activity retries: events carry a key made
from the cycle, and an alert already updated at this instant is left alone.
"""

from __future__ import annotations

import logging
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from db.dialect import insert_for
from db.models import Alert, Event
from pipeline.health import AgentHealth, HealthStatus

log = logging.getLogger(__name__)

AGENT_HEALTH_KIND = "agent_health"
SEVERITY = {HealthStatus.DEGRADED: "warning", HealthStatus.FAILING: "critical"}


class RecordHealthInput(BaseModel):
    cycle_id: str
    """The cycle's workflow run id: makes event writes idempotent."""
    as_of: datetime
    agents: list[AgentHealth]


class HealthFindings(BaseModel):
    alerts_created: int = 0
    alerts_updated: int = 0
    alerts_resolved: int = 0
    events_recorded: int = 0


def alert_fingerprint(agent_name: str) -> str:
    return f"{AGENT_HEALTH_KIND}:{agent_name}"


def alert_message(health: AgentHealth) -> str:
    why = "; ".join(health.reasons)
    text = f"{health.agent_name} is {health.status.value}: {health.error_rate:.0%} error rate"
    return f"{text} ({why})" if why else text


async def record_health_findings(session: AsyncSession, input: RecordHealthInput) -> HealthFindings:
    findings = HealthFindings()
    open_alerts = await _open_agent_alerts(session, [h.agent_name for h in input.agents])
    for health in input.agents:
        alert = open_alerts.get(health.agent_name)
        if health.is_unhealthy:
            findings.events_recorded += await _record_event(session, input.cycle_id, health)
            if alert is None:
                session.add(_new_alert(health, input.as_of))
                findings.alerts_created += 1
                log.warning("alert opened: %s", alert_message(health))
            elif alert.last_seen < input.as_of:
                _refresh(alert, health, input.as_of)
                findings.alerts_updated += 1
        elif health.status is HealthStatus.HEALTHY and alert is not None:
            alert.status, alert.resolved_at, alert.last_seen = "resolved", input.as_of, input.as_of
            findings.alerts_resolved += 1
            log.info("alert resolved: %s is healthy again", health.agent_name)
    await session.commit()
    return findings


async def _open_agent_alerts(session: AsyncSession, agents: list[str]) -> dict[str, Alert]:
    rows = await session.scalars(
        select(Alert).where(
            Alert.fingerprint.in_([alert_fingerprint(a) for a in agents]),
            Alert.status != "resolved",
        )
    )
    return {a.agent_name: a for a in rows if a.agent_name}


async def _record_event(session: AsyncSession, cycle_id: str, health: AgentHealth) -> int:
    """Insert the ``agent_unhealthy`` event once per cycle and agent; 1 if it was new."""
    statement = (
        insert_for(session, Event)
        .values(
            dedup_key=f"{cycle_id}:agent_unhealthy:{health.agent_name}",
            kind="agent_unhealthy",
            agent_name=health.agent_name,
            payload={
                "agent": health.agent_name,
                "status": health.status.value,
                "error_rate": health.error_rate,
                "reasons": health.reasons,
            },
            created_at=health.checked_at,
        )
        .on_conflict_do_nothing(index_elements=["dedup_key"])
    )
    result = await session.execute(statement)
    return result.rowcount or 0


def _new_alert(health: AgentHealth, now: datetime) -> Alert:
    return Alert(
        fingerprint=alert_fingerprint(health.agent_name),
        kind=AGENT_HEALTH_KIND,
        agent_name=health.agent_name,
        severity=SEVERITY[health.status],
        status="open",
        message=alert_message(health),
        details=health.model_dump(mode="json"),
        first_seen=now,
        last_seen=now,
        count=1,
    )


def _refresh(alert: Alert, health: AgentHealth, now: datetime) -> None:
    alert.severity = SEVERITY[health.status]
    alert.message = alert_message(health)
    alert.details = health.model_dump(mode="json")
    alert.last_seen = now
    alert.count += 1


class FindingsActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn(name="record_health_findings")
    async def record_health_findings(self, input: RecordHealthInput) -> HealthFindings:
        async with self._sessionmaker() as session:
            return await record_health_findings(session, input)
