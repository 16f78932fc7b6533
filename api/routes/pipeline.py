"""The pipeline at a glance, for the dashboard: prospects per state, the funnel, handoffs by
status, and the latest cycles with their Web UI links.

Every count is one grouped query over an indexed column; nothing is loaded to be counted.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from api.deps import SessionDep, SettingsDep, TemporalDep, temporal_client
from api.schemas import NO_NUL, ErrorResponse
from db.queries.pipeline import (
    entries_since,
    handoffs_by_status,
    last_event_id,
    live_prospects_by_status,
)
from orchestrator.settings import Settings
from pipeline.reports import FunnelStep, funnel_entries, funnel_steps
from pipeline.states import TERMINAL_STATES, TRANSITIONS
from workflows.cycle import CycleWorkflow
from workflows.search_attributes import CYCLE_MODE
from workflows.starters import web_ui_url
from workflows.types import CycleProgress, CycleSummary

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


class CycleStatusOut(CycleOut):
    progress: CycleProgress | None = None
    """While it runs: the step it is on and how far it got (its ``progress`` query)."""
    result: CycleSummary | None = None
    error: str | None = None


@router.get(
    "/cycles/{workflow_id}",
    response_model=CycleStatusOut,
    responses={404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
async def get_cycle(
    *,
    workflow_id: Annotated[str, Path(max_length=255, pattern=NO_NUL)],
    settings: SettingsDep,
    temporal: TemporalDep,
) -> CycleStatusOut:
    """One cycle: its status, its progress while it runs, its summary once it has ended
    (what a client that got 202 from ``POST /run`` polls)."""
    client = await temporal_client(temporal)
    handle = client.get_workflow_handle_for(CycleWorkflow.run, workflow_id)
    try:
        described = await handle.describe()
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise
        described = None
    if described is None or described.workflow_type != CYCLE_WORKFLOW_TYPE:
        raise HTTPException(404, detail=f"no cycle {workflow_id!r}")
    status = described.status.name.lower() if described.status else "unknown"
    out = CycleStatusOut(
        workflow_id=workflow_id,
        mode=described.typed_search_attributes.get(CYCLE_MODE),
        status=status,
        started_at=described.start_time,
        closed_at=described.close_time,
        web_ui_url=web_ui_url(settings.temporal, workflow_id),
    )
    if described.status is WorkflowExecutionStatus.RUNNING:
        with contextlib.suppress(RPCError, WorkflowQueryRejectedError):
            out.progress = await handle.query(CycleWorkflow.progress, rpc_timeout=PROGRESS_WAIT)
    elif described.status is WorkflowExecutionStatus.COMPLETED:
        out.result = await handle.result()
    else:
        try:
            await handle.result()
        except WorkflowFailureError as exc:
            out.error = str(exc.cause)
    return out


PROGRESS_WAIT = timedelta(seconds=3)
"""A query is answered by a worker: without one, the status alone is returned."""


def _quoted(value: str) -> str:
    """A value inside a single-quoted visibility query string."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
