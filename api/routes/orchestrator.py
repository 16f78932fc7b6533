"""The spec's orchestrator endpoints: agent health and manual cycles."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel
from temporalio.client import WorkflowFailureError

from api.deps import IdempotencyKey, SessionDep, SettingsDep, TemporalDep, temporal_client
from api.feed import read_feed
from api.presence import agents_presence
from api.schemas import HealthResponse, RunResponse, errors
from db.queries.health import compute_agent_health
from pipeline.handoffs import feed_workflow_id
from pipeline.health import overall_status
from pipeline.modes import UnsupportedModeError, parse_mode
from workflows.starters import IdempotencyConflict, start_cycle, web_ui_url
from workflows.types import CycleInput, FeedState

router = APIRouter(prefix="/api/v1/orchestrator", tags=["orchestrator"], responses=errors(401))


@router.get("/health", response_model=HealthResponse)
async def get_health(
    *, request: Request, session: SessionDep, settings: SettingsDep, temporal: TemporalDep
) -> HealthResponse:
    """Health of every configured agent, computed now from its run history, and whether
    each is there to take its handoffs."""
    now = datetime.now(UTC)
    agents = await compute_agent_health(session, settings.agents, settings.health, now)
    presence = await agents_presence(request, session, temporal, settings)
    return HealthResponse(
        status=overall_status(agents),
        checked_at=now,
        agents=agents,
        presence=list(presence.values()),
    )


@router.post(
    "/run",
    response_model=RunResponse,
    status_code=202,
    responses=errors(403, 422, 503),
)
async def run_cycle(
    *,
    temporal: TemporalDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
    mode: str = Query(
        "full", description="monitor, handoffs, resolve, validate, report, full, housekeeping"
    ),
    wait: bool = Query(False, description="Wait for the cycle and return its summary"),
    wait_seconds: float = Query(
        60.0, ge=0.1, le=600, description="How long to wait with wait=true"
    ),
) -> RunResponse:
    """Start an orchestration cycle now; 202 with its workflow id, and with ``wait`` its
    summary if it ends in time (else ``status: running``: poll ``GET /cycles/{id}``)."""
    try:
        cycle_mode = parse_mode(mode)
    except UnsupportedModeError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    client = await temporal_client(temporal)
    try:
        handle = await start_cycle(
            client,
            settings.temporal.task_queue,
            CycleInput(mode=cycle_mode.value),
            started_by="manual",
            summary=f"{cycle_mode.value} cycle, started through the API",
            idempotency_key=idempotency_key,
            operation="run",
        )
    except IdempotencyConflict as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    workflow_id = handle.id
    response = RunResponse(
        workflow_id=workflow_id,
        run_id=handle.result_run_id,
        mode=cycle_mode.value,
        web_ui_url=web_ui_url(settings.temporal, workflow_id),
    )
    if wait:
        with contextlib.suppress(TimeoutError):  # still running: the answer says so
            try:
                response.result = await asyncio.wait_for(handle.result(), wait_seconds)
                response.status = "completed"
            except WorkflowFailureError as exc:
                response.status, response.error = "failed", str(exc.cause)
    return response


class FeedOut(BaseModel):
    running: bool
    """Whether a worker answered for the feed (it is started and kept alive by workers)."""
    workflow_id: str
    web_ui_url: str
    state: FeedState | None = None


@router.get("/feed", response_model=FeedOut, responses=errors(503))
async def get_feed(*, settings: SettingsDep, temporal: TemporalDep) -> FeedOut:
    """The change feed: its cursor, lag and counts (queried from its workflow)."""
    client = await temporal_client(temporal)
    state = await read_feed(client, settings)
    workflow_id = feed_workflow_id(settings.temporal.task_queue)
    return FeedOut(
        running=state is not None,
        workflow_id=workflow_id,
        web_ui_url=web_ui_url(settings.temporal, workflow_id),
        state=state,
    )
