"""Liveness and readiness, for load balancers and orchestrators: no key needed."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from api.deps import SessionDep, TemporalDep
from api.temporal import TemporalUnavailable

router = APIRouter(tags=["probes"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(*, session: SessionDep, temporal: TemporalDep) -> JSONResponse:
    """The database and Temporal are reachable; 503 with what is not."""
    checks: dict[str, str] = {}
    try:
        await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        client = await temporal.client()
        await client.workflow_service.get_system_info(GetSystemInfoRequest())
        checks["temporal"] = "ok"
    except (TemporalUnavailable, RuntimeError) as exc:
        checks["temporal"] = f"unreachable: {exc}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
