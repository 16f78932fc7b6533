"""GET /api/v1/orchestrator/pipeline and /cycles (what the dashboard draws) through ASGI
against real databases and a real Temporal server: prospects per state, the funnel over a
window, handoffs by status, the newest event id, and cycles with their Web UI links."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from db.models import Activity, Event, Handoff
from orchestrator.settings import Settings
from pipeline.handoffs import handoff_id
from pipeline.states import TRANSITIONS
from tests.helpers.api import VIEWER_KEY, api_client
from tests.helpers.factories import add, prospect
from workflows.cycle import CycleWorkflow
from workflows.search_attributes import cycle_attributes
from workflows.types import CycleInput

PIPELINE_URL = "/api/v1/orchestrator/pipeline"


def moved(pid: int, to: str, at: datetime) -> Activity:
    return Activity(
        prospect_id=pid, type="status_change", created_at=at, details={"from": "x", "to": to}
    )


def ledger(pid: int, status: str, at: datetime) -> Handoff:
    return Handoff(
        id=handoff_id(pid, "identified", at),
        prospect_id=pid,
        from_state="identified",
        state_entered_at=at,
        to_agent="hygiene",
        status=status,
        attempt=1,
        created_at=at,
        updated_at=at,
    )


async def seed(
    agent_sessions: async_sessionmaker[AsyncSession],
    sessions: async_sessionmaker[AsyncSession],
    now: datetime,
) -> None:
    """Live prospects: 3 identified, 2 scored, 1 in an unknown state (a deleted one is not
    counted). In the last day 4 moves into scored (one older move is outside the window),
    1 into research_complete. Handoffs: 2 running, 1 blocked, 1 completed. Two events."""
    old = now - timedelta(days=3)
    rows: list[object] = []
    for pid in (1, 2, 3):
        rows += prospect("identified", pid=pid)
    for pid in (4, 5):
        rows += prospect("scored", tier="A1", pid=pid, entered=old)
    rows += prospect("bogus_state", pid=6, entered=old)
    rows += prospect("identified", pid=7, deleted=True, entered=old)
    await add(agent_sessions, *rows)
    hour = timedelta(hours=1)
    await add(
        agent_sessions,
        *[moved(pid, "scored", now - hour) for pid in (1, 2, 3, 4)],
        moved(5, "scored", old),
        moved(4, "research_complete", now - hour),
    )
    await add(
        sessions,
        ledger(1, "running", now - hour),
        ledger(2, "running", now - hour),
        ledger(3, "blocked", now - hour),
        ledger(4, "completed", now - hour),
        Event(dedup_key="a", kind="agent_paused", agent_name="hygiene", payload={}, created_at=now),
        Event(
            dedup_key="b", kind="agent_resumed", agent_name="hygiene", payload={}, created_at=now
        ),
    )


async def test_pipeline_counts_states_funnel_and_handoffs(
    settings: Settings,
    agent_sessionmaker: async_sessionmaker[AsyncSession],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await seed(agent_sessionmaker, sessionmaker, datetime.now(UTC))
    async with api_client(settings, key=VIEWER_KEY) as api:
        response = await api.get(PIPELINE_URL)
    assert response.status_code == 200, response.text
    body = response.json()

    counts = {s["state"]: s["count"] for s in body["states"]}
    assert [s["state"] for s in body["states"]] == [*TRANSITIONS, "bogus_state"]
    assert (counts["identified"], counts["scored"], counts["bogus_state"]) == (3, 2, 1)
    assert sum(counts.values()) == body["total"] == 6
    assert [s["known"] for s in body["states"]][-1] is False
    assert {s["state"] for s in body["states"] if s["terminal"]} == {
        "meeting_booked",
        "closed_lost",
        "disqualified",
    }

    # prospect 7 was added days ago and deleted; 1-3 were added a minute ago
    entries = body["funnel_entries"]
    assert (entries["identified"], entries["scored"], entries["research_complete"]) == (3, 4, 1)
    first, second = body["funnel"][:2]
    assert (first["from_state"], first["to_state"], first["conversion"]) == (
        "identified",
        "scored",
        4 / 3,
    )
    assert second["conversion"] == 0.25

    assert body["handoffs"] == {"running": 2, "blocked": 1, "completed": 1}
    assert body["last_event_id"] >= 2
    assert body["temporal"]["workflows_url"] == "http://localhost:8233/namespaces/default/workflows"


async def test_pipeline_of_an_empty_database_is_all_zeros(settings: Settings) -> None:
    async with api_client(settings, key=VIEWER_KEY) as api:
        body = (await api.get(PIPELINE_URL, params={"window_hours": 1})).json()
    assert body["total"] == 0 and body["handoffs"] == {} and body["last_event_id"] == 0
    assert all(step["conversion"] == 0.0 for step in body["funnel"])


async def test_pipeline_needs_a_key_and_a_sane_window(settings: Settings) -> None:
    async with api_client(settings, key=None) as api:
        assert (await api.get(PIPELINE_URL)).status_code == 401
    async with api_client(settings, key=VIEWER_KEY) as api:
        response = await api.get(PIPELINE_URL, params={"window_hours": 0})
    assert response.status_code == 422
    assert "window_hours" in response.json()["detail"]


async def test_cycles_lists_this_task_queues_cycles_with_web_ui_links(
    settings: Settings, client: Client
) -> None:
    workflow_id = f"cycle-monitor-test-{settings.temporal.task_queue}"
    handle = await client.start_workflow(
        CycleWorkflow.run,
        CycleInput(mode="monitor"),
        id=workflow_id,
        task_queue=settings.temporal.task_queue,
        search_attributes=cycle_attributes("monitor"),
    )
    try:
        async with api_client(settings, temporal_client=client, key=VIEWER_KEY) as api:
            for _ in range(50):  # visibility is eventually consistent
                cycles = (await api.get("/api/v1/orchestrator/cycles")).json()
                if cycles:
                    break
                await asyncio.sleep(0.1)
    finally:
        await handle.terminate("test done")
    assert [(c["workflow_id"], c["mode"], c["status"]) for c in cycles] == [
        (workflow_id, "monitor", "running")
    ]
    assert cycles[0]["web_ui_url"].endswith(f"/namespaces/default/workflows/{workflow_id}")
