"""Agent health rules: the thresholds table of the spec, as data, and the pure status function.

The spec's code disagrees with its own table (it calls < 20% of expected records *degraded*
and ignores the 50% line) and reports a stopped agent as ``unknown``. We follow the table:
each dimension is graded on its own and the agent gets the worst grade. ``unknown`` means the
agent has never run at all.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

DEFAULT_EXPECTED_RECORDS: dict[str, int] = {
    "prospector": 10,
    "hygiene": 20,
    "researcher": 5,
    "outreach": 10,
}


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILING = "failing"
    UNKNOWN = "unknown"


_SEVERITY = {
    HealthStatus.UNKNOWN: -1,
    HealthStatus.HEALTHY: 0,
    HealthStatus.DEGRADED: 1,
    HealthStatus.FAILING: 2,
}


def worst(*statuses: HealthStatus) -> HealthStatus:
    """The most severe of several statuses (healthy when given none); unknown only when all
    of them are unknown."""
    return max(statuses, key=_SEVERITY.__getitem__, default=HealthStatus.HEALTHY)


class HealthThresholds(BaseModel):
    """The spec's threshold table. Boundary values belong to the milder grade's neighbour:
    exactly 10% errors is degraded (healthy is *below* 10%), exactly 30% is still degraded
    (failing is *above* 30%); exactly 6 h or 24 h since success is degraded; exactly 50% of
    expected records is degraded (healthy is *above* 50%), exactly 20% is degraded (failing
    is *below* 20%)."""

    window: timedelta = timedelta(hours=24)
    error_rate_degraded: float = Field(0.10, ge=0, le=1)
    error_rate_failing: float = Field(0.30, ge=0, le=1)
    success_age_degraded: timedelta = timedelta(hours=6)
    success_age_failing: timedelta = timedelta(hours=24)
    records_healthy_ratio: float = Field(0.5, ge=0)
    records_failing_ratio: float = Field(0.2, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> HealthThresholds:
        if self.error_rate_degraded > self.error_rate_failing:
            raise ValueError("error_rate_degraded must not exceed error_rate_failing")
        if self.success_age_degraded > self.success_age_failing:
            raise ValueError("success_age_degraded must not exceed success_age_failing")
        if self.records_failing_ratio > self.records_healthy_ratio:
            raise ValueError("records_failing_ratio must not exceed records_healthy_ratio")
        return self


class HealthMetrics(BaseModel):
    """What the database says about one agent, already aggregated."""

    ever_ran: bool
    runs_in_window: int = Field(ge=0)
    errors_in_window: int = Field(ge=0)
    successes_in_window: int = Field(ge=0)
    avg_records_per_success: float = Field(ge=0)
    expected_records_per_run: int = Field(gt=0)
    time_since_success: timedelta | None
    """Since the last success; since the first run when the agent never succeeded."""

    @property
    def error_rate(self) -> float:
        return self.errors_in_window / self.runs_in_window if self.runs_in_window else 0.0


class StatusVerdict(BaseModel):
    status: HealthStatus
    reasons: list[str]


def _over(value: float, line: float) -> bool:
    """``value > line``, with values a rounding error away from the line counted as on it:
    3 records of 3 expected at 20% is 0.6 against 3 * 0.2 = 0.6000000000000001."""
    return value > line and not math.isclose(value, line, rel_tol=1e-9, abs_tol=1e-12)


def _under(value: float, line: float) -> bool:
    return value < line and not math.isclose(value, line, rel_tol=1e-9, abs_tol=1e-12)


def grade_error_rate(rate: float, t: HealthThresholds) -> HealthStatus:
    if _over(rate, t.error_rate_failing):
        return HealthStatus.FAILING
    if not _under(rate, t.error_rate_degraded):
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


def grade_success_age(age: timedelta | None, t: HealthThresholds) -> HealthStatus:
    if age is None:
        return HealthStatus.HEALTHY
    if age > t.success_age_failing:
        return HealthStatus.FAILING
    if age >= t.success_age_degraded:
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


def grade_records(avg: float, expected: int, t: HealthThresholds) -> HealthStatus:
    if _under(avg, expected * t.records_failing_ratio):
        return HealthStatus.FAILING
    if not _over(avg, expected * t.records_healthy_ratio):
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


def determine_status(m: HealthMetrics, t: HealthThresholds) -> StatusVerdict:
    """Grade every dimension of the table; the agent's status is the worst grade.

    Records per run are graded only when the window holds successful runs: an agent whose
    runs all failed is already failing on error rate, and one with no runs in the window is
    judged by the time since its last success.
    """
    if not m.ever_ran:
        return StatusVerdict(status=HealthStatus.UNKNOWN, reasons=["agent has never run"])
    grades: list[tuple[HealthStatus, str]] = []
    rate = m.error_rate
    grades.append((grade_error_rate(rate, t), f"error rate {rate:.0%} in the window"))
    if m.time_since_success is not None:
        hours = m.time_since_success.total_seconds() / 3600
        grades.append(
            (grade_success_age(m.time_since_success, t), f"{hours:.1f} h since last success")
        )
    if m.successes_in_window:
        avg, expected = m.avg_records_per_success, m.expected_records_per_run
        grades.append(
            (
                grade_records(avg, expected, t),
                f"{avg:.1f} records per run against {expected} expected",
            )
        )
    status = worst(*(grade for grade, _ in grades))
    reasons = [
        why for grade, why in grades if grade is status and grade is not HealthStatus.HEALTHY
    ]
    return StatusVerdict(status=status, reasons=reasons)


class AgentHealth(BaseModel):
    """Health of one agent: every field of the spec's dataclass, plus what an operator needs
    next (why, the last failure and its error, expectations)."""

    agent_name: str
    status: HealthStatus
    reasons: list[str] = []
    last_successful_run: datetime | None
    last_run_duration_seconds: float
    avg_run_duration_seconds: float
    runs_last_24h: int
    errors_last_24h: int
    error_rate: float
    avg_records_per_run: float
    expected_records_per_run: int
    last_failure_at: datetime | None
    last_error: str | None
    checked_at: datetime

    @property
    def is_healthy(self) -> bool:
        """The spec compares ``None`` with a datetime here; the status already encodes the
        error-rate and success-age rules, so it is the whole answer."""
        return self.status is HealthStatus.HEALTHY

    @property
    def is_unhealthy(self) -> bool:
        """Degraded or failing: worth an alert. ``unknown`` (never ran) is neither."""
        return self.status in (HealthStatus.DEGRADED, HealthStatus.FAILING)


def overall_status(healths: list[AgentHealth]) -> HealthStatus:
    """The pipeline is as healthy as its worst agent; unknown only if every agent is."""
    return worst(*(h.status for h in healths))
