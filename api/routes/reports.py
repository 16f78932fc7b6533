"""Stored pipeline reports: today's, by date, weekly, the list, and backfill."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from temporalio.client import WorkflowFailureError

from api.deps import IdempotencyKey, SessionDep, SettingsDep, TemporalDep, temporal_client
from api.schemas import CalendarDate, RunResponse, errors
from db.commands.reports import load_report
from db.queries.ledger import latest_report_date, stored_reports
from orchestrator.settings import Settings
from pipeline.report_markdown import to_markdown
from pipeline.reports import report_date_for, report_window
from workflows.starters import IdempotencyConflict, start_cycle, web_ui_url
from workflows.types import CycleInput

router = APIRouter(prefix="/api/v1/orchestrator", tags=["reports"], responses=errors(401, 422))
Kind = Literal["daily", "weekly"]
Format = Annotated[
    Literal["json", "md"], Query(alias="format", description="json, or md for Markdown")
]
STORED = {
    200: {"content": {"text/markdown": {"schema": {"type": "string"}}}},
    **errors(404),
}
"""A stored report: JSON, or Markdown with format=md; 404 when none is stored."""


class StoredReport(BaseModel):
    kind: str
    report_date: date
    window_start: datetime
    window_end: datetime
    created_at: datetime


def _when(settings: Settings, kind: Kind) -> str:
    at = settings.reports.at.strftime("%H:%M")
    if kind == "weekly":
        days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
        return f"weekly reports are generated on {days[settings.reports.weekly_day]}s at {at}"
    return f"reports are generated daily at {at}"


async def _respond(session: SessionDep, settings: Settings, kind: Kind, day: date, fmt: str) -> Any:
    payload = await load_report(session, kind, day)
    if payload is None:
        raise HTTPException(
            404,
            detail=f"no {kind} report for {day.isoformat()}; {_when(settings, kind)} "
            f"({settings.time_zone}), and past dates can be generated with "
            f"POST /api/v1/orchestrator/reports/{day.isoformat()}/generate"
            + ("?kind=weekly" if kind == "weekly" else ""),
        )
    if fmt == "md":
        return PlainTextResponse(to_markdown(payload), media_type="text/markdown")
    return payload


@router.get("/report/today", responses=STORED)
async def get_today_report(
    *, session: SessionDep, settings: SettingsDep, fmt: Format = "json"
) -> Any:
    """Today's daily report (the one whose window ended at today's report time)."""
    today = report_date_for(datetime.now(UTC), settings.time_zone, settings.reports.at)
    return await _respond(session, settings, "daily", today, fmt)


@router.get("/report/{report_date}", responses=STORED)
async def get_report(
    *, report_date: CalendarDate, session: SessionDep, settings: SettingsDep, fmt: Format = "json"
) -> Any:
    """The stored daily report for a date (YYYY-MM-DD)."""
    return await _respond(session, settings, "daily", report_date, fmt)


@router.get("/reports/weekly/latest", responses=STORED)
async def get_latest_weekly_report(
    *, session: SessionDep, settings: SettingsDep, fmt: Format = "json"
) -> Any:
    """The most recent stored weekly report."""
    day = await latest_report_date(session, "weekly")
    if day is None:
        raise HTTPException(404, detail=f"no weekly report yet; {_when(settings, 'weekly')}")
    return await _respond(session, settings, "weekly", date.fromisoformat(day), fmt)


@router.get("/reports/weekly/{report_date}", responses=STORED)
async def get_weekly_report(
    *, report_date: CalendarDate, session: SessionDep, settings: SettingsDep, fmt: Format = "json"
) -> Any:
    """The stored weekly report for a date (the day its 7-day window ended)."""
    return await _respond(session, settings, "weekly", report_date, fmt)


@router.get("/reports", response_model=list[StoredReport])
async def list_reports(
    *,
    session: SessionDep,
    kind: Kind | None = None,
    limit: Annotated[int, Query(ge=1, le=365)] = 30,
) -> list[StoredReport]:
    """Stored reports, newest first (without their payloads)."""
    return [
        StoredReport(
            kind=r.kind,
            report_date=date.fromisoformat(r.report_date),
            window_start=r.window_start,
            window_end=r.window_end,
            created_at=r.created_at,
        )
        for r in await stored_reports(session, limit=limit, kind=kind)
    ]


@router.post(
    "/reports/{report_date}/generate",
    status_code=201,
    responses={**errors(403, 503), 202: {"model": RunResponse}},
)
async def generate_report(
    *,
    report_date: CalendarDate,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    idempotency_key: IdempotencyKey = None,
    kind: Kind = "daily",
    wait_seconds: Annotated[float, Query(ge=0.1, le=600)] = 120.0,
) -> Any:
    """(Re)generate the report for a past date through a report cycle: 201 with the report
    when it is done within ``wait_seconds``, else 202 with the cycle to follow."""
    today = report_date_for(datetime.now(UTC), settings.time_zone, settings.reports.at)
    try:
        report_window(report_date, settings.time_zone, settings.reports.at, days=7)
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    if report_date > today:
        raise HTTPException(
            422,
            detail=f"{report_date} is in the future; the latest report "
            f"date now is {today.isoformat()}",
        )
    client = await temporal_client(temporal)
    try:
        handle = await start_cycle(
            client,
            settings.temporal.task_queue,
            CycleInput(mode="report", report_kind=kind, report_date=report_date),
            started_by=f"{kind}-{report_date.isoformat()}",
            summary=f"{kind} report for {report_date}, requested through the API",
            idempotency_key=idempotency_key,
            operation="report",
        )
    except IdempotencyConflict as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    running = RunResponse(
        workflow_id=handle.id,
        run_id=handle.result_run_id,
        mode="report",
        web_ui_url=web_ui_url(settings.temporal, handle.id),
    )
    try:
        await asyncio.wait_for(handle.result(), wait_seconds)
    except TimeoutError:
        return JSONResponse(running.model_dump(mode="json"), status_code=202)
    except WorkflowFailureError as exc:
        failed = running.model_copy(update={"status": "failed", "error": str(exc.cause)})
        return JSONResponse(failed.model_dump(mode="json"), status_code=202)
    session.expire_all()
    return await _respond(session, settings, kind, report_date, "json")
