"""Turn a health snapshot into alerts and events.

Alerts are deduplicated by fingerprint: the same agent seen unhealthy again updates its open
alert (last seen, count, severity) instead of adding a row, and an agent that is healthy again
has its alert resolved. Writes are idempotent under activity retries: events carry a key made
from the cycle, and an alert already updated at this instant is left alone.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from db.commands.alerts import (
    AlertChange,
    AlertSpec,
    NotifyPolicy,
    open_alerts,
    raise_alert,
    rejudge_held,
    resolve_alert,
)
from db.commands.controls import open_circuits
from db.commands.upkeep import beat
from db.dialect import insert_for
from db.models import Event
from pipeline.health import AgentHealth, HealthStatus

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
    circuits_opened: list[str] = []


def alert_fingerprint(agent_name: str) -> str:
    return f"{AGENT_HEALTH_KIND}:{agent_name}"


def alert_message(health: AgentHealth) -> str:
    why = "; ".join(health.reasons)
    text = f"{health.agent_name} is {health.status.value}: {health.error_rate:.0%} error rate"
    return f"{text} ({why})" if why else text


async def record_health_findings(
    session: AsyncSession,
    input: RecordHealthInput,
    policy: NotifyPolicy | None = None,
    breaker: bool = True,
) -> HealthFindings:
    """Alerts for unhealthy agents (resolved when healthy again), their events, the circuit
    breaker for failing ones, and the monitor's heartbeat for the watchdog."""
    policy, findings = policy or NotifyPolicy(), HealthFindings()
    fingerprints = [alert_fingerprint(h.agent_name) for h in input.agents]
    current = await open_alerts(session, fingerprints)
    for health in input.agents:
        fingerprint = alert_fingerprint(health.agent_name)
        if health.is_unhealthy:
            findings.events_recorded += await _record_event(session, input.cycle_id, health)
            change = await raise_alert(
                session, _alert_spec(health), input.as_of, policy, current.get(fingerprint)
            )
            findings.alerts_created += change is AlertChange.CREATED
            findings.alerts_updated += change is AlertChange.UPDATED
        elif health.status is HealthStatus.HEALTHY and fingerprint in current:
            await resolve_alert(session, fingerprint, input.as_of, policy, current[fingerprint])
            findings.alerts_resolved += 1
    if breaker:
        failing = [h.agent_name for h in input.agents if h.status is HealthStatus.FAILING]
        findings.circuits_opened = await open_circuits(session, failing, input.as_of)
    await rejudge_held(session, input.as_of, policy)  # an agent that recovered lets go
    await beat(session, "monitor", input.as_of)
    await session.commit()
    return findings


def _alert_spec(health: AgentHealth) -> AlertSpec:
    return AlertSpec(
        fingerprint=alert_fingerprint(health.agent_name),
        kind=AGENT_HEALTH_KIND,
        agent_name=health.agent_name,
        severity=SEVERITY[health.status],
        message=alert_message(health),
        details=health.model_dump(mode="json"),
    )


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
