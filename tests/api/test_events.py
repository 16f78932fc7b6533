"""The event stream: every event, in order, resumable with Last-Event-ID."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import Event
from orchestrator.settings import Settings
from tests.helpers.api import api_client
from tests.helpers.factories import add


def frames(text: str) -> list[dict]:
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            out.append(
                {"id": int(lines["id"]), "event": lines["event"], **json.loads(lines["data"])}
            )
    return out


async def test_events_arrive_in_order_and_resume_after_the_last_seen(
    settings: Settings, engine: AsyncEngine, agent_sessionmaker
) -> None:
    now = datetime.now(UTC)
    kinds = ["agent_unhealthy", "handoff_completed", "report_generated", "circuit_opened"]
    await add(
        agent_sessionmaker,
        *[
            Event(
                dedup_key=f"k{i}", kind=kind, agent_name="hygiene", payload={"n": i}, created_at=now
            )
            for i, kind in enumerate(kinds)
        ],
    )
    async with api_client(settings) as http:
        everything = await http.get("/api/v1/events", params={"follow": "false"})
        first = frames(everything.text)
        resumed = await http.get(
            "/api/v1/events",
            params={"follow": "false"},
            headers={"Last-Event-ID": str(first[1]["id"])},
        )
    assert everything.headers["content-type"].startswith("text/event-stream")
    assert [f["event"] for f in first] == kinds
    assert [f["payload"]["n"] for f in first] == [0, 1, 2, 3]
    assert [f["event"] for f in frames(resumed.text)] == kinds[2:]
