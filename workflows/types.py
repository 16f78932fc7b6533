"""Inputs and results of the workflows: one model each, so fields can be added later without
breaking running workflows."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel

from activities.conflicts import ResolveSummary
from activities.reports import ReportResult
from activities.upkeep import AfterCycle
from pipeline.handoffs import StartedPage
from pipeline.health import HealthStatus


class HandoffSweepSummary(BaseModel):
    """The spec's ``_process_handoffs`` result, made precise: every pending prospect is
    started, found already running, deferred (its agent is paused) or failed to start."""

    pending: int = 0
    started: int = 0
    already_running: int = 0
    deferred: int = 0
    failed: int = 0
    pages: int = 0
    continued_as_new: int = 0
    waited: int = 0
    """Times the sweep waited for room under ``max_in_flight``."""
    held_back: bool = False
    """A full cycle found no room and left the rest of the sweep for the next one."""


class MonitorSummary(BaseModel):
    """The spec's ``_check_health`` result, plus what changed in the alert table."""

    agents_checked: int
    healthy: int
    alerts_created: int
    alerts_updated: int = 0
    alerts_resolved: int = 0
    circuits_opened: list[str] = []
    statuses: dict[str, HealthStatus] = {}


class ValidationSummary(BaseModel):
    found: dict[str, int] = {}
    """Violations seen by this sweep, per kind."""
    resolved: int = 0
    open_total: int = 0
    open_by_kind: dict[str, int] = {}
    alert: str = "unchanged"
    ranges: int = 0


class CycleSummary(BaseModel):
    mode: str
    started_at: datetime
    finished_at: datetime | None = None
    health: MonitorSummary | None = None
    handoffs: HandoffSweepSummary | None = None
    report: ReportResult | None = None
    validation: ValidationSummary | None = None
    conflicts: ResolveSummary | None = None
    upkeep: AfterCycle | None = None
    errors: dict[str, str] = {}
    """Steps of a ``full`` cycle that failed, with why; the others still ran."""
    steps_done: list[str] = []


class CycleProgress(BaseModel):
    mode: str
    step: str
    steps_done: list[str] = []
    detail: str | None = None


class CycleInput(BaseModel):
    mode: str = "full"
    """Kept as text so a bad mode reaches the workflow and fails with a clear message."""
    carry: CycleSummary | None = None
    """The summary so far, when a long sweep continued as new."""
    handoff_cursor: int | None = None
    """Where the handoff sweep resumes (last prospect id seen)."""
    handoff_unbegun: list[StartedPage] = []
    """Handoffs the sweep started that had not all begun, still counted as in flight."""
    validation_cursor: int | None = None
    """Where the validation sweep resumes (next prospect id range)."""
    validation_as_of: datetime | None = None
    """The instant the whole validation sweep judges at, kept across continue-as-new."""
    report_kind: Literal["daily", "weekly"] = "daily"
    report_date: date | None = None
    """A past date to (re)generate; ``None`` is the latest scheduled time."""
