"""The handoff activities: find pending handoffs under the in-flight bound, claim one and
its lease, mark it, close it (the ledger commands live in ``db.commands.handoffs``), with the
log lines and metrics each step owes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.metrics import count_outcome, record_trigger_latency
from db.commands.alerts import NotifyPolicy
from db.commands.controls import deferrals
from db.commands.handoffs import (
    BeginInput,
    BeginResult,
    FinishInput,
    FinishResult,
    MarkInput,
    begin_handoff,
    finish_handoff,
    set_status,
)
from db.commands.presence import flag_no_worker
from db.queries.handoffs import (
    PendingWindow,
    count_in_flight,
    find_pending_page,
    still_unbegun,
)
from orchestrator.logs import log_context
from orchestrator.task_queues import TaskQueuePresence
from pipeline.contract import agent_task_queue
from pipeline.handoffs import (
    HandoffPolicy,
    PendingHandoff,
    StartedPage,
)
from pipeline.presence import no_worker_detail


class FindPendingInput(BaseModel):
    after_id: int | None = None
    unbegun: list[StartedPage] = []
    """Pages this sweep started whose handoffs had not all begun when last looked."""


class PendingPage(BaseModel):
    items: list[PendingHandoff]
    next_cursor: int | None
    deferred: dict[str, str] = {}
    """Handoff id -> why it waits (its agent is paused, or its circuit is open)."""
    policy: HandoffPolicy
    page_size: int
    max_children_per_run: int
    start_batch: int
    saturated: bool = False
    """Too many handoffs open to start a batch: the page is empty and the cursor unmoved."""
    in_flight: int = 0
    max_in_flight: int = 0
    saturated_wait: timedelta = timedelta(seconds=5)
    unbegun: list[StartedPage] = []
    """The input's pages still not all begun, to be passed again with the next call."""
    found_at: datetime | None = None
    feed_overlap: timedelta | None = None
    """The change feed's overlap window when the feed runs: an entry older than it when the
    sweep starts its handoff is one the feed missed."""


@dataclass(frozen=True)
class Room:
    """Room under ``max_in_flight`` for new handoffs, measured by one finder call."""

    unbegun: list[StartedPage]
    in_flight: int
    page_size: int
    saturated: bool


class HandoffActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        policy: HandoffPolicy,
        *,
        page_size: int = 2000,
        max_children_per_run: int = 1900,
        start_batch: int = 100,
        max_in_flight: int = 2000,
        saturated_wait: timedelta = timedelta(seconds=5),
        breaker_cooldown: timedelta = timedelta(minutes=10),
        feed_overlap: timedelta | None = None,
        presence: TaskQueuePresence | None = None,
        notify: NotifyPolicy | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._policy = policy
        self._page = (page_size, max_children_per_run, start_batch)
        self._max_in_flight, self._saturated_wait = max_in_flight, saturated_wait
        self._cooldown = breaker_cooldown
        self._feed_overlap = feed_overlap
        self._presence, self._notify = presence, notify or NotifyPolicy()
        self._flagged: dict[str, datetime] = {}
        """When this process last raised each agent's ``agent_no_worker`` alert."""

    @property
    def policy(self) -> HandoffPolicy:
        return self._policy

    @activity.defn(name="find_pending_handoffs")
    async def find_pending_handoffs(self, input: FindPendingInput) -> PendingPage:
        """The next page, no larger than the room left under ``max_in_flight``: open ledger
        rows plus the sweep's own handoffs not begun yet. With less room than a start batch
        (or half the limit, if smaller) it finds nothing: tiny pages cost a round trip each."""
        now = datetime.now(UTC)
        async with self._sessionmaker() as session:
            room = await self.room(session, input.unbegun, now)
            found = PendingWindow(items=[], next_cursor=input.after_id)
            if not room.saturated:
                found = await find_pending_page(session, input.after_id, room.page_size)
            deferred = await self.deferrals(session, found.items, now)
        return self.page(found.items, room, now, next_cursor=found.next_cursor, deferred=deferred)

    async def room(self, session: AsyncSession, unbegun: list[StartedPage], now: datetime) -> Room:
        """How many handoffs may start now (a page never holds more children than one run
        may start), and the pages of ``unbegun`` still not all begun."""
        page_size, max_children, batch = self._page
        # not begun first: a child beginning in between is counted twice, never missed
        kept, waiting = await still_unbegun(session, unbegun, now - self._policy.lease_ttl)
        in_flight = waiting + await count_in_flight(session, now - self._policy.lease_ttl)
        left = self._max_in_flight - in_flight
        return Room(
            unbegun=kept,
            in_flight=in_flight,
            page_size=max(min(page_size, max_children, left), 0),
            saturated=left < min(batch, max(self._max_in_flight // 2, 1)),
        )

    async def deferrals(
        self, session: AsyncSession, items: list[PendingHandoff], now: datetime
    ) -> dict[str, str]:
        """Which of ``items`` wait for their agent (paused, circuit open), and why."""
        return await deferrals(session, items, now, self._cooldown) if items else {}

    def page(
        self,
        items: list[PendingHandoff],
        room: Room,
        now: datetime,
        *,
        next_cursor: int | None = None,
        deferred: dict[str, str] | None = None,
    ) -> PendingPage:
        """What a workflow needs to start ``items``: the policy, the limits, the room."""
        _, max_children, batch = self._page
        return PendingPage(
            items=items,
            next_cursor=next_cursor,
            deferred=deferred or {},
            policy=self._policy,
            page_size=room.page_size,
            max_children_per_run=max_children,
            start_batch=batch,
            saturated=room.saturated,
            in_flight=room.in_flight,
            max_in_flight=self._max_in_flight,
            saturated_wait=self._saturated_wait,
            unbegun=room.unbegun,
            found_at=now,
            feed_overlap=self._feed_overlap,
        )

    @activity.defn(name="begin_handoff")
    async def begin_handoff(self, input: BeginInput) -> BeginResult:
        pending = input.pending
        with log_context(prospect_id=pending.prospect_id, agent=pending.to_agent):
            no_worker = await self._no_worker(pending.to_agent)
            async with self._sessionmaker() as session:
                begun = await begin_handoff(session, input, no_worker)
            _log_begun(pending, begun)
            if begun.leased_at is not None:
                record_trigger_latency(pending, begun.leased_at)
            if begun.no_worker:
                await self._flag(pending.to_agent)
            return begun

    async def _no_worker(self, agent: str) -> str | None:
        """Why nobody will take this handoff (no worker polls the agent's queue), from the
        per-process cache; ``None`` when one does, for HTTP agents, or when it cannot be
        told."""
        if self._presence is None or self._policy.transport(agent) != "temporal":
            return None
        queue = agent_task_queue(agent)
        pollers = await self._presence.pollers(queue, stale_ok=True)
        return no_worker_detail(queue) if pollers.served is False else None

    async def _flag(self, agent: str) -> None:
        """The agent's one ``agent_no_worker`` alert, raised at most once per cache period
        by this process (a backlog to an absent agent is one alert, not a write each)."""
        now = datetime.now(UTC)
        ttl = timedelta(seconds=self._presence.cache_seconds if self._presence else 0)
        last = self._flagged.get(agent)
        if last is not None and now - last < ttl:
            return
        self._flagged[agent] = now
        queue = agent_task_queue(agent)
        activity.logger.warning("handoffs to %s wait: %s", agent, no_worker_detail(queue))
        async with self._sessionmaker() as session:
            await flag_no_worker(session, agent, queue, now, self._notify)

    @activity.defn(name="mark_handoff")
    async def mark_handoff(self, input: MarkInput) -> None:
        async with self._sessionmaker() as session:
            await set_status(session, input.handoff_id, input.status, input.detail)
            await session.commit()

    @activity.defn(name="finish_handoff")
    async def finish_handoff(self, input: FinishInput) -> FinishResult:
        pending = input.pending
        with log_context(prospect_id=pending.prospect_id, agent=pending.to_agent):
            async with self._sessionmaker() as session:
                finished = await finish_handoff(session, input)
            _log_finished(input)
            if finished.closed:
                count_outcome(pending, input.status)
            return finished


def _log_begun(pending: PendingHandoff, begun: BeginResult) -> None:
    if begun.outcome == "leased":
        what = f"triggering {pending.to_agent} (attempt {begun.attempt})"
    elif begun.outcome == "blocked":
        what = f"blocked: record lease held by {begun.holder}"
    else:
        what = f"not run: {begun.reason}"
    activity.logger.info("handoff %s from %s: %s", pending.id, pending.from_state, what)


def _log_finished(input: FinishInput) -> None:
    detail = f" ({input.detail})" if input.detail else ""
    activity.logger.info(
        "handoff %s from %s: %s%s",
        input.pending.id,
        input.pending.from_state,
        input.status.value,
        detail,
    )
