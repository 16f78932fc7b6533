"""Alerts: list them, acknowledge one (no more reminders; it still resolves on its own)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel

from api.deps import SessionDep
from api.schemas import MAX_ID, NO_NUL, errors
from db.commands.alerts import acknowledge
from db.queries.ledger import alert_list

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"], responses=errors(401, 422))


class AlertOut(BaseModel):
    id: int
    fingerprint: str
    kind: str
    agent_name: str | None
    severity: str
    status: str
    message: str
    count: int
    first_seen: datetime
    last_seen: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    notified_at: datetime | None
    details: dict[str, Any] | None
    held_by: str | None = None
    """What holds it back (inhibition): the agent's alert, pause or open circuit."""


@router.get("", response_model=list[AlertOut])
async def list_alerts(
    *,
    session: SessionDep,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    agent: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AlertOut]:
    """Alerts, most recently seen first, filterable by status and agent."""
    alerts = await alert_list(session, limit=limit, status=status, agent=agent)
    return [AlertOut.model_validate(a, from_attributes=True) for a in alerts]


@router.post("/{alert_id}/acknowledge", response_model=AlertOut, responses=errors(403, 404, 409))
async def acknowledge_alert(
    *, alert_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep, request: Request
) -> AlertOut:
    """Someone is on it: stop the repeat reminders (worse news is still sent). Only an open
    alert changes, in one conditional update: the worker may resolve it meanwhile, and a
    second click leaves the first acknowledgement (and its audit row) as they were."""
    now = datetime.now(UTC)
    key = getattr(request.state, "api_key", None)
    by = key.name if key is not None else None
    alert = await acknowledge(session, alert_id, by=by, now=now)
    if alert is None:
        raise HTTPException(404, detail=f"no alert {alert_id}")
    if alert.status == "resolved":
        raise HTTPException(409, detail=f"alert {alert_id} is already resolved")
    return AlertOut.model_validate(alert, from_attributes=True)
