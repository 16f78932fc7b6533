"""Response models of the API (the OpenAPI schema at /docs comes from these)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import HTTPException
from pydantic import BaseModel, BeforeValidator

from pipeline.health import AgentHealth, HealthStatus
from pipeline.presence import AgentPresence
from workflows.types import CycleSummary

MAX_ID = 2**63 - 1
"""Row ids are 64-bit (PostgreSQL BIGINT, SQLite INTEGER). A larger id cannot exist, and the
database drivers raise on one instead of finding nothing: bound ids so it is a 422."""
NO_NUL = r"^[^\x00]*$"
"""Text without NUL characters: PostgreSQL can neither store nor compare text holding one,
and no name, id or reason needs it."""
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _calendar_date(value: object) -> object:
    """Pydantic alone reads a number as a Unix time: ``/report/0`` would be 1970-01-01."""
    if isinstance(value, str) and not _ISO_DATE.fullmatch(value):
        raise ValueError("not a date; use YYYY-MM-DD")
    return value


CalendarDate = Annotated[date, BeforeValidator(_calendar_date)]
"""A date written YYYY-MM-DD, and nothing else."""


class HealthResponse(BaseModel):
    status: HealthStatus
    """The worst status of any agent; unknown only when no agent has ever run."""
    checked_at: datetime
    agents: list[AgentHealth]
    presence: list[AgentPresence] = []
    """Per agent: whether a worker polls its task queue, or its endpoint answered lately."""


class RunResponse(BaseModel):
    workflow_id: str
    run_id: str | None
    mode: str
    web_ui_url: str
    status: Literal["running", "completed", "failed"] = "running"
    """``running`` until a wait sees it end; follow it at ``GET /cycles/{workflow_id}``."""
    result: CycleSummary | None = None
    error: str | None = None


class ErrorResponse(BaseModel):
    detail: str
    """What went wrong, in a sentence meant for the caller."""


class ValidationErrorResponse(ErrorResponse):
    """A 422: ``detail`` has one sentence per problem. ``errors`` is pydantic's list when the
    input failed the declared types, absent when a route found the problem itself."""

    errors: list[dict[str, Any]] | None = None


ERROR_TEXT = {
    400: "The request body is not readable JSON",
    401: "Missing or invalid API key (or agent signature)",
    403: "The key's role may not do this (reads need a viewer key, actions an operator key)",
    404: "Nothing by that name or id",
    409: "Not possible in the current state; the detail says why",
    422: "Invalid input; the detail says what is wrong",
    502: "The cycle the request waited for failed",
    503: "Temporal is unreachable",
    504: "The cycle is still running after the wait the caller allowed; it goes on",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error answers, so the schema documents every status a route
    gives, with the body the app's error handlers really send (FastAPI's default 422 schema
    describes a list in ``detail``, which this API does not send)."""
    return {
        code: {
            "model": ValidationErrorResponse if code == 422 else ErrorResponse,
            "description": ERROR_TEXT[code],
        }
        for code in codes
    }


def page_cursor(at: datetime, row_id: object) -> str:
    """The ``next_cursor`` of a keyset page that ended at the row (``at``, ``row_id``)."""
    return f"{at.isoformat()}|{row_id}"


def parse_cursor(cursor: str) -> tuple[datetime, str]:
    """A ``next_cursor`` read back as (time, id); a 422 for anything else."""
    try:
        at, last_id = cursor.split("|", 1)
        when = datetime.fromisoformat(at)
    except ValueError as exc:
        raise HTTPException(422, detail="cursor: not a value returned as next_cursor") from exc
    if when.tzinfo is None:  # every cursor given out has a zone; the database refuses none
        raise HTTPException(422, detail="cursor: not a value returned as next_cursor")
    return when, last_id


def parse_int_cursor(cursor: str) -> tuple[datetime, int]:
    """A cursor of a table with integer ids."""
    at, last_id = parse_cursor(cursor)
    if not last_id.isdigit() or int(last_id) > MAX_ID:
        raise HTTPException(422, detail="cursor: not a value returned as next_cursor")
    return at, int(last_id)
