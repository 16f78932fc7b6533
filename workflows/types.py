"""Inputs and results of the workflows: one model each, so fields can be added later without
breaking running workflows."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel

from activities.reports import ReportResult
from activities.upkeep import AfterCycle
from db.commands.conflicts import ResolveSummary
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
    caught_by_sweep: int = 0
    """Handoffs a sweep started for entries older than the feed's overlap window: ones the
    change feed should have started and had not (0 in normal operation)."""


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


class HousekeepingSummary(BaseModel):
    """Rows retention removed, per table, over all passes of one housekeeping cycle."""

    removed: dict[str, int] = {}
    passes: int = 0
    batches: int = 0
    continued_as_new: int = 0


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
    housekeeping: HousekeepingSummary | None = None
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
    housekeeping_as_of: datetime | None = None
    """The instant a housekeeping cycle measures its windows from, kept across
    continue-as-new."""
    housekeeping_tables: list[str] | None = None
    """Tables a housekeeping cycle still has to prune when it continued as new."""
    released: bool = False
    """A handoffs sweep started to hand on what a resumed agent kept waiting: not
    reconciliation, so nothing it starts counts as caught from the feed."""
    report_kind: Literal["daily", "weekly"] = "daily"
    report_date: date | None = None
    """A past date to (re)generate; ``None`` is the latest scheduled time."""


class FeedState(BaseModel):
    """The change feed's cursor and counts: its ``state`` query, and what it carries when it
    continues as new."""

    started_at: datetime | None = None
    cursor: datetime | None = None
    """Entries up to this time have been read (each poll reads ``overlap`` behind it again)."""
    unbegun: list[StartedPage] = []
    deferred_since: dict[str, datetime] = {}
    rechecked_at: datetime | None = None
    handoffs: HandoffSweepSummary = HandoffSweepSummary()
    """Handoffs the feed found, started, found already running, deferred or failed."""
    polls: int = 0
    nudges: int = 0
    runs: int = 1
    last_found_at: datetime | None = None
    lag_seconds: float = 0.0
    """At its last poll: how long the oldest entry it found had waited (0 when caught up)."""


class FeedInput(BaseModel):
    state: FeedState | None = None
    """The cursor and counts so far, when the feed continued as new."""
