"""Agents that are not there, on a real Temporal dev server of each test's own (every other
test shares one whose agent queues their workers poll, and a server lists a poller for
minutes after it stopped): a queue nobody polls is shown absent
(the API, /health) and a handoff to it is flagged ``no_worker`` at once, in its query, its
ledger row and one ``agent_no_worker`` alert; once a worker polls, it is shown present, the
handoff goes through and the alert resolves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from db.models import Alert
from orchestrator.settings import PresenceSettings, Settings
from orchestrator.task_queues import TaskQueuePresence
from tests.helpers.agents import FakeAgent
from tests.helpers.api import api_client
from tests.helpers.devserver import start_dev_server
from tests.helpers.factories import add, prospect
from tests.helpers.handoffs import (
    ledger,
    live_state,
    record_history,
    run_cycle,
    sweep,
    wait_closed,
    wait_until,
)
from worker import build_worker

WITHIN = 30.0
"""Seconds any one wait here may take before the test fails."""


@pytest.fixture
async def lonely_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    yield env
    await env.shutdown()


@pytest.fixture
def lonely(lonely_env: WorkflowEnvironment, settings: Settings) -> tuple[Client, Settings]:
    """A client of the module's own server, and settings pointing there (no presence cache,
    so a worker coming up is seen at the next look)."""
    client = lonely_env.client
    temporal = settings.temporal.model_copy(
        update={"address": client.service_client.config.target_host}
    )
    presence = PresenceSettings(cache_seconds=0)
    return client, settings.model_copy(update={"temporal": temporal, "presence": presence})


async def no_worker_alerts(sessionmaker) -> list[Alert]:  # type: ignore[no-untyped-def]
    async with sessionmaker() as session:
        return list(await session.scalars(select(Alert).filter_by(kind="agent_no_worker")))


async def presence_by_agent(http) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    agents = (await http.get("/api/v1/agents")).json()
    return {a["name"]: a["presence"] for a in agents}


async def test_an_agent_nobody_serves_is_shown_absent_and_its_handoff_flagged_at_once(
    lonely: tuple[Client, Settings], sessionmaker, agent_sessionmaker
) -> None:
    client, settings = lonely
    agents = {
        name: FakeAgent(name, agent_sessionmaker) for name in ("hygiene", "researcher", "outreach")
    }
    await add(agent_sessionmaker, *prospect("identified", pid=31), *prospect("identified", pid=32))
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(build_worker(client, sessionmaker, settings))
        http = await stack.enter_async_context(api_client(settings, temporal_client=client))
        shown = await presence_by_agent(http)
        assert shown["hygiene"]["present"] is False
        assert shown["hygiene"]["detail"] == "no worker polls task queue agent-hygiene"
        health = (await http.get("/api/v1/orchestrator/health")).json()
        assert {p["agent"]: p["present"] for p in health["presence"]}["hygiene"] is False

        await asyncio.wait_for(sweep(client, settings), WITHIN)
        await wait_until(lambda: _flagged(client, 31), within=WITHIN)
        await wait_until(lambda: _flagged(client, 32), within=WITHIN)
        [row] = await ledger(sessionmaker, 31)
        assert (row.status, row.no_worker) == ("running", True)
        assert row.detail == "no worker polls task queue agent-hygiene"
        listed = (await http.get("/api/v1/handoffs", params={"prospect_id": 31})).json()
        assert listed["items"][0]["no_worker"] is True
        [alert] = await no_worker_alerts(sessionmaker)  # two handoffs, one alert
        assert (alert.fingerprint, alert.status, alert.agent_name) == (
            "agent_no_worker:hygiene",
            "open",
            "hygiene",
        )

        # the agents' workers come: shown present, the handoffs go through, the alert clears
        for agent in agents.values():
            await stack.enter_async_context(agent.worker(client))
        await wait_until(lambda: _present(client, "agent-hygiene"), within=WITHIN)
        await asyncio.wait_for(wait_closed(client, 31), WITHIN)
        await asyncio.wait_for(wait_closed(client, 32), WITHIN)
        await record_history(client, "handoff-31", "handoff_no_worker", settings)
        rows = await ledger(sessionmaker, 31)  # on along the chain, with workers there
        assert [(r.to_agent, r.status, r.no_worker) for r in rows] == [
            ("hygiene", "completed", True),
            ("researcher", "completed", False),
            ("outreach", "completed", False),
        ]
        await asyncio.wait_for(run_cycle(client, settings, "handoffs"), WITHIN)
        shown = await presence_by_agent(http)
        assert shown["hygiene"]["present"] is True and shown["hygiene"]["pollers"] >= 1
    assert [a.status for a in await no_worker_alerts(sessionmaker)] == ["resolved"]
    assert agents["hygiene"].work == {(31, "identified"): 1, (32, "identified"): 1}


async def _flagged(client: Client, pid: int) -> bool:
    try:
        state = await live_state(client, pid)
    except Exception:  # not started yet
        return False
    return state is not None and state.no_worker


async def _present(client: Client, queue: str) -> bool:
    return bool((await TaskQueuePresence(client, cache_seconds=0).pollers(queue)).served)


async def test_presence_is_one_lookup_per_queue_and_period_however_many_ask(
    client: Client,
) -> None:
    now = [0.0]
    presence = TaskQueuePresence(client, cache_seconds=5, clock=lambda: now[0])
    queue = "agent-nobody-serves-this"
    asks = [presence.pollers(queue) for _ in range(50)]
    answers = await asyncio.wait_for(asyncio.gather(*asks), WITHIN)
    assert {a.served for a in answers} == {False} and presence.lookups == 1

    now[0] = 10.0  # stale: the begin step gets the old answer at once, refreshed behind it
    stale = await presence.pollers(queue, stale_ok=True)
    assert stale.served is False
    await wait_until(lambda: presence.lookups == 2, within=WITHIN)
    assert (await presence.pollers(queue)).served is False and presence.lookups == 2
