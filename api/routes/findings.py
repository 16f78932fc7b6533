"""Findings an operator acts on: state violations and conflicts over leases and claims,
each with the prospect it is about and what the orchestrator does about it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from api.deps import SessionDep, SettingsDep, TemporalDep, temporal_client
from api.schemas import MAX_ID, NO_NUL, errors, page_cursor, parse_int_cursor
from db.queries.cockpit import violation_page
from db.queries.conflicts import ConflictKind, ConflictOut, open_conflicts, resolved_conflicts
from orchestrator.settings import Settings
from pipeline.triggers import HANDOFF_TRIGGERS
from pipeline.validation import ViolationKind
from workflows.starters import live_handoff

router = APIRouter(prefix="/api/v1", tags=["findings"], responses=errors(401, 422))
Text = Annotated[str | None, Query(max_length=64, pattern=NO_NUL)]


class ViolationOut(BaseModel):
    id: int
    prospect_id: int
    kind: str
    state: str | None
    detail: str | None
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None


class ViolationPage(BaseModel):
    items: list[ViolationOut]
    next_cursor: str | None
    """Pass as ``cursor`` for the next (older) page."""


def agent_states(settings: Settings, agent: str) -> list[str]:
    """The trigger states that hand prospects to ``agent``: its violations are in them."""
    if agent not in settings.agents:
        known = ", ".join(settings.agents)
        raise HTTPException(422, detail=f"agent: unknown agent {agent!r}; configured: {known}")
    return [t.state for t in HANDOFF_TRIGGERS.values() if t.next_agent == agent]


@router.get("/violations", response_model=ViolationPage)
async def list_violations(
    *,
    session: SessionDep,
    settings: SettingsDep,
    kind: ViolationKind | None = None,
    state: Text = None,
    agent: Text = None,
    status: Literal["open", "resolved"] = "open",
    prospect_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
) -> ViolationPage:
    """State violations the validate cycle found, the most recently seen first; ``agent``
    keeps those in the states that hand prospects to it."""
    rows = await violation_page(
        session,
        limit=limit,
        resolved=status == "resolved",
        kind=kind.value if kind is not None else None,
        state=state,
        agent_states=agent_states(settings, agent) if agent is not None else None,
        prospect_id=prospect_id,
        before=parse_int_cursor(cursor) if cursor is not None else None,
    )
    last = rows[-1] if len(rows) == limit else None
    return ViolationPage(
        items=[ViolationOut.model_validate(r, from_attributes=True) for r in rows],
        next_cursor=page_cursor(last.last_seen, last.id) if last is not None else None,
    )


class ConflictList(BaseModel):
    status: Literal["open", "resolved"]
    checked_at: datetime
    items: list[ConflictOut]


@router.get("/conflicts", response_model=ConflictList, responses=errors(503))
async def list_conflicts(
    *,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    kind: ConflictKind | None = None,
    status: Literal["open", "resolved"] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ConflictList:
    """``open``: what the next resolve cycle would find now (read with its own queries, acting
    on nothing); ``resolved``: what resolve did, from the audit log, newest first."""
    now = datetime.now(UTC)
    if status == "resolved":
        items = await resolved_conflicts(session, limit=limit, kind=kind)
        return ConflictList(status=status, checked_at=now, items=items)
    client = await temporal_client(temporal)

    async def live(prospect_id: int) -> str | None:
        state = await live_handoff(client, prospect_id)
        return state.handoff_id if state is not None else None

    found = await open_conflicts(session, now, settings.conflicts, live)
    items = [c for c in found if kind is None or c.kind is kind][:limit]
    return ConflictList(status=status, checked_at=now, items=items)
