"""The report step of a cycle: build and store a daily or weekly report
(``db.commands.reports``)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from db.commands.reports import ReportConfig, generate_report
from pipeline.reports import (
    report_date_for,
)


class GenerateReportInput(BaseModel):
    kind: Literal["daily", "weekly"]
    report_date: date | None = None
    """``None``: the date of the latest schedule time (08:00 local) at or before ``as_of``."""
    as_of: datetime | None = None
    """When the report is generated; the cycle passes ``workflow.now()``, so a retry writes
    the same event key. ``None``: the activity's clock."""


class ReportResult(BaseModel):
    kind: Literal["daily", "weekly"]
    report_date: date
    window_start: datetime
    window_end: datetime
    summary: str


class ReportActivities:
    """Report activities, bound to the worker's database and configuration."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], config: ReportConfig
    ) -> None:
        self._sessionmaker = sessionmaker
        self._config = config

    @activity.defn(name="generate_report")
    async def generate_report(self, input: GenerateReportInput) -> ReportResult:
        as_of = input.as_of or datetime.now(UTC)
        config = self._config
        report_date = input.report_date or report_date_for(as_of, config.tz, config.at)
        async with self._sessionmaker() as session:
            report = await generate_report(session, config, input.kind, report_date, as_of)
        activity.logger.info("%s report for %s: %s", input.kind, report_date, report.summary)
        return ReportResult(
            kind=input.kind,
            report_date=report_date,
            window_start=report.window_start,
            window_end=report.window_end,
            summary=report.summary,
        )
