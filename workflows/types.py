"""Inputs and results of the workflows: one model each, so fields can be added later without
breaking running workflows."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from pipeline.health import HealthStatus


class CycleInput(BaseModel):
    mode: str = "full"
    """Kept as text so a bad mode reaches the workflow and fails with a clear message."""


class MonitorSummary(BaseModel):
    """The spec's ``_check_health`` result, plus what changed in the alert table."""

    agents_checked: int
    healthy: int
    alerts_created: int
    alerts_updated: int = 0
    alerts_resolved: int = 0
    statuses: dict[str, HealthStatus] = {}


class CycleSummary(BaseModel):
    mode: str
    started_at: datetime
    finished_at: datetime | None = None
    health: MonitorSummary | None = None


class CycleProgress(BaseModel):
    mode: str
    step: str
    steps_done: list[str] = []
