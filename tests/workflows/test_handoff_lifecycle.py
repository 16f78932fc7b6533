"""A handoff's life on a real Temporal server: retries, a worker restart, blocked and stalled
states made visible, operator retry and cancel, and the lease released in every ending."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from db.models import RecordLock
from orchestrator.settings import Settings
from pipeline.handoffs import HandoffStatus, handoff_workflow_id
from tests.helpers.agents import FakeAgent, prospect_status
from tests.helpers.factories import add, held_lease, prospect
from tests.helpers.handoffs import (
    ledger,
    listed_by_status,
    live_state,
    locks,
    record_history,
    running,
    sweep,
    wait_closed,
    wait_until,
    with_handoffs,
)
from worker import build_worker


async def test_agent_that_fails_twice_then_succeeds_does_the_work_once(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    agents["hygiene"].fail_first = 2
    await add(agent_sessionmaker, *prospect("identified", pid=7))
    async with running(client, sessionmaker, worker_settings, agents):
        await sweep(client, worker_settings)
        await wait_closed(client, 7)
    hygiene = agents["hygiene"]
    assert [c.prospect_id for c in hygiene.calls] == [7, 7, 7]
    assert hygiene.work == {(7, "identified"): 1}
    assert await prospect_status(sessionmaker, 7) == "in_sequence"
    assert [r.status for r in await ledger(sessionmaker, 7)] == ["completed"] * 3


async def test_worker_restarted_mid_handoff_triggers_no_agent_twice(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    gate = agents["researcher"].gate = asyncio.Event()
    await add(agent_sessionmaker, *prospect("identified", pid=8))
    agent_workers = [a.worker(client) for a in agents.values()]
    for w in agent_workers:
        await w.__aenter__()
    try:
        async with build_worker(client, sessionmaker, worker_settings):
            await sweep(client, worker_settings)
            await wait_until(lambda: agents["researcher"].calls)
        # the orchestrator's worker is gone while the researcher works; a new one takes over
        gate.set()
        async with build_worker(client, sessionmaker, worker_settings):
            await wait_closed(client, 8)
    finally:
        for w in agent_workers:
            await w.__aexit__(None, None, None)
    for agent in agents.values():
        assert agent.work == {(8, next(iter(agent.work))[1]): 1}
        assert len(agent.calls) == 1
    assert await prospect_status(sessionmaker, 8) == "in_sequence"
    assert await locks(sessionmaker) == []


async def test_blocked_handoff_is_visible_and_a_retry_signal_unblocks_it(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    settings = with_handoffs(worker_settings, blocked_retry_interval=timedelta(hours=1))
    await add(
        agent_sessionmaker,
        *prospect("identified", pid=9),
        held_lease(9, "researcher", run_id="other-run", held_for=timedelta(hours=2)),
    )
    async with running(client, sessionmaker, settings, agents):
        await sweep(client, settings)
        await wait_until(lambda: listed_by_status(client, "blocked", 9))
        state = await live_state(client, 9)
        assert state is not None and state.status is HandoffStatus.BLOCKED
        assert state.blocked_by == "researcher"
        assert [r.status for r in await ledger(sessionmaker, 9)] == ["blocked"]
        assert agents["hygiene"].calls == []
        async with sessionmaker() as session:
            await session.delete(await session.get(RecordLock, (await locks(sessionmaker))[0].id))
            await session.commit()
        await client.get_workflow_handle(handoff_workflow_id(9)).signal("retry")
        await wait_closed(client, 9)
        await record_history(client, handoff_workflow_id(9), "handoff_blocked_retry", settings)
    assert await prospect_status(sessionmaker, 9) == "in_sequence"
    assert await locks(sessionmaker) == []


async def test_stalled_handoff_is_visible_then_cancelled_releasing_its_lease(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    settings = with_handoffs(worker_settings, stall_after=timedelta(seconds=1))
    gate = agents["hygiene"].gate = asyncio.Event()
    await add(agent_sessionmaker, *prospect("identified", pid=10))
    async with running(client, sessionmaker, settings, agents):
        await sweep(client, settings)
        await wait_until(lambda: listed_by_status(client, "stalled", 10))
        assert [r.status for r in await ledger(sessionmaker, 10)] == ["stalled"]
        assert [lock.agent_name for lock in await locks(sessionmaker)] == ["hygiene"]
        handle = client.get_workflow_handle(handoff_workflow_id(10))
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        # an agent that does not heartbeat learns nothing of the cancel and finishes late;
        # the ledger keeps the operator's decision
        gate.set()
        await wait_until(lambda: agents["hygiene"].work)
        await record_history(client, handoff_workflow_id(10), "handoff_stalled_cancelled", settings)
    assert (await handle.describe()).status is WorkflowExecutionStatus.CANCELED
    rows = await ledger(sessionmaker, 10)
    assert [(r.status, r.detail) for r in rows] == [("cancelled", "cancelled by an operator")]
    assert await locks(sessionmaker) == []


async def test_failed_handoff_releases_the_lease_and_can_be_run_again(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    settings = with_handoffs(worker_settings, agent_max_attempts=2)
    agents["hygiene"].fail_first = 2
    await add(agent_sessionmaker, *prospect("identified", pid=11))
    async with running(client, sessionmaker, settings, agents):
        await sweep(client, settings)
        await wait_closed(client, 11)
        await record_history(client, handoff_workflow_id(11), "handoff_failed", settings)
        [row] = await ledger(sessionmaker, 11)
        assert (row.status, row.attempt) == ("failed", 1)
        assert "failed on purpose" in (row.detail or "")
        assert await locks(sessionmaker) == []
        again = await sweep(client, settings)
        assert again.handoffs is not None and again.handoffs.pending == 0
    assert agents["hygiene"].work == {}


async def test_deferred_when_the_agent_is_paused(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    from db.models import AgentControl

    now = datetime.now(UTC)
    await add(
        agent_sessionmaker,
        *prospect("identified", pid=12),
        AgentControl(
            agent_name="hygiene",
            paused=True,
            paused_reason="maintenance",
            circuit_state="closed",
            updated_at=now,
        ),
    )
    async with running(client, sessionmaker, worker_settings, agents):
        summary = await sweep(client, worker_settings)
    assert summary.handoffs is not None
    assert (summary.handoffs.deferred, summary.handoffs.started) == (1, 0)
    assert await ledger(sessionmaker, 12) == []


async def test_sweep_larger_than_a_page_and_a_history_starts_everyone_once(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    settings = with_handoffs(worker_settings, page_size=5, max_children_per_run=7, start_batch=3)
    for pid in range(100, 123):
        await add(agent_sessionmaker, *prospect("needs_scoring", pid=pid))
    async with running(client, sessionmaker, settings, agents):
        summary = await sweep(client, settings)
        for pid in range(100, 123):
            await wait_closed(client, pid)
    sweep_summary = summary.handoffs
    assert sweep_summary is not None
    assert (sweep_summary.pending, sweep_summary.started) == (23, 23)
    assert sweep_summary.pages == 5
    assert sweep_summary.continued_as_new >= 2
    assert len(agents["hygiene"].work) == 23 and set(agents["hygiene"].work.values()) == {1}
