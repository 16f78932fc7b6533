"""Retention through the API: ``POST /run?mode=housekeeping`` runs it, and a client resuming
the event stream from a pruned position is told so (not a 500, not silence)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from db.commands.retention import PrunePlan, prune_tables
from db.models import Event
from orchestrator.settings import RetentionSettings, Settings
from tests.helpers.api import api_client
from tests.helpers.factories import add
from worker import build_worker

RUN = "/api/v1/orchestrator/run"
EVENTS = "/api/v1/events"
NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=30)


def sse_blocks(text: str) -> list[dict[str, str]]:
    """Each event of a stream as its fields (id, event, data)."""
    blocks = [
        dict(line.split(": ", 1) for line in b.splitlines() if ": " in line)
        for b in text.split("\n\n")
    ]
    return [b for b in blocks if "data" in b]


async def seed_events(sessionmaker) -> None:
    """Five events past the 7-day window, then two recent ones."""
    old = [Event(dedup_key=f"old{i}", kind="k", payload={}, created_at=OLD) for i in range(5)]
    new = [Event(dedup_key=f"new{i}", kind="k", payload={}, created_at=NOW) for i in range(2)]
    await add(sessionmaker, *old, *new)


async def prune_events(sessionmaker) -> None:
    windows = {"events": RetentionSettings().events}
    plan = PrunePlan(windows, NOW, batch_size=100, batch_pause=timedelta(0), max_batches=10)
    await prune_tables(sessionmaker, plan, ["events"])


async def test_resuming_from_a_pruned_position_is_told_so_then_goes_on(
    settings: Settings, engine: AsyncEngine, sessionmaker
) -> None:
    await seed_events(sessionmaker)
    async with api_client(settings) as http:
        before = await http.get(EVENTS, params={"follow": "false"})
        await prune_events(sessionmaker)
        resumed = await http.get(EVENTS, params={"follow": "false"}, headers={"Last-Event-ID": "2"})
        fresh = await http.get(EVENTS, params={"follow": "false"})
        caught_up = await http.get(EVENTS, params={"follow": "false", "after": 5})

    assert "X-Events-Pruned-Through" not in before.headers
    assert resumed.status_code == 200
    assert resumed.headers["X-Events-Pruned-Through"] == "5"
    blocks = sse_blocks(resumed.text)
    assert [b["event"] for b in blocks] == ["pruned", "k", "k"]
    notice = json.loads(blocks[0]["data"])
    assert (notice["asked_after"], notice["pruned_through"]) == (2, 5)
    assert "deleted by retention" in notice["message"]
    assert [b["event"] for b in sse_blocks(fresh.text)] == ["k", "k"]  # asked for no position
    assert [b["event"] for b in sse_blocks(caught_up.text)] == ["k", "k"]  # missed nothing


async def test_run_housekeeping_through_the_api_returns_what_it_removed(
    worker_settings: Settings, engine: AsyncEngine, client: Client, sessionmaker
) -> None:
    await seed_events(sessionmaker)
    async with (
        build_worker(client, sessionmaker, worker_settings),
        api_client(worker_settings, client) as http,
    ):
        response = await http.post(
            RUN, params={"mode": "housekeeping", "wait": "true", "wait_seconds": "30"}
        )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["mode"] == "housekeeping"
    assert body["result"]["housekeeping"]["removed"]["events"] == 5
