"""The change feed on a real Temporal server with stand-in agents: a prospect written by a
program that knows nothing of the orchestrator is handed off without a sweep, entries that
commit out of order or late are each handed off once, and what waits is never dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from temporalio.client import Client, WorkflowHandle

from agent_sdk import AgentRuntime, DatabaseRecorder, feed_nudge, run_every
from db.models import AgentControl
from orchestrator.settings import FeedSettings, Settings
from pipeline.handoffs import feed_workflow_id
from tests.helpers.agents import FakeAgent, prospect_status
from tests.helpers.factories import add, prospect
from tests.helpers.handoffs import (
    ledger,
    record_history,
    running,
    sweep,
    wait_until,
    with_handoffs,
)
from workflows.feed import FeedWorkflow
from workflows.starters import ensure_feed, nudge_feed
from workflows.types import FeedState

QUICK = FeedSettings(
    poll_interval=timedelta(milliseconds=50),
    quiet_return=timedelta(seconds=2),
    deferred_recheck=timedelta(milliseconds=200),
)


def with_feed(settings: Settings, feed: FeedSettings = QUICK) -> Settings:
    return settings.model_copy(update={"feed": feed})


@asynccontextmanager
async def feeding(
    client: Client, sessionmaker, settings: Settings, agents: dict[str, FakeAgent]
) -> AsyncIterator[WorkflowHandle]:
    """The orchestrator's and the agents' workers with the feed running; the feed is
    terminated at the end (its id belongs to this test's task queue)."""
    async with running(client, sessionmaker, settings, agents):
        handle = await ensure_feed(client, settings.temporal.task_queue)
        try:
            yield handle
        finally:
            await handle.terminate("test over")


async def feed_state(handle: WorkflowHandle) -> FeedState:
    return await handle.query(FeedWorkflow.state)


async def test_a_prospect_written_outside_the_orchestrator_is_handed_off_without_a_sweep(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings, agents
) -> None:
    settings = with_feed(worker_settings)
    async with feeding(client, sessionmaker, settings, agents) as feed:
        await wait_until(lambda: _has_polled(feed))
        await add(agent_sessionmaker, *prospect("identified", pid=1, entered=datetime.now(UTC)))
        await wait_until(lambda: _status_is(sessionmaker, 1, "in_sequence"))
        state = await feed_state(feed)
        await record_history(client, feed.id, "feed", settings)
    rows = await ledger(sessionmaker, 1)
    assert [(r.from_state, r.to_agent, r.status) for r in rows] == [
        ("identified", "hygiene", "completed"),
        ("scored", "researcher", "completed"),
        ("research_complete", "outreach", "completed"),
    ]
    assert state.handoffs.started == 1  # the first hop; the chain did the rest
    assert state.cursor is not None and state.cursor >= rows[0].state_entered_at
    assert {name: sum(a.work.values()) for name, a in agents.items()} == {
        "hygiene": 1,
        "researcher": 1,
        "outreach": 1,
    }


async def test_entries_committed_out_of_order_and_back_dated_are_each_handed_off_once(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings, agents
) -> None:
    """Inside the overlap window the feed finds an entry that commits after a newer one; an
    entry older than the window is the sweep's, and the sweep counts it as caught."""
    settings = with_feed(worker_settings)
    async with feeding(client, sessionmaker, settings, agents) as feed:
        await wait_until(lambda: _has_polled(feed))
        now = datetime.now(UTC)
        await add(agent_sessionmaker, *prospect("identified", pid=1, entered=now))
        await wait_until(lambda: _status_is(sessionmaker, 1, "in_sequence"))
        # committed after pid 1 was handed off, but entered before it: behind the cursor
        late = [
            ("identified", 2, timedelta(seconds=20)),
            ("needs_scoring", 3, timedelta(seconds=5)),
        ]
        # and a clock skewed past the overlap: the feed cannot see it
        late.append(("identified", 4, timedelta(minutes=10)))
        for status, pid, ago in late:
            await add(agent_sessionmaker, *prospect(status, pid=pid, entered=now - ago))
        await wait_until(lambda: _status_is(sessionmaker, 2, "in_sequence"))
        await wait_until(lambda: _status_is(sessionmaker, 3, "in_sequence"))
        assert await prospect_status(sessionmaker, 4) == "identified"
        summary = await sweep(client, settings)
        await wait_until(lambda: _status_is(sessionmaker, 4, "in_sequence"))
        polls = (await feed_state(feed)).polls
        await nudge_feed(client, settings.temporal.task_queue)  # a re-read changes nothing
        await wait_until(lambda: _polled_since(feed, polls + 1))
        state = await feed_state(feed)
    assert summary.handoffs is not None
    assert (summary.handoffs.started, summary.handoffs.caught_by_sweep) == (1, 1)
    assert state.handoffs.started == 3
    for agent in agents.values():
        assert set(agent.work.values()) == {1}, (agent.name, agent.work)
    assert sorted(pid for pid, _ in agents["hygiene"].work) == [1, 2, 3, 4]


async def test_entries_for_a_paused_agent_wait_and_go_once_it_is_resumed(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings, agents
) -> None:
    settings = with_feed(worker_settings)
    await add(
        sessionmaker,
        AgentControl(agent_name="hygiene", paused=True, updated_at=datetime.now(UTC)),
    )
    async with feeding(client, sessionmaker, settings, agents) as feed:
        await wait_until(lambda: _has_polled(feed))
        await add(agent_sessionmaker, *prospect("identified", pid=1, entered=datetime.now(UTC)))
        await wait_until(lambda: _deferred(feed))
        assert agents["hygiene"].calls == []
        async with sessionmaker() as session:
            control = await session.get(AgentControl, "hygiene")
            assert control is not None
            control.paused = False
            await session.commit()
        await wait_until(lambda: _status_is(sessionmaker, 1, "in_sequence"))
        # the feed forgets the agent's backlog once a recheck finds nothing left of it
        await wait_until(lambda: _deferred_cleared(feed))
    assert [(pid, s) for pid, s in agents["hygiene"].work] == [(1, "identified")]


async def test_an_idle_feed_polls_many_times_per_history_event(
    client: Client, sessionmaker, worker_settings: Settings, agents
) -> None:
    """Polling happens inside one activity: the server sees a poll only when it finds work
    or its quiet spell ends."""
    feed_settings = QUICK.model_copy(
        update={"poll_interval": timedelta(milliseconds=20), "quiet_return": timedelta(seconds=1)}
    )
    settings = with_feed(worker_settings, feed_settings)
    async with feeding(client, sessionmaker, settings, agents) as feed:
        await wait_until(lambda: _polled_since(feed, 100))
        state = await feed_state(feed)
        events = len([e async for e in feed.fetch_history_events()])
    assert state.handoffs.started == 0
    assert events * 3 < state.polls, (events, state.polls)


async def test_the_feed_id_belongs_to_its_task_queue(worker_settings: Settings) -> None:
    queue = worker_settings.temporal.task_queue
    assert feed_workflow_id(queue) == f"feed-{queue}"
    assert feed_workflow_id("orchestrator") == "feed-orchestrator"


async def _has_polled(feed: WorkflowHandle) -> bool:
    return (await feed_state(feed)).polls > 0


async def _polled_since(feed: WorkflowHandle, polls: int) -> bool:
    return (await feed_state(feed)).polls >= polls


async def _deferred(feed: WorkflowHandle) -> bool:
    return "hygiene" in (await feed_state(feed)).deferred_since


async def _status_is(sessionmaker, pid: int, status: str) -> bool:
    return await prospect_status(sessionmaker, pid) == status


async def _deferred_cleared(feed: WorkflowHandle) -> bool:
    return (await feed_state(feed)).deferred_since == {}


async def test_the_feed_continues_as_new_after_its_share_of_children_and_keeps_its_counts(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings, agents
) -> None:
    settings = with_handoffs(with_feed(worker_settings), max_children_per_run=3, start_batch=2)
    async with feeding(client, sessionmaker, settings, agents) as feed:
        now = datetime.now(UTC)
        for pid in range(1, 6):
            await add(agent_sessionmaker, *prospect("ready_for_outreach", pid=pid, entered=now))
        await wait_until(lambda: _all_in_sequence(sessionmaker, range(1, 6)))
        await wait_until(lambda: _started(feed, 5))
        state = await feed_state(feed)
    assert state.runs >= 2
    assert state.handoffs.started == 5
    assert {pid for pid, _ in agents["outreach"].work} == {1, 2, 3, 4, 5}


async def test_a_scheduled_agent_nudges_the_feed_after_a_run_that_wrote_prospects(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings, agents
) -> None:
    settings = with_feed(worker_settings)
    stop = asyncio.Event()
    written: list[int] = []

    async def prospect_once() -> int:
        if written:
            stop.set()
            return 0
        written.append(1)
        await add(agent_sessionmaker, *prospect("identified", pid=1, entered=datetime.now(UTC)))
        return 1

    prospector = AgentRuntime("prospector", DatabaseRecorder(agent_sessionmaker))
    nudge = feed_nudge(client, settings.temporal.task_queue)
    async with feeding(client, sessionmaker, settings, agents) as feed:
        await run_every(prospector, prospect_once, timedelta(milliseconds=100), stop, nudge=nudge)
        await wait_until(lambda: _status_is(sessionmaker, 1, "in_sequence"))
        await wait_until(lambda: _nudged(feed))
        state = await feed_state(feed)
    assert state.nudges == 1  # the second run wrote nothing
    assert state.handoffs.started == 1


async def _started(feed: WorkflowHandle, n: int) -> bool:
    return (await feed_state(feed)).handoffs.started >= n


async def _all_in_sequence(sessionmaker, pids: range) -> bool:
    return all([await _status_is(sessionmaker, pid, "in_sequence") for pid in pids])


async def _nudged(feed: WorkflowHandle) -> bool:
    return (await feed_state(feed)).nudges > 0
