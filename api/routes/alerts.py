"""Alerts: list them, acknowledge one (no more reminders; it still resolves on its own)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel
from sqlalchemy import select, update

from api.deps import SessionDep
from api.schemas import MAX_ID, NO_NUL, errors
from db.models import Alert, OrchestratorAction

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


@router.get("", response_model=list[AlertOut])
async def list_alerts(
    *,
    session: SessionDep,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    agent: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AlertOut]:
    """Alerts, most recently seen first, filterable by status and agent."""
    query = select(Alert).order_by(Alert.last_seen.desc(), Alert.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Alert.status == status)
    if agent is not None:
        query = query.where(Alert.agent_name == agent)
    return [AlertOut.model_validate(a, from_attributes=True) for a in await session.scalars(query)]


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
    acked = await session.execute(
        update(Alert)
        .where(Alert.id == alert_id, Alert.status == "open")
        .values(status="acknowledged", acknowledged_at=now, acknowledged_by=by)
    )
    alert = await session.get(Alert, alert_id, populate_existing=True)
    if alert is None:
        raise HTTPException(404, detail=f"no alert {alert_id}")
    if alert.status == "resolved":
        raise HTTPException(409, detail=f"alert {alert_id} is already resolved")
    if acked.rowcount:
        session.add(
            OrchestratorAction(
                action="alert_acknowledged",
                agent_name=alert.agent_name,
                created_at=now,
                details={"alert_id": alert_id, "fingerprint": alert.fingerprint, "by": by},
            )
        )
    await session.commit()
    return AlertOut.model_validate(alert, from_attributes=True)
