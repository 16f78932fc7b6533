"""The pipeline at a glance, for the dashboard: prospects per state, the funnel, handoffs by
status, and the latest cycles with their Web UI links.

Every count is one grouped query over an indexed column; nothing is loaded to be counted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import SessionDep, SettingsDep, TemporalDep, temporal_client
from api.schemas import ErrorResponse
from db.queries.pipeline import (
    entries_since,
    handoffs_by_status,
    last_event_id,
    live_prospects_by_status,
)
from orchestrator.settings import Settings
from pipeline.reports import FunnelStep, funnel_entries, funnel_steps
from pipeline.states import TERMINAL_STATES, TRANSITIONS
from workflows.search_attributes import CYCLE_MODE
from workflows.starters import web_ui_url

ERRORS = {401: {"model": ErrorResponse}, 422: {"model": ErrorResponse}}
router = APIRouter(prefix="/api/v1/orchestrator", tags=["pipeline"], responses=ERRORS)
CYCLE_WORKFLOW_TYPE = "orchestrator-cycle"


class StateCount(BaseModel):
    state: str
    count: int
    terminal: bool
    known: bool
    """False for a state the pipeline does not define (a validation finding)."""


class TemporalLinks(BaseModel):
    web_ui_url: str
    namespace: str
    workflows_url: str
    """Append a URL-encoded workflow id to link to that workflow."""


class PipelineOut(BaseModel):
    checked_at: datetime
    total: int
    """Live (not deleted) prospects."""
    states: list[StateCount]
    """Every state of the pipeline in graph order (zeros included), then unknown ones."""
    funnel_since: datetime
    funnel_entries: dict[str, int]
    """Entries into each main-path state since ``funnel_since`` (as the reports count them)."""
    funnel: list[FunnelStep]
    handoffs: dict[str, int]
    """Handoff ledger rows by status."""
    last_event_id: int
    """Newest event id: follow ``/api/v1/events`` from here (or a little before)."""
    temporal: TemporalLinks


class CycleOut(BaseModel):
    workflow_id: str
    mode: str | None
    status: str
    started_at: datetime | None
    closed_at: datetime | None
    web_ui_url: str


async def _state_counts(session: AsyncSession) -> list[StateCount]:
    found = await live_prospects_by_status(session)
    known = [
        StateCount(state=s, count=found.pop(s, 0), terminal=s in TERMINAL_STATES, known=True)
        for s in TRANSITIONS
    ]
    unknown = [StateCount(state=s, count=n, terminal=False, known=False) for s, n in found.items()]
    return known + sorted(unknown, key=lambda c: c.state)


def temporal_links(settings: Settings) -> TemporalLinks:
    return TemporalLinks(
        web_ui_url=settings.temporal.web_ui_url.rstrip("/"),
        namespace=settings.temporal.namespace,
        workflows_url=web_ui_url(settings.temporal),
    )


@router.get("/pipeline", response_model=PipelineOut)
async def get_pipeline(
    *,
    session: SessionDep,
    settings: SettingsDep,
    window_hours: Annotated[int, Query(ge=1, le=24 * 31, description="Funnel window")] = 24,
) -> PipelineOut:
    """Prospects per state, the funnel over a window, handoffs by status, the newest event."""
    now = datetime.now(UTC)
    since = now - timedelta(hours=window_hours)
    entries = funnel_entries(*await entries_since(session, since))
    states = await _state_counts(session)
    return PipelineOut(
        checked_at=now,
        total=sum(s.count for s in states),
        states=states,
        funnel_since=since,
        funnel_entries=entries,
        funnel=funnel_steps(entries),
        handoffs=await handoffs_by_status(session),
        last_event_id=await last_event_id(session),
        temporal=temporal_links(settings),
    )


@router.get("/cycles", response_model=list[CycleOut], responses={503: {"model": ErrorResponse}})
async def list_cycles(
    *,
    settings: SettingsDep,
    temporal: TemporalDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> list[CycleOut]:
    """The latest cycle workflows on this orchestrator's task queue (Temporal visibility)."""
    client = await temporal_client(temporal)
    query = (
        f"WorkflowType = '{CYCLE_WORKFLOW_TYPE}' "
        f"AND TaskQueue = '{_quoted(settings.temporal.task_queue)}'"
    )
    cycles = []
    async for execution in client.list_workflows(query, limit=limit):
        status = execution.status.name.lower() if execution.status else "unknown"
        cycles.append(
            CycleOut(
                workflow_id=execution.id,
                mode=execution.typed_search_attributes.get(CYCLE_MODE),
                status=status,
                started_at=execution.start_time,
                closed_at=execution.close_time,
                web_ui_url=web_ui_url(settings.temporal, execution.id),
            )
        )
    return cycles


def _quoted(value: str) -> str:
    """A value inside a single-quoted visibility query string."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
