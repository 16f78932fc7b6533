"""Whether an agent is there to take its handoffs, as data: what the API, the health page and
the dashboard show per agent, and how an answer's age is judged. No I/O."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from pipeline.handoffs import Transport


class AgentPresence(BaseModel):
    agent: str
    transport: Transport
    present: bool | None
    """Served now: a worker polls its task queue (``temporal``), or its endpoint answered
    recently (``http``); ``None`` when it cannot be told (Temporal unreachable)."""
    pollers: int | None = None
    """Workers polling ``agent-<name>`` recently (``temporal`` agents)."""
    last_seen: datetime | None = None
    """The latest poll of its queue, or the latest answer of its endpoint."""
    detail: str | None = None


def http_presence(
    agent: str, answered_at: datetime | None, now: datetime, max_age: timedelta
) -> AgentPresence:
    """An HTTP agent is present while its endpoint answered within ``max_age``."""
    if answered_at is None:
        return AgentPresence(
            agent=agent, transport="http", present=False, detail="its endpoint never answered"
        )
    fresh = now - answered_at <= max_age
    detail = None if fresh else f"its endpoint has not answered for over {max_age}"
    return AgentPresence(
        agent=agent, transport="http", present=fresh, last_seen=answered_at, detail=detail
    )


def no_worker_detail(queue: str) -> str:
    return f"no worker polls task queue {queue}"
