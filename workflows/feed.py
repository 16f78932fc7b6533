"""The change feed: one long-running workflow per task queue that hands a prospect off as soon
as it enters a trigger state, which is what the spec's ``trigger: immediate`` promises.

It polls through one heartbeating activity that returns only when it finds work (or after a
quiet minute), starts the same handoff children as the sweep under the same backpressure,
and continues as new before its history grows large. The scheduled sweep stays behind it as
reconciliation and counts what it had to hand off that the feed had not.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.feed import FeedActivities, FeedPoll, FeedPollInput
    from pipeline.handoffs import StartedPage
    from pipeline.metrics import FEED_POLLS
    from workflows.sweep import start_page
    from workflows.types import FeedInput, FeedState

POLL_TIMEOUT = timedelta(minutes=10)
"""Longest one poll may run; it returns after the quiet spell (a minute) well before."""
POLL_HEARTBEAT = timedelta(seconds=30)
POLL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
"""Unbounded: a database outage pauses the feed, it never ends it."""
ERROR_WAIT = timedelta(seconds=10)
MAX_HISTORY = 10_000
"""Events before the feed continues as new, well under Temporal's limits."""


@workflow.defn(name="orchestrator-feed")
class FeedWorkflow:
    @workflow.init
    def __init__(self, input: FeedInput) -> None:
        """The state is set up here, not in ``run``: a nudge sent as the feed starts is
        handled before ``run`` begins, and must find the state it counts in."""
        self._state = input.state or FeedState(started_at=workflow.now())
        self._nudged = False

    @workflow.run
    async def run(self, input: FeedInput) -> None:
        started = 0
        while True:
            poll = await self._poll()
            if poll is not None:
                started += await self._hand_off(poll)
            self._describe()
            if self._should_continue(started, poll):
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._state.runs += 1
                workflow.continue_as_new(FeedInput(state=self._state))

    @workflow.query(name="state")
    def state(self) -> FeedState:
        return self._state

    @workflow.signal(name="nudge")
    def nudge(self) -> None:
        """Something changed (an agent's run, an ingested run, an operator's request): stop
        waiting (for room, or after an error) and poll now."""
        self._state.nudges += 1
        self._nudged = True

    async def _poll(self) -> FeedPoll | None:
        state = self._state
        try:
            poll = await workflow.execute_activity_method(
                FeedActivities.poll_state_entries,
                FeedPollInput(
                    cursor=state.cursor,
                    unbegun=state.unbegun,
                    deferred_since=state.deferred_since,
                    rechecked_at=state.rechecked_at,
                ),
                start_to_close_timeout=POLL_TIMEOUT,
                heartbeat_timeout=POLL_HEARTBEAT,
                retry_policy=POLL_RETRY,
                summary="poll for new state entries",
            )
        except ActivityError as err:
            workflow.logger.warning("feed poll failed, polling again shortly: %s", err.cause)
            await self._wait(ERROR_WAIT)
            return None
        state.cursor, state.deferred_since = poll.cursor, poll.deferred_since
        state.rechecked_at, state.unbegun = poll.rechecked_at, poll.page.unbegun
        state.polls += poll.polls
        _record_poll(poll)
        return poll

    async def _hand_off(self, poll: FeedPoll) -> int:
        """Start the poll's runnable entries; with no room, wait for some first."""
        page, state = poll.page, self._state
        if page.saturated:
            await self._wait(page.saturated_wait)
            return 0
        state.lag_seconds = 0.0
        if poll.oldest is not None and page.found_at is not None:
            state.lag_seconds = max((page.found_at - poll.oldest).total_seconds(), 0.0)
            state.last_found_at = page.found_at
        if not page.items:
            return 0
        started = await start_page(page, state.handoffs, by="feed")
        if started and page.found_at is not None:
            ids = sorted(p.prospect_id for p in started)
            page_started = StartedPage(
                after_id=ids[0] - 1,
                through_id=ids[-1],
                started=len(started),
                since=page.found_at,
                prospect_ids=ids,
            )
            state.unbegun.append(page_started)
        return len(started)

    async def _wait(self, how_long: timedelta) -> None:
        self._nudged = False
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._nudged, timeout=how_long, timeout_summary="feed waits"
            )

    def _should_continue(self, started: int, poll: FeedPoll | None) -> bool:
        info = workflow.info()
        limit = poll.page.max_children_per_run if poll is not None else None
        return (
            (limit is not None and started >= limit)
            or info.is_continue_as_new_suggested()
            or info.get_current_history_length() > MAX_HISTORY
        )

    def _describe(self) -> None:
        """What the Web UI shows as the feed's current details."""
        state = self._state
        cursor = state.cursor.isoformat(timespec="seconds") if state.cursor else "not yet"
        h = state.handoffs
        workflow.set_current_details(
            f"read through {cursor}; {state.polls} polls, {h.started} handoffs started, "
            f"{h.already_running} already running, {h.deferred} deferred; "
            f"lag {state.lag_seconds:.1f} s"
        )


def _record_poll(poll: FeedPoll) -> None:
    polls = workflow.metric_meter().create_counter(FEED_POLLS, "Reads of prospects by the feed")
    polls.add(poll.polls)
