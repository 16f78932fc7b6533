"""Agent controls: operators' pause, and the automatic circuit breaker.

A failing agent's circuit opens: new handoffs to it are deferred, not dropped. After the
cool-down one probe handoff is let through (half-open); its success closes the circuit, its
failure opens it again. A paused agent's handoffs are deferred the same way, until resumed.
Every change is an audit row and an event.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AgentControl, Event, OrchestratorAction
from pipeline.handoffs import PendingHandoff


class Circuit(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


async def control_of(session: AsyncSession, agent: str, now: datetime) -> AgentControl:
    control = await session.get(AgentControl, agent)
    if control is None:
        control = AgentControl(
            agent_name=agent, paused=False, circuit_state=Circuit.CLOSED.value, updated_at=now
        )
        session.add(control)
        await session.flush()
    return control


def record_change(
    session: AsyncSession, agent: str, action: str, now: datetime, **details: object
) -> None:
    """One audit row and one event for a change of an agent's controls."""
    session.add(
        OrchestratorAction(action=action, agent_name=agent, created_at=now, details=dict(details))
    )
    session.add(
        Event(
            dedup_key=f"{action}:{agent}:{now.isoformat()}",
            kind=action,
            agent_name=agent,
            payload={"agent": agent, **details},
            created_at=now,
        )
    )


async def open_circuits(session: AsyncSession, failing: Iterable[str], now: datetime) -> list[str]:
    """Open the closed circuits of failing agents; the agents whose circuit changed."""
    opened = []
    for agent in failing:
        control = await control_of(session, agent, now)
        if control.circuit_state == Circuit.CLOSED.value:
            control.circuit_state, control.circuit_changed_at = Circuit.OPEN.value, now
            control.updated_at = now
            record_change(session, agent, "circuit_opened", now, reason="agent is failing")
            opened.append(agent)
    return opened


async def settle_probe(
    session: AsyncSession, agent: str, handoff_id: str, succeeded: bool, now: datetime
) -> str | None:
    """After a handoff ends: if it was the half-open circuit's probe, close or re-open it."""
    control = await session.get(AgentControl, agent)
    if control is None or control.probe_handoff_id != handoff_id:
        return None
    state = Circuit.CLOSED if succeeded else Circuit.OPEN
    control.circuit_state, control.circuit_changed_at = state.value, now
    control.probe_handoff_id, control.updated_at = None, now
    action = "circuit_closed" if succeeded else "circuit_reopened"
    record_change(session, agent, action, now, probe=handoff_id)
    return state.value


async def release_probe(session: AsyncSession, agent: str, handoff_id: str, now: datetime) -> None:
    """A probe that never reached the agent (superseded, already done) proves nothing: the
    circuit goes back to open, cooled down, so the next sweep sends another probe."""
    released = await session.execute(
        update(AgentControl)
        .where(AgentControl.agent_name == agent, AgentControl.probe_handoff_id == handoff_id)
        .values(circuit_state=Circuit.OPEN.value, probe_handoff_id=None, updated_at=now)
    )
    if released.rowcount:
        record_change(session, agent, "probe_released", now, probe=handoff_id)


async def deferrals(
    session: AsyncSession,
    items: list[PendingHandoff],
    now: datetime,
    cooldown: timedelta,
) -> dict[str, str]:
    """Which of these handoffs must wait, and why (handoff id -> reason). A cooled-down open
    circuit lets exactly one through as its probe, claimed atomically."""
    agents = {p.to_agent for p in items}
    controls = {
        c.agent_name: c
        for c in await session.scalars(
            select(AgentControl).where(AgentControl.agent_name.in_(agents))
        )
    }
    waiting: dict[str, str] = {}
    for pending in items:
        control = controls.get(pending.to_agent)
        if control is None:
            continue
        if control.paused:
            waiting[pending.id] = "paused"
        elif control.circuit_state != Circuit.CLOSED.value and not await _probe(
            session, control, pending, now, cooldown
        ):
            waiting[pending.id] = "circuit_open"
    await session.commit()
    return waiting


async def _probe(
    session: AsyncSession,
    control: AgentControl,
    pending: PendingHandoff,
    now: datetime,
    cooldown: timedelta,
) -> bool:
    """Whether ``pending`` may go as the probe of ``control``'s circuit."""
    if control.probe_handoff_id == pending.id:
        return True
    cooled = control.circuit_changed_at is not None and control.circuit_changed_at <= now - cooldown
    if control.circuit_state != Circuit.OPEN.value or not cooled:
        return False
    claimed = await session.execute(
        update(AgentControl)
        .where(
            AgentControl.agent_name == control.agent_name,
            AgentControl.circuit_state == Circuit.OPEN.value,
        )
        .values(
            circuit_state=Circuit.HALF_OPEN.value,
            probe_handoff_id=pending.id,
            circuit_changed_at=now,
            updated_at=now,
        )
    )
    if not claimed.rowcount:
        return False
    control.circuit_state, control.probe_handoff_id = Circuit.HALF_OPEN.value, pending.id
    record_change(session, control.agent_name, "circuit_half_open", now, probe=pending.id)
    return True


async def blocked_agents(session: AsyncSession) -> set[str]:
    """Agents new handoffs must not reach right now (paused, or circuit not closed)."""
    rows = await session.scalars(
        select(AgentControl.agent_name).where(
            (AgentControl.paused.is_(True)) | (AgentControl.circuit_state != Circuit.CLOSED.value)
        )
    )
    return set(rows)
