"""The event stream (server-sent events): everything the orchestrator emits, in order
(agent_unhealthy, handoff outcomes, report_generated, circuit and control changes).

Reconnecting clients send ``Last-Event-ID`` (browsers do) and miss nothing: events are rows,
and the stream is a cursor over them. Retention deletes old events: a client resuming from a
position that was pruned gets a ``pruned`` event first (and every answer the
``X-Events-Pruned-Through`` header), so it knows it missed some rather than hearing nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.schemas import MAX_ID, errors
from db.models import Event
from db.queries.ledger import events_after
from db.queries.retention import pruned_through

router = APIRouter(prefix="/api/v1", tags=["events"], responses=errors(401, 422))
POLL_SECONDS = 1.0
BATCH = 200


def _frame(event: Event) -> str:
    data = {
        "id": event.id,
        "kind": event.kind,
        "agent": event.agent_name,
        "created_at": event.created_at.isoformat(),
        "payload": event.payload,
    }
    return f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(data)}\n\n"


async def _batch(sessionmaker: async_sessionmaker[AsyncSession], after: int) -> list[Event]:
    async with sessionmaker() as session:
        return await events_after(session, after, BATCH)


def _pruned_frame(after: int, through: int) -> str:
    """Events after ``after`` up to ``through`` may have been deleted: said once, with
    ``through`` as its id, so a client that reconnects from here is not told again."""
    data = {
        "id": through,
        "kind": "pruned",
        "asked_after": after,
        "pruned_through": through,
        "message": (
            f"events after {after} up to id {through} were deleted by retention"
            " (ORCH_RETENTION__EVENTS); the stream goes on from the oldest event kept"
        ),
    }
    return f"id: {through}\nevent: pruned\ndata: {json.dumps(data)}\n\n"


async def _stream(
    request: Request,
    sessionmaker: async_sessionmaker[AsyncSession],
    after: int,
    follow: bool,
    notice: str | None = None,
) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    if notice:
        yield notice
    while True:
        events = await _batch(sessionmaker, after)
        for event in events:
            after = event.id
            yield _frame(event)
        if len(events) == BATCH:
            continue
        if not follow or await request.is_disconnected():
            return
        yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_SECONDS)


@router.get("/events", responses={200: {"content": {"text/event-stream": {}}}})
async def events(
    request: Request,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Send events after this id")] = 0,
    follow: Annotated[bool, Query(description="Keep the stream open for new events")] = True,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_ID)] = None,
) -> StreamingResponse:
    """Server-sent events, oldest first from ``after`` (or Last-Event-ID)."""
    start = last_event_id if last_event_id is not None else after
    sessionmaker = request.app.state.sessionmaker
    async with sessionmaker() as session:
        through = await pruned_through(session, "events")
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    notice = None
    if through is not None:
        headers["X-Events-Pruned-Through"] = str(through)
        asked = last_event_id is not None or after > 0  # a fresh client asked for no position
        notice = _pruned_frame(start, through) if asked and start < through else None
    return StreamingResponse(
        _stream(request, sessionmaker, start, follow, notice),
        media_type="text/event-stream",
        headers=headers,
    )
