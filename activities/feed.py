"""The change feed's poll: one heartbeating activity that reads new state entries every
``poll_interval`` and returns as soon as it finds work to start (or after a quiet spell).

Polling inside one activity, rather than one activity per poll, keeps an idle feed at a few
history events a minute. The cursor is the time the feed has read through; each poll reads
``overlap`` behind it again, because entry times are the agents' clocks and their commits
land out of order. The ledger's unique key makes a re-read harmless.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.handoffs import HandoffActivities, PendingPage, Room
from db.queries.feed import find_state_entries, handoffs_since
from pipeline.handoffs import PendingHandoff, StartedPage

CHAIN_LIMIT = "chain_limit"
WAITS_FOR_AGENT = frozenset({"paused", "circuit_open"})


class FeedPollInput(BaseModel):
    cursor: datetime | None = None
    """Read through this time; ``None`` at the feed's first poll (it starts from now)."""
    unbegun: list[StartedPage] = []
    deferred_since: dict[str, datetime] = {}
    """Per agent, the oldest entry the feed deferred for it (paused, circuit open)."""
    rechecked_at: datetime | None = None


class FeedPoll(BaseModel):
    page: PendingPage
    cursor: datetime
    deferred_since: dict[str, datetime] = {}
    rechecked_at: datetime | None = None
    polls: int = 1
    oldest: datetime | None = None
    """The oldest entry among the page's runnable items: the feed's lag is from it."""


@dataclass(frozen=True)
class FeedRules:
    poll_interval: timedelta = timedelta(milliseconds=250)
    overlap: timedelta = timedelta(seconds=30)
    quiet_return: timedelta = timedelta(minutes=1)
    deferred_recheck: timedelta = timedelta(seconds=10)
    chain_cooldown: timedelta = timedelta(minutes=5)


@dataclass
class _Found:
    """One poll's reading: the items, what waits, and the bookkeeping that moves with it."""

    room: Room
    items: list[PendingHandoff] = field(default_factory=list)
    deferred: dict[str, str] = field(default_factory=dict)
    read_through: datetime | None = None

    @property
    def runnable(self) -> list[PendingHandoff]:
        return [p for p in self.items if p.id not in self.deferred]


def _now() -> datetime:
    return datetime.now(UTC)


class FeedActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        handoffs: HandoffActivities,
        rules: FeedRules,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._handoffs = handoffs
        self._rules = rules

    @activity.defn(name="poll_state_entries")
    async def poll_state_entries(self, input: FeedPollInput) -> FeedPoll:
        """Poll until a state entry can be handed off, the feed has no room, or it has been
        quiet for ``quiet_return``; the cursor and what it deferred move on each poll."""
        poll = FeedPoll(
            page=self._handoffs.page([], Room(input.unbegun, 0, 0, False), _now()),
            cursor=input.cursor or _now() - self._rules.overlap,
            deferred_since=dict(input.deferred_since),
            rechecked_at=input.rechecked_at,
            polls=0,
        )
        quiet_until = _now() + self._rules.quiet_return
        while True:
            now = _now()
            poll.polls += 1
            found = await self._poll_once(poll, now)
            poll.page = self._handoffs.page(found.items, found.room, now, deferred=found.deferred)
            if found.room.saturated:
                return poll
            if found.read_through is not None:
                poll.cursor = max(poll.cursor, found.read_through)
            if runnable := found.runnable:
                poll.oldest = min(p.state_entered_at for p in runnable)
                return poll
            if now >= quiet_until or activity.is_worker_shutdown():
                return poll  # a draining worker's poll ends now: another worker polls on
            activity.heartbeat(poll.cursor.isoformat())
            await asyncio.sleep(self._rules.poll_interval.total_seconds())

    async def _poll_once(self, poll: FeedPoll, now: datetime) -> _Found:
        async with self._sessionmaker() as session:
            room = await self._handoffs.room(session, poll.page.unbegun, now)
            found = _Found(room=room)
            if room.saturated:
                return found
            # started by the feed and not begun yet: a re-read must not start them again
            starting = {pid for page in room.unbegun for pid in page.prospect_ids}
            since = poll.cursor - self._rules.overlap
            entries = await find_state_entries(session, since, room.page_size, exclude=starting)
            found.items = entries.items
            found.read_through = entries.items[-1].state_entered_at if entries.full else now
            caught_up = await self._recheck_deferred(session, poll, now, room.page_size, starting)
            known = {p.id for p in found.items}
            found.items += [p for p in caught_up if p.id not in known]
            found.deferred = await self._handoffs.deferrals(session, found.items, now)
            found.deferred |= await self._chain_limited(session, found.items, now)
        _note_deferred(poll, found)
        return found

    async def _recheck_deferred(
        self,
        session: AsyncSession,
        poll: FeedPoll,
        now: datetime,
        limit: int,
        starting: set[int],
    ) -> list[PendingHandoff]:
        """Every ``deferred_recheck``, the entries deferred for each agent since the oldest
        one, so they go once their agent can take them (never dropped)."""
        due = poll.rechecked_at is None or now - poll.rechecked_at >= self._rules.deferred_recheck
        if not poll.deferred_since or not due:
            return []
        poll.rechecked_at = now
        items: list[PendingHandoff] = []
        for agent, since in sorted(poll.deferred_since.items()):
            entries = await find_state_entries(
                session, since, limit, agents={agent}, exclude=starting
            )
            items += entries.items
            if not entries.full:
                del poll.deferred_since[agent]  # put back below if some still wait
        return items

    async def _chain_limited(
        self, session: AsyncSession, items: list[PendingHandoff], now: datetime
    ) -> dict[str, str]:
        """Prospects handed off ``max_chain`` times within ``chain_cooldown``: left to the
        sweep, like a chain that reached its limit."""
        if not items or self._rules.chain_cooldown <= timedelta(0):
            return {}
        limit = self._handoffs.policy.max_chain
        recent = await handoffs_since(
            session, {p.prospect_id for p in items}, now - self._rules.chain_cooldown
        )
        return {p.id: CHAIN_LIMIT for p in items if recent.get(p.prospect_id, 0) >= limit}


def _note_deferred(poll: FeedPoll, found: _Found) -> None:
    """Remember, per agent, the oldest entry deferred for it."""
    for pending in found.items:
        if found.deferred.get(pending.id) not in WAITS_FOR_AGENT:
            continue
        agent, entered = pending.to_agent, pending.state_entered_at
        poll.deferred_since[agent] = min(poll.deferred_since.get(agent, entered), entered)
