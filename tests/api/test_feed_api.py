"""The feed through the API: hand one prospect off now (or be told why not), the feed's
state and lag, its figures in ``/metrics``, and nudges from run ingestion."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from temporalio.client import Client

from db.models import AgentControl
from orchestrator.settings import Settings
from tests.helpers.agents import FakeAgent, prospect_status
from tests.helpers.api import api_client
from tests.helpers.factories import add, prospect
from tests.helpers.handoffs import ledger, running, wait_closed, wait_until
from tests.workflows.test_feed import feed_state, feeding, with_feed

API = "/api/v1"


async def test_handing_off_one_prospect_starts_its_handoff_at_once(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings, agents
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=7))
    async with (
        running(client, sessionmaker, worker_settings, agents),
        api_client(worker_settings, client) as api,
    ):
        response = await api.post(f"{API}/prospects/7/handoff")
        assert response.status_code == 202, response.text
        body = response.json()
        await wait_closed(client, 7)
        again = await api.post(f"{API}/prospects/7/handoff")
    assert (body["from_state"], body["to_agent"], body["workflow_id"]) == (
        "identified",
        "hygiene",
        "handoff-7",
    )
    assert body["web_ui_url"].endswith("/workflows/handoff-7")
    assert await prospect_status(sessionmaker, 7) == "in_sequence"
    assert [r.status for r in await ledger(sessionmaker, 7)] == ["completed"] * 3
    # in_sequence has no trigger: nothing left to hand off, and the answer says why
    assert again.status_code == 409
    assert "'in_sequence', a state no trigger hands on" in again.json()["detail"]


async def test_handing_off_a_prospect_no_trigger_admits_is_409_with_the_reason(
    client: Client, agent_sessionmaker, worker_settings: Settings
) -> None:
    await add(
        agent_sessionmaker,
        *prospect("scored", tier="C", pid=1),
        *prospect("research_complete", tier="A1", email=None, pid=2),
        *prospect("identified", deleted=True, pid=3),
    )
    async with api_client(worker_settings, client) as api:
        answers = {pid: await api.post(f"{API}/prospects/{pid}/handoff") for pid in (1, 2, 3, 4)}
        zero = await api.post(f"{API}/prospects/0/handoff")
    assert {pid: a.status_code for pid, a in answers.items()} == {1: 409, 2: 409, 3: 409, 4: 404}
    assert "needs tier one of A1, A2" in answers[1].json()["detail"]
    assert "needs tier one of A1, A2, B and a contact with an email" in answers[2].json()["detail"]
    assert "is deleted" in answers[3].json()["detail"]
    assert "does not exist" in answers[4].json()["detail"]
    assert zero.status_code == 422


async def test_handing_off_to_a_paused_agent_or_an_open_handoff_is_409(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings, agents
) -> None:
    hygiene: FakeAgent = agents["hygiene"]
    hygiene.gate = asyncio.Event()
    await add(agent_sessionmaker, *prospect("identified", pid=1), *prospect("identified", pid=2))
    paused_researcher = AgentControl(
        agent_name="researcher", paused=True, updated_at=datetime.now(UTC)
    )
    await add(sessionmaker, paused_researcher)
    async with (
        running(client, sessionmaker, worker_settings, agents),
        api_client(worker_settings, client) as api,
    ):
        first = await api.post(f"{API}/prospects/1/handoff")
        await wait_until(lambda: len(hygiene.calls) == 1)
        second = await api.post(f"{API}/prospects/1/handoff")
        hygiene.gate.set()
        await wait_closed(client, 1)
        # the chain stopped before the paused researcher: prospect 1 waits for it
        paused = await api.post(f"{API}/prospects/1/handoff")
    assert first.status_code == 202
    assert second.status_code == 409
    assert "has a handoff open" in second.json()["detail"]
    assert paused.status_code == 409
    assert "researcher takes no handoffs now" in paused.json()["detail"]


async def test_the_feed_endpoint_and_metrics_show_its_state_and_lag(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings, agents
) -> None:
    settings = with_feed(worker_settings)
    async with api_client(settings, client) as api:
        before = (await api.get(f"{API}/orchestrator/feed")).json()
        async with feeding(client, sessionmaker, settings, agents) as feed:
            await add(agent_sessionmaker, *prospect("identified", pid=1, entered=datetime.now(UTC)))
            await wait_until(lambda: _status_is(sessionmaker, 1, "in_sequence"))
            await wait_until(lambda: _started(feed, 1))
            during = (await api.get(f"{API}/orchestrator/feed")).json()
            metrics = (await api.get("/metrics")).text
    assert before["running"] is False and before["state"] is None
    assert during["running"] is True
    assert during["workflow_id"] == f"feed-{settings.temporal.task_queue}"
    assert during["state"]["handoffs"]["started"] == 1
    assert 0 <= during["state"]["lag_seconds"] < 30
    assert "orchestrator_feed_running 1.0" in metrics
    assert 'orchestrator_feed_total{count="handoffs_started"} 1.0' in metrics
    assert "orchestrator_feed_lag_seconds" in metrics


async def test_an_ingested_run_outside_a_handoff_nudges_the_feed(
    client: Client, sessionmaker, worker_settings: Settings, agents
) -> None:
    settings = with_feed(worker_settings)
    started = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    run = {"status": "completed", "started_at": started, "completed_at": started}
    async with (
        feeding(client, sessionmaker, settings, agents) as feed,
        api_client(settings, client) as api,
    ):
        reported = await api.post(f"{API}/agents/prospector/runs", json=run)
        in_handoff = await api.post(
            f"{API}/agents/hygiene/runs", json={**run, "handoff_id": "1:identified:1"}
        )
        await wait_until(lambda: _nudged(feed, 1))
        state = await feed_state(feed)
    assert (reported.status_code, in_handoff.status_code) == (201, 201)
    assert state.nudges == 1  # the run inside a handoff did not nudge


async def _status_is(sessionmaker, pid: int, status: str) -> bool:
    return await prospect_status(sessionmaker, pid) == status


async def _started(feed, n: int) -> bool:
    return (await feed_state(feed)).handoffs.started >= n


async def _nudged(feed, n: int) -> bool:
    return (await feed_state(feed)).nudges >= n
