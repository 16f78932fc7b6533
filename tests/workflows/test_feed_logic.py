"""The feed's and the sweep's orchestration alone: stub activities and a stub handoff
workflow registered under the real names, on the real dev server (samples-python's way).
No database: what is asserted is what the workflows decide."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from activities.feed import FeedPoll, FeedPollInput
from activities.handoffs import FindPendingInput, HandoffActivities, PendingPage, Room
from activities.upkeep import AfterCycle, AfterCycleInput
from pipeline.handoffs import HandoffPolicy, PendingHandoff, feed_workflow_id
from tests.helpers.handoffs import wait_until
from workflows.cycle import CycleWorkflow
from workflows.feed import FeedWorkflow
from workflows.handoff_types import HandoffInput
from workflows.starters import ensure_feed, nudge_feed
from workflows.types import CycleInput, CycleSummary, FeedState

NOW = datetime.now(UTC)
PAGES = HandoffActivities(None, HandoffPolicy())  # type: ignore[arg-type]


def entry(pid: int, ago: timedelta = timedelta(0)) -> PendingHandoff:
    return PendingHandoff(
        prospect_id=pid, from_state="identified", state_entered_at=NOW - ago, to_agent="hygiene"
    )


def page(*items: PendingHandoff, saturated: bool = False, overlap: timedelta | None = None):
    built = PAGES.page(list(items), Room([], 0, 2000, saturated), NOW)
    return built.model_copy(update={"feed_overlap": overlap})


@workflow.defn(name="handoff", sandboxed=False)
class StubHandoff:
    """Stands in for the handoff workflow: it ends at once."""

    @workflow.run
    async def run(self, input: HandoffInput) -> None:
        return None


class StubPolls:
    """Answers the feed's polls from a script of pages, then quiet pages forever."""

    def __init__(self, *pages: PendingPage) -> None:
        self.script = list(pages)
        self.inputs: list[FeedPollInput] = []

    @activity.defn(name="poll_state_entries")
    async def poll(self, input: FeedPollInput) -> FeedPoll:
        self.inputs.append(input)
        found = self.script.pop(0) if self.script else page()
        oldest = found.items[0].state_entered_at if found.items else None
        return FeedPoll(page=found, cursor=NOW, polls=1, oldest=oldest)


@asynccontextmanager
async def feed_with(client: Client, polls: StubPolls) -> AsyncIterator[tuple[str, object]]:
    queue = f"feed-logic-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=[FeedWorkflow, StubHandoff], activities=[polls.poll]
    ):
        handle = await ensure_feed(client, queue)
        try:
            yield queue, handle
        finally:
            await handle.terminate("test over")


async def state_of(handle) -> FeedState:  # type: ignore[no-untyped-def]
    return await handle.query(FeedWorkflow.state)


async def test_the_feed_starts_each_entry_of_a_page_and_counts_a_second_start_as_running(
    client: Client,
) -> None:
    polls = StubPolls(page(entry(1), entry(2)), page(entry(2)))
    async with feed_with(client, polls) as (_, handle):
        await wait_until(lambda: _polled(handle, 3))
        state = await state_of(handle)
    # entry 2 again, before its (stub) handoff ended, or after: never an error
    assert state.handoffs.started + state.handoffs.already_running == 3
    assert state.handoffs.started >= 2
    assert state.cursor == NOW


async def test_a_nudge_ends_the_feeds_wait_for_room(client: Client) -> None:
    """With no room the feed waits ``saturated_wait`` (5 s) before it polls again; a nudge
    makes it poll at once."""
    polls = StubPolls(page(saturated=True))
    async with feed_with(client, polls) as (_, handle):
        await wait_until(lambda: _polled(handle, 1))
        await handle.signal(FeedWorkflow.nudge)
        await wait_until(lambda: len(polls.inputs) >= 2, within=3)
        state = await state_of(handle)
    assert state.nudges == 1


async def test_the_sweep_counts_as_caught_only_entries_older_than_the_feeds_window(
    client: Client,
) -> None:
    window = timedelta(seconds=30)
    found = page(entry(1, timedelta(minutes=5)), entry(2, timedelta(seconds=5)), overlap=window)

    @activity.defn(name="find_pending_handoffs")
    async def find(input: FindPendingInput) -> PendingPage:
        return found

    @activity.defn(name="after_cycle")
    async def after(input: AfterCycleInput) -> AfterCycle:
        seen.append(input)
        return AfterCycle.model_validate(
            {"watchdog": "ok", "stalled": 0, "delivery": {"sent": 0, "failed": 0}}
        )

    seen: list[AfterCycleInput] = []
    queue = f"sweep-logic-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=[CycleWorkflow, StubHandoff], activities=[find, after]
    ):
        summary: CycleSummary = await client.execute_workflow(
            CycleWorkflow.run, CycleInput(mode="handoffs"), id=queue, task_queue=queue
        )
    assert summary.handoffs is not None
    assert (summary.handoffs.started, summary.handoffs.caught_by_sweep) == (2, 1)
    assert [i.caught_by_sweep for i in seen] == [1]


async def _polled(handle, n: int) -> bool:  # type: ignore[no-untyped-def]
    return (await state_of(handle)).polls >= n


async def test_a_nudge_that_starts_the_feed_is_counted(client: Client) -> None:
    """Signal-with-start hands the nudge to the feed before its ``run`` begins."""
    queue = f"feed-logic-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[FeedWorkflow, StubHandoff],
        activities=[StubPolls().poll],
    ):
        await nudge_feed(client, queue)
        handle = client.get_workflow_handle(feed_workflow_id(queue))
        try:
            await wait_until(lambda: _polled(handle, 1))
            state = await state_of(handle)
        finally:
            await handle.terminate("test over")
    assert state.nudges == 1
