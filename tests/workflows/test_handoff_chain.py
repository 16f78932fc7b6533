"""Handoffs on a real Temporal server with stand-in agents: triggers, the immediate chain,
exactly once."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from temporalio.client import Client

from db.models import OrchestratorAction
from orchestrator.settings import Settings
from tests.helpers.agents import FakeAgent, prospect_status
from tests.helpers.factories import add, prospect
from tests.helpers.handoffs import ledger, locks, record_history, running, sweep, wait_closed


async def test_identified_prospect_reaches_outreach_through_three_agents_in_one_chain(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    async with running(client, sessionmaker, worker_settings, agents):
        summary = await sweep(client, worker_settings, record_as="cycle_handoffs")
        await wait_closed(client, 1)
        await record_history(client, "handoff-1", "handoff_chain", worker_settings)
    assert summary.handoffs is not None
    assert (summary.handoffs.pending, summary.handoffs.started) == (1, 1)
    assert await prospect_status(sessionmaker, 1) == "in_sequence"
    rows = await ledger(sessionmaker, 1)
    assert [(r.from_state, r.to_agent, r.status) for r in rows] == [
        ("identified", "hygiene", "completed"),
        ("scored", "researcher", "completed"),
        ("research_complete", "outreach", "completed"),
    ]
    assert {name: sum(a.work.values()) for name, a in agents.items()} == {
        "hygiene": 1,
        "researcher": 1,
        "outreach": 1,
    }
    async with sessionmaker() as session:
        actions = list(await session.scalars(select(OrchestratorAction)))
    assert [a.action for a in actions] == ["handoff_executed"] * 3
    assert actions[0].details["from_state"] == "identified"
    assert actions[0].details["to_agent"] == "hygiene"
    assert await locks(sessionmaker) == []


async def test_overlapping_sweeps_trigger_each_agent_once(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    for pid in range(1, 21):
        await add(agent_sessionmaker, *prospect("identified", pid=pid))
    async with running(client, sessionmaker, worker_settings, agents):
        summaries = await asyncio.gather(*(sweep(client, worker_settings) for _ in range(3)))
        for pid in range(1, 21):
            await wait_closed(client, pid)
        again = await sweep(client, worker_settings)
    started = sum(s.handoffs.started for s in summaries if s.handoffs)
    assert started >= 20
    for agent in agents.values():
        assert set(agent.work.values()) == {1}, agent.work
        assert len(agent.work) == 20
    assert again.handoffs is not None and again.handoffs.pending == 0
