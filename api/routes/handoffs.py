"""Handoffs: the ledger, a prospect's live handoff, and operator actions onto running
workflows (retry, cancel), plus the completion callback of HTTP agents."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request
from pydantic import BaseModel, ValidationError
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.auth import authorize
from api.deps import IdempotencyKey, SessionDep, SettingsDep, TemporalDep, temporal_client
from api.schemas import MAX_ID, NO_NUL, errors, page_cursor, parse_cursor
from db.commands.controls import blocked_agents
from db.models import Handoff
from db.queries.handoffs import pending_for_prospect, pending_from_row, why_no_handoff
from db.queries.ledger import handoff_page, handoffs_of
from orchestrator.signing import SIGNATURE_HEADER, verify
from pipeline.contract import AgentResult
from pipeline.handoffs import (
    OPEN_STATUSES,
    HandoffState,
    HandoffStatus,
    PendingHandoff,
    handoff_workflow_id,
)
from workflows.handoff import CompleteInput, HandoffWorkflow
from workflows.starters import (
    handoff_started_for,
    keyed_request,
    live_handoff,
    start_handoff,
    web_ui_url,
)
from workflows.starters import retry_handoff as retry_one

router = APIRouter(prefix="/api/v1", tags=["handoffs"], responses=errors(401, 422))
callbacks = APIRouter(prefix="/api/v1", tags=["handoffs"], responses=errors(401, 422))
HandoffIdPath = Annotated[
    str, Path(max_length=128, pattern=NO_NUL, description="prospect:state:micros")
]
ACTION_ERRORS = errors(403, 404, 409, 503)


class HandoffOut(BaseModel):
    id: str
    prospect_id: int
    from_state: str
    state_entered_at: datetime
    to_agent: str
    status: str
    attempt: int
    workflow_id: str | None
    detail: str | None
    result: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    no_worker: bool | None = None
    """Begun while no worker polled its agent's task queue."""


class HandoffPage(BaseModel):
    items: list[HandoffOut]
    next_cursor: str | None
    """Pass as ``cursor`` for the next (older) page."""


class ProspectHandoffs(BaseModel):
    prospect_id: int
    live: HandoffState | None
    """The open handoff workflow's own state (query), when one is running."""
    workflow_id: str
    web_ui_url: str
    history: list[HandoffOut]


class ActionResult(BaseModel):
    handoff_id: str
    action: str
    workflow_id: str


@router.get("/handoffs", response_model=HandoffPage)
async def list_handoffs(
    *,
    session: SessionDep,
    status: HandoffStatus | None = None,
    agent: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    prospect_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
) -> HandoffPage:
    """The handoff ledger, newest first, filterable by status, agent and prospect."""
    rows = await handoff_page(
        session,
        limit=limit,
        status=status.value if status is not None else None,
        agent=agent,
        prospect_id=prospect_id,
        before=parse_cursor(cursor) if cursor is not None else None,
    )
    next_cursor = page_cursor(rows[-1].created_at, rows[-1].id) if len(rows) == limit else None
    return HandoffPage(items=[_out(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/prospects/{prospect_id}/handoff",
    response_model=ProspectHandoffs,
    responses=errors(404, 503),
)
async def prospect_handoff(
    *,
    prospect_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> ProspectHandoffs:
    """A prospect's live handoff (queried from its workflow) and its handoff history."""
    rows = await handoffs_of(session, prospect_id)
    client = await temporal_client(temporal)
    workflow_id = handoff_workflow_id(prospect_id)
    live = await live_handoff(client, prospect_id)
    if live is None and not rows:
        raise HTTPException(404, detail=f"prospect {prospect_id} has never been handed off")
    return ProspectHandoffs(
        prospect_id=prospect_id,
        live=live,
        workflow_id=workflow_id,
        web_ui_url=web_ui_url(settings.temporal, workflow_id),
        history=[_out(r) for r in rows],
    )


class StartedHandoff(BaseModel):
    prospect_id: int
    handoff_id: str
    from_state: str
    to_agent: str
    workflow_id: str
    web_ui_url: str


@router.post(
    "/prospects/{prospect_id}/handoff",
    response_model=StartedHandoff,
    status_code=202,
    responses=ACTION_ERRORS,
)
async def hand_off_prospect(
    *,
    prospect_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> StartedHandoff:
    """Hand this prospect off now, without waiting for the feed or the sweep (409 with the
    reason when no trigger admits it, its agent is held, or a handoff is open). A retry with
    the same ``Idempotency-Key`` answers with the handoff it started."""
    request = keyed_request("prospect-handoff", idempotency_key) if idempotency_key else None
    if request is not None:
        client = await temporal_client(temporal)
        started = await handoff_started_for(client, prospect_id, request)
        if started is not None:
            return _started(settings, started, handoff_workflow_id(prospect_id))
    pending = await pending_for_prospect(session, prospect_id)
    if pending is None:
        reason = await why_no_handoff(session, prospect_id)
        if reason is None:
            raise HTTPException(404, detail=f"prospect {prospect_id} does not exist")
        raise HTTPException(409, detail=f"nothing to hand off: {reason}")
    if pending.to_agent in await blocked_agents(session):
        held = f"{pending.to_agent} takes no handoffs now (paused, or its circuit is open)"
        raise HTTPException(409, detail=f"{held}; resume it first")
    client = await temporal_client(temporal)
    policy = settings.handoffs.policy(settings.agent_endpoints)
    try:
        workflow_id = await start_handoff(
            client,
            pending,
            policy=policy,
            task_queue=settings.temporal.task_queue,
            why="requested through the API",
            request=request,
        )
    except WorkflowAlreadyStartedError as exc:
        see = f"GET /api/v1/prospects/{prospect_id}/handoff"
        raise HTTPException(
            409, detail=f"prospect {prospect_id} has a handoff open; see {see}"
        ) from exc
    return _started(settings, pending, workflow_id)


def _started(settings: SettingsDep, pending: PendingHandoff, workflow_id: str) -> StartedHandoff:
    return StartedHandoff(
        prospect_id=pending.prospect_id,
        handoff_id=pending.id,
        from_state=pending.from_state,
        to_agent=pending.to_agent,
        workflow_id=workflow_id,
        web_ui_url=web_ui_url(settings.temporal, workflow_id),
    )


@router.post(
    "/handoffs/{handoff_id}/retry",
    response_model=ActionResult,
    status_code=202,
    responses=ACTION_ERRORS,
)
async def retry_handoff(
    *,
    handoff_id: HandoffIdPath,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> ActionResult:
    """Blocked: try the lease again now. Failed, cancelled, or left open by a workflow that
    is gone: run the handoff again. A retry of this request with the same
    ``Idempotency-Key`` answers as the first did, and starts nothing more."""
    row = await _ledger_row(session, handoff_id)
    client = await temporal_client(temporal)
    workflow_id = handoff_workflow_id(row.prospect_id)
    request = keyed_request(f"retry {handoff_id}", idempotency_key) if idempotency_key else None
    if request is not None and await handoff_started_for(client, row.prospect_id, request):
        return ActionResult(handoff_id=handoff_id, action="restarted", workflow_id=workflow_id)
    outcome = await retry_one(
        client,
        pending_from_row(row),
        HandoffStatus(row.status),
        policy=settings.handoffs.policy(settings.agent_endpoints),
        task_queue=settings.temporal.task_queue,
        request=request,
    )
    if outcome.action == "refused":
        raise HTTPException(409, detail=outcome.reason)
    return ActionResult(handoff_id=handoff_id, action=outcome.action, workflow_id=workflow_id)


@router.post(
    "/handoffs/{handoff_id}/cancel",
    response_model=ActionResult,
    status_code=202,
    responses=ACTION_ERRORS,
)
async def cancel_handoff(
    *, handoff_id: HandoffIdPath, session: SessionDep, temporal: TemporalDep
) -> ActionResult:
    """Cancel an open handoff; it releases its lease and is recorded as cancelled."""
    row = await _ledger_row(session, handoff_id)
    client = await temporal_client(temporal)
    handle = client.get_workflow_handle(handoff_workflow_id(row.prospect_id))
    live = await live_handoff(client, row.prospect_id)
    if live is None or live.handoff_id != handoff_id:
        gone = HandoffStatus(row.status) in OPEN_STATUSES
        why = "its workflow is gone; retry runs it again" if gone else f"it is {row.status}"
        raise HTTPException(409, detail=f"handoff {handoff_id} is not running: {why}")
    await handle.cancel()
    return ActionResult(handoff_id=handoff_id, action="cancel_requested", workflow_id=handle.id)


@callbacks.post(
    "/handoffs/{handoff_id}/complete",
    response_model=ActionResult,
    status_code=202,
    responses=ACTION_ERRORS,
)
async def complete_handoff(
    *,
    handoff_id: HandoffIdPath,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
) -> ActionResult:
    """An HTTP agent's answer to a task it accepted with 202 (signed like the task was)."""
    body = await request.body()
    row = await _ledger_row(session, handoff_id)
    endpoint = settings.agent_endpoints.get(row.to_agent)
    secret = endpoint.secret if endpoint is not None else None
    if secret is not None:
        if not verify(body, secret.get_secret_value(), signature):
            raise HTTPException(401, detail=f"missing or invalid {SIGNATURE_HEADER}")
    else:  # an agent without a shared secret proves itself with an operator key
        authorize(request)
    try:
        result = AgentResult.model_validate_json(body)
    except ValidationError as exc:
        raise HTTPException(422, detail=f"invalid agent result: {exc.errors()[0]['msg']}") from exc
    client = await temporal_client(temporal)
    handle = client.get_workflow_handle(handoff_workflow_id(row.prospect_id))
    live = await live_handoff(client, row.prospect_id)
    http_agent = endpoint is not None and endpoint.transport == "http"
    if live is None or live.handoff_id != handoff_id or not http_agent:
        raise HTTPException(
            409,
            detail=f"handoff {handoff_id} is not waiting for a result "
            "(only HTTP agents that answered 202 call back)",
        )
    await handle.signal(
        HandoffWorkflow.complete, CompleteInput(handoff_id=handoff_id, result=result)
    )
    return ActionResult(handoff_id=handoff_id, action="completed", workflow_id=handle.id)


async def _ledger_row(session: SessionDep, handoff_id: str) -> Handoff:
    row = await session.get(Handoff, handoff_id)
    if row is None:
        raise HTTPException(404, detail=f"no handoff {handoff_id!r} in the ledger")
    return row


def _out(row: Handoff) -> HandoffOut:
    return HandoffOut.model_validate(row, from_attributes=True)
