"""Delivering the notification outbox to its sinks: the log, a signed generic webhook, and a
Slack-compatible incoming webhook. A failed delivery stays pending and is tried again at the
next cycle; nothing here raises for a sink being down."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Notification
from orchestrator.signing import SIGNATURE_HEADER, sign

log = logging.getLogger("orchestrator.alerts")
# httpx logs every request's URL at INFO, and a Slack webhook's URL is its secret: whoever
# imports the senders gets httpx's warnings and errors only, whatever the root level.
logging.getLogger("httpx").setLevel(logging.WARNING)

EMOJI = {
    "opened": ":rotating_light:",
    "worsened": ":fire:",
    "repeat": ":hourglass:",
    "resolved": ":white_check_mark:",
}


class SinkConfig(BaseModel):
    webhook_url: str | None = None
    webhook_secret: str | None = None
    slack_url: str | None = None
    max_attempts: int = 50


class Delivery(BaseModel):
    sent: int = 0
    failed: int = 0
    given_up: int = 0


def slack_text(payload: dict[str, Any]) -> str:
    """What a person reads in the channel: who, what, how bad, and where to look."""
    who = payload.get("agent") or payload.get("kind")
    rate = payload.get("error_rate")
    parts = [f"{EMOJI.get(payload['event'], '')} *{who}*: {payload['message']}".strip()]
    if payload.get("status"):
        parts.append(f"status {payload['status']}")
    if rate is not None:
        parts.append(f"error rate {rate:.0%}")
    parts.append(f"seen {payload['count']}x since {payload['first_seen']}")
    text = " — ".join(parts)
    if payload.get("held"):
        text += f" — {payload['held']} alerts it causes held back"
    if payload.get("dashboard_url"):
        text += f"\n<{payload['dashboard_url']}|Dashboard>"
    if payload.get("web_ui_url"):
        text += f"\n<{payload['web_ui_url']}|Temporal Web UI>"
    return text if payload["event"] != "resolved" else f"{EMOJI['resolved']} *{who}* resolved"


async def _send(row: Notification, config: SinkConfig, http: httpx.AsyncClient) -> None:
    if row.sink == "log":
        log.warning("alert %s: %s", row.event, row.payload["message"])
        return
    if row.sink == "webhook" and config.webhook_url:
        body = json.dumps(row.payload).encode()
        headers = {"Content-Type": "application/json"}
        if config.webhook_secret:
            headers[SIGNATURE_HEADER] = sign(body, config.webhook_secret)
        response = await http.post(config.webhook_url, content=body, headers=headers)
    elif row.sink == "slack" and config.slack_url:
        response = await http.post(config.slack_url, json={"text": slack_text(row.payload)})
    else:
        raise RuntimeError(f"sink {row.sink!r} is not configured")
    response.raise_for_status()


def _describe(exc: Exception, sink: str) -> str:
    """What went wrong, without the sink's URL: a Slack webhook's URL is its secret, and
    httpx quotes the URL in its messages."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"{sink} answered HTTP {exc.response.status_code}"
    if isinstance(exc, httpx.HTTPError):
        return f"{sink} unreachable: {type(exc).__name__}"
    return str(exc)[:1000]


async def deliver_pending(
    session: AsyncSession, config: SinkConfig, http: httpx.AsyncClient, limit: int = 200
) -> Delivery:
    rows = await session.scalars(
        select(Notification)
        .where(Notification.status == "pending")
        .order_by(Notification.created_at, Notification.id)
        .limit(limit)
    )
    result = Delivery()
    for row in list(rows):
        row.attempts += 1
        try:
            await _send(row, config, http)
        except (httpx.HTTPError, RuntimeError) as exc:
            row.last_error = _describe(exc, row.sink)
            result.failed += 1
            if row.attempts >= config.max_attempts:
                row.status, result.given_up = "failed", result.given_up + 1
            continue
        row.status, row.sent_at, result.sent = "sent", datetime.now(UTC), result.sent + 1
    await session.commit()
    return result
