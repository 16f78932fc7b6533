"""Response models of the API (the OpenAPI schema at /docs comes from these)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from pipeline.health import AgentHealth, HealthStatus
from workflows.types import CycleSummary


class HealthResponse(BaseModel):
    status: HealthStatus
    """The worst status of any agent; unknown only when no agent has ever run."""
    checked_at: datetime
    agents: list[AgentHealth]


class RunResponse(BaseModel):
    workflow_id: str
    run_id: str | None
    mode: str
    web_ui_url: str
    result: CycleSummary | None = None


class ErrorResponse(BaseModel):
    detail: str
