"""Logging set-up: one line per event, JSON lines for log collectors or text for people, each
naming the workflow, prospect and agent it concerns where one applies.

Those fields come from where the line is emitted, not from each call: inside an activity
(Temporal's loggers put a ``temporal_activity`` dict on the record; a plain module logger is
still inside ``activity.info()``), inside a workflow (``temporal_workflow`` from
``workflow.logger``), and from :func:`log_context`, which our code sets around work on one
prospect. Formatting reads them in the logging call's own context, so a handler that formats
on another thread (a ``QueueHandler``) would lose them.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from opentelemetry import trace
from temporalio import activity, workflow

LogFormat = Literal["auto", "json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
CONTEXT_LABELS = {
    "workflow_id": "wf",
    "activity": "activity",
    "prospect_id": "prospect",
    "agent": "agent",
}

_prospect_id: ContextVar[int | None] = ContextVar("log_prospect_id", default=None)
_agent: ContextVar[str | None] = ContextVar("log_agent", default=None)


@contextmanager
def log_context(*, prospect_id: int | None = None, agent: str | None = None) -> Iterator[None]:
    """Name the prospect and agent on every line logged in the block (and in tasks it
    starts, which copy the context)."""
    tokens = [_prospect_id.set(prospect_id), _agent.set(agent)]
    try:
        yield
    finally:
        _agent.reset(tokens[1])
        _prospect_id.reset(tokens[0])


def context_fields(record: logging.LogRecord) -> dict[str, Any]:
    """workflow_id, activity, prospect_id and agent, those that apply to this line."""
    fields = _temporal_fields(record)
    if (prospect_id := _prospect_id.get()) is not None:
        fields["prospect_id"] = prospect_id
    if (agent := _agent.get()) is not None:
        fields["agent"] = agent
    return fields


def _temporal_fields(record: logging.LogRecord) -> dict[str, Any]:
    details: Mapping[str, Any] | None = getattr(record, "temporal_activity", None)
    if details is None and activity.in_activity():
        info = activity.info()
        details = {"workflow_id": info.workflow_id, "activity_type": info.activity_type}
    if details is None:
        details = getattr(record, "temporal_workflow", None)
    if details is None and workflow.in_workflow():
        details = {"workflow_id": workflow.info().workflow_id}
    if not details:
        return {}
    fields = {"workflow_id": details.get("workflow_id")}
    if details.get("activity_type"):
        fields["activity"] = details["activity_type"]
    return {k: v for k, v in fields.items() if v is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (ISO, UTC), level, logger, message, exception,
    the context fields, and the trace id when tracing is on (to find the line's trace)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **context_fields(record),
        }
        if (span := trace.get_current_span().get_span_context()).is_valid:
            line["trace_id"] = trace.format_trace_id(span.trace_id)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The human form, ``time level logger: message``, with ``wf=... prospect=... agent=...``
    appended when they apply (before any traceback)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = context_fields(record)
        suffix = " ".join(f"{CONTEXT_LABELS[k]}={v}" for k, v in fields.items())
        message = super().formatMessage(record)
        return f"{message}  [{suffix}]" if suffix else message


def formatter_for(log_format: LogFormat, stream: TextIO) -> logging.Formatter:
    """``auto``: text for a person at a terminal, JSON lines for anything else."""
    if log_format == "auto":
        log_format = "text" if _is_terminal(stream) else "json"
    return JsonFormatter() if log_format == "json" else TextFormatter()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def configure_logging(
    level: str = "INFO", log_format: LogFormat = "auto", stream: TextIO | None = None
) -> None:
    """Log to ``stream`` (stderr) in the chosen format, unless the root logger already has
    handlers (someone else, a test runner say, decided where logs go)."""
    stream = stream or sys.stderr
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter_for(log_format, stream))
        root.addHandler(handler)
        root.setLevel(level.upper())
        _context_off_the_message()
    threshold = logging.getLevelName(level.upper())
    # the SDK's worker logs every poll at DEBUG; keep its warnings
    logging.getLogger("temporalio").setLevel(max(logging.INFO, threshold))
    # httpx logs each request's full URL at INFO, and a Slack webhook's URL is its secret;
    # the HTTP agent trigger logs the answer itself, with its context
    logging.getLogger("httpx").setLevel(max(logging.WARNING, threshold))


def _context_off_the_message() -> None:
    """Temporal's loggers append their info dict to each message; ours is in fields."""
    activity.logger.activity_info_on_message = False
    workflow.logger.workflow_info_on_message = False
