"""Prospects for people: find them, and see one's whole journey and what comes next."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel

from api.deps import SessionDep, SettingsDep
from api.schemas import MAX_ID, NO_NUL, errors, page_cursor, parse_int_cursor
from db.models import Prospect
from db.queries.cockpit import prospect_page
from db.queries.handoffs import pending_for_prospect, why_no_handoff
from db.queries.journey import TimelineEntry, prospect_with_email, timeline
from workflows.starters import web_ui_url

router = APIRouter(prefix="/api/v1", tags=["prospects"], responses=errors(401, 422))
TIMELINE_LIMIT = 500
"""Entries of a journey; a prospect with more shows its newest and says so."""


class ProspectOut(BaseModel):
    id: int
    company_name: str
    domain: str | None
    status: str
    tier: str | None
    score: float | None
    status_changed_at: datetime
    deleted_at: datetime | None
    has_contact_email: bool


class ProspectPage(BaseModel):
    items: list[ProspectOut]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page (prospects that changed state earlier)."""


class NextStep(BaseModel):
    admitted: bool
    """Whether a trigger admits the prospect now."""
    trigger: str | None = None
    """The state whose trigger admits it."""
    agent: str | None = None
    """The agent it would be handed to."""
    reason: str | None = None
    """Why no trigger admits it, when none does."""


class Journey(BaseModel):
    prospect: ProspectOut
    next: NextStep
    timeline: list[TimelineEntry]
    """Oldest first."""
    timeline_limit: int = TIMELINE_LIMIT
    truncated: bool
    """More entries exist than the limit: these are the newest."""


def _out(prospect: Prospect, has_email: object) -> ProspectOut:
    names = [n for n in ProspectOut.model_fields if n != "has_contact_email"]
    return ProspectOut(
        **{n: getattr(prospect, n) for n in names}, has_contact_email=bool(has_email)
    )


@router.get("/prospects", response_model=ProspectPage)
async def list_prospects(
    *,
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    tier: Annotated[str | None, Query(max_length=8, pattern=NO_NUL)] = None,
    stuck: bool = False,
    q: Annotated[str | None, Query(min_length=1, max_length=255, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
) -> ProspectPage:
    """Live prospects, the latest to change state first; ``q`` matches company or domain
    text, ``stuck=true`` keeps those stuck (validation found them stuck or dropped, their
    handoff is stalled or blocked, or it failed and nothing moved them on)."""
    rows = await prospect_page(
        session,
        limit=limit,
        status=status,
        tier=tier,
        stuck=stuck,
        text=q,
        before=parse_int_cursor(cursor) if cursor is not None else None,
    )
    last = rows[-1][0] if len(rows) == limit else None
    return ProspectPage(
        items=[_out(p, e) for p, e in rows],
        next_cursor=page_cursor(last.status_changed_at, last.id) if last is not None else None,
    )


@router.get("/prospects/{prospect_id}", response_model=Journey, responses=errors(404))
async def prospect_journey(
    *,
    prospect_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    session: SessionDep,
    settings: SettingsDep,
) -> Journey:
    """Where the prospect is and how it got there: its state, tier and contact email, one
    timeline of everything that names it, and what the orchestrator would do next."""
    found = await prospect_with_email(session, prospect_id)
    if found is None:
        raise HTTPException(404, detail=f"prospect {prospect_id} does not exist")
    prospect, has_email = found
    entries, truncated = await timeline(session, prospect, TIMELINE_LIMIT)
    for entry in entries:
        if entry.workflow_id:
            entry.web_ui_url = web_ui_url(settings.temporal, entry.workflow_id)
    return Journey(
        prospect=_out(prospect, has_email),
        next=await _next(session, prospect_id),
        timeline=entries,
        truncated=truncated,
    )


async def _next(session: SessionDep, prospect_id: int) -> NextStep:
    """The trigger rules of ``pipeline.triggers``, as the handoff finder applies them."""
    pending = await pending_for_prospect(session, prospect_id)
    if pending is not None:
        return NextStep(admitted=True, trigger=pending.from_state, agent=pending.to_agent)
    return NextStep(admitted=False, reason=await why_no_handoff(session, prospect_id))
