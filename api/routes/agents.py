"""Agents: health with controls and queue depth; pause, resume and silence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, Request
from pydantic import BaseModel, Field
from temporalio.service import RPCError

from api.deps import SessionDep, SettingsDep, TemporalDep
from api.presence import agents_presence
from api.schemas import NO_NUL, errors
from api.temporal import TemporalUnavailable
from db.commands.controls import control_of, record_change
from db.models import AgentControl
from db.queries.handoffs import pending_counts
from db.queries.health import compute_agent_health
from db.queries.ledger import agent_controls
from orchestrator.settings import Settings
from pipeline.health import AgentHealth
from pipeline.presence import AgentPresence
from workflows.starters import start_cycle
from workflows.types import CycleInput

router = APIRouter(prefix="/api/v1/agents", tags=["agents"], responses=errors(401))
CONTROL_ERRORS = errors(403, 404, 422)
BODY_ERRORS = errors(400, 403, 404, 422)
AgentPath = Annotated[str, Path(max_length=64, description="An agent named in ORCH_AGENTS")]
MAX_SILENCE = timedelta(days=30)


class AgentOut(BaseModel):
    name: str
    health: AgentHealth
    paused: bool
    paused_reason: str | None
    circuit_state: str
    circuit_changed_at: datetime | None
    silenced_until: datetime | None
    queue_depth: int
    """Prospects waiting for a handoff to this agent."""
    presence: AgentPresence | None = None
    """Whether a worker polls its task queue, or its HTTP endpoint answered lately."""


class PauseIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500, pattern=NO_NUL)


class SilenceIn(BaseModel):
    until: datetime = Field(description="Aware time (with a zone), at most 30 days ahead")


class ControlOut(BaseModel):
    name: str
    paused: bool
    paused_reason: str | None
    circuit_state: str
    silenced_until: datetime | None
    detail: str | None = None


def _known(settings: Settings, name: str) -> str:
    if name not in settings.agents:
        known = ", ".join(settings.agents)
        raise HTTPException(404, detail=f"unknown agent {name!r}; configured agents: {known}")
    return name


def _out(control: AgentControl, detail: str | None = None) -> ControlOut:
    return ControlOut(
        name=control.agent_name,
        paused=control.paused,
        paused_reason=control.paused_reason,
        circuit_state=control.circuit_state,
        silenced_until=control.silenced_until,
        detail=detail,
    )


@router.get("", response_model=list[AgentOut])
async def list_agents(
    *, request: Request, session: SessionDep, settings: SettingsDep, temporal: TemporalDep
) -> list[AgentOut]:
    """Every configured agent: health, pause and circuit state, queue depth, presence."""
    now = datetime.now(UTC)
    healths = await compute_agent_health(session, settings.agents, settings.health, now)
    controls = await agent_controls(session)
    depth = await pending_counts(session)
    presence = await agents_presence(request, session, temporal, settings)
    out = []
    for health in healths:
        c = controls.get(health.agent_name)
        out.append(
            AgentOut(
                name=health.agent_name,
                health=health,
                paused=bool(c and c.paused),
                paused_reason=c.paused_reason if c else None,
                circuit_state=c.circuit_state if c else "closed",
                circuit_changed_at=c.circuit_changed_at if c else None,
                silenced_until=c.silenced_until if c else None,
                queue_depth=depth.get(health.agent_name, 0),
                presence=presence.get(health.agent_name),
            )
        )
    return out


@router.post("/{name}/pause", response_model=ControlOut, responses=BODY_ERRORS)
async def pause_agent(
    *,
    name: AgentPath,
    body: PauseIn,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> ControlOut:
    """Defer new handoffs to this agent (nothing is dropped) until it is resumed."""
    now = datetime.now(UTC)
    control = await control_of(session, _known(settings, name), now)
    control.paused, control.paused_reason, control.updated_at = True, body.reason, now
    record_change(session, name, "agent_paused", now, reason=body.reason, by=_who(request))
    await session.commit()
    return _out(control)


@router.post("/{name}/resume", response_model=ControlOut, responses=CONTROL_ERRORS)
async def resume_agent(
    *,
    name: AgentPath,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    request: Request,
) -> ControlOut:
    """Let handoffs reach the agent again; deferred ones start at once (a handoffs cycle)."""
    now = datetime.now(UTC)
    control = await control_of(session, _known(settings, name), now)
    control.paused, control.paused_reason, control.updated_at = False, None, now
    record_change(session, name, "agent_resumed", now, by=_who(request))
    await session.commit()
    try:
        client = await temporal.client()
        handle = await start_cycle(
            client,
            settings.temporal.task_queue,
            CycleInput(mode="handoffs", released=True),
            started_by=f"resume-{name}",
            summary=f"handoffs after {name} was resumed",
        )
        workflow_id = handle.id
        detail = f"deferred handoffs start now ({workflow_id})"
    except (TemporalUnavailable, RPCError) as exc:
        detail = f"resumed; deferred handoffs start at the next scheduled sweep ({exc})"
    return _out(control, detail)


@router.post("/{name}/silence", response_model=ControlOut, responses=BODY_ERRORS)
async def silence_agent(
    *,
    name: AgentPath,
    body: Annotated[SilenceIn, Body()],
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> ControlOut:
    """No notifications about this agent until a time (alerts are still recorded)."""
    now = datetime.now(UTC)
    if body.until.tzinfo is None:
        raise HTTPException(422, detail="until: give a time zone, e.g. 2026-11-25T08:00:00Z")
    if not now < body.until <= now + MAX_SILENCE:
        raise HTTPException(422, detail="until: must be in the future and at most 30 days ahead")
    control = await control_of(session, _known(settings, name), now)
    control.silenced_until, control.updated_at = body.until, now
    record_change(
        session, name, "agent_silenced", now, until=body.until.isoformat(), by=_who(request)
    )
    await session.commit()
    return _out(control)


def _who(request: Request) -> str | None:
    key = getattr(request.state, "api_key", None)
    return key.name if key is not None else None
