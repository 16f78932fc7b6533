"""The change feed benchmark's side of the database: a plain writer of prospects, as a
program that knows nothing of the orchestrator would write them (no nudge, no sweep), and the
ledger a system that has been running would have for the table the benchmark loaded.

The writer notes ``time.time()`` right after each ``COMMIT`` returns: before that no reader
can see the row, so it is where the feed's latency starts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, case, cast, func, insert, literal, or_, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.models import Handoff, Prospect
from db.queries.handoffs import not_yet_handed_off, trigger_clause
from pipeline.handoffs import HandoffStatus
from pipeline.triggers import HANDOFF_TRIGGERS

BATCH = 1000
"""Rows per INSERT statement of a big commit."""


def _row(pid: int, status: str, tier: str | None, at: datetime) -> dict[str, Any]:
    return {
        "id": pid,
        "company_name": f"New company {pid}",
        "domain": f"n{pid}.example",
        "status": status,
        "tier": tier,
        "score": None,
        "status_changed_at": at,
        "created_at": at,
        "updated_at": at,
        "deleted_at": None,
    }


@dataclass
class PlainWriter:
    """Inserts prospects on a connection of its own and remembers when each one committed."""

    engine: AsyncEngine
    committed: dict[int, float] = field(default_factory=dict)

    async def commit(self, pids: Sequence[int], status: str, tier: str | None = None) -> float:
        """One transaction for ``pids`` (in statements of ``BATCH``); the time it committed."""
        now = datetime.now(UTC)  # the agent's clock: its entry time
        async with self.engine.begin() as conn:
            for lo in range(0, len(pids), BATCH):
                rows = [_row(pid, status, tier, now) for pid in pids[lo : lo + BATCH]]
                await conn.execute(insert(Prospect), rows)
        at = time.time()
        self.committed.update(dict.fromkeys(pids, at))
        return at

    async def steady(
        self, pids: Sequence[int], rate: float, status: str, tier: str | None = None
    ) -> None:
        """One prospect per commit on a fixed timetable of ``rate`` a second: a slow commit
        does not push the ones after it back."""
        began = time.perf_counter()
        for i, pid in enumerate(pids):
            await _sleep_until(began + i / rate)
            await self.commit([pid], status, tier)

    async def background(
        self, first_pid: int, rate: float, stop: asyncio.Event, tick: float = 0.1
    ) -> list[int]:
        """Every ``tick``, one commit of as many prospects as ``rate`` owes by then, until
        ``stop``; the ids written."""
        began, written = time.perf_counter(), []
        while not stop.is_set():
            owed = int((time.perf_counter() - began) * rate) - len(written)
            if owed > 0:
                pids = list(range(first_pid + len(written), first_pid + len(written) + owed))
                await self.commit(pids, "ready_for_outreach", "A1")
                written += pids
            await asyncio.sleep(tick)
        return written


async def _sleep_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


async def mark_loaded_handed_off(sm: async_sessionmaker[AsyncSession]) -> int:
    """Give every pending prospect of the loaded table a finished ledger row, as a system
    that has been running would have: the feed's and the sweep's queries then meet a full
    ledger, and neither path spends the figure on the loaded backlog. One INSERT ... SELECT."""
    agent = case(
        {state: t.next_agent for state, t in HANDOFF_TRIGGERS.items()}, value=Prospect.status
    )
    pending = select(
        literal("bench-loaded-") + cast(Prospect.id, String) + literal("-") + Prospect.status,
        Prospect.id,
        Prospect.status,
        Prospect.status_changed_at,
        agent,
        literal(HandoffStatus.COMPLETED.value),
        literal(1),
        Prospect.status_changed_at,
        Prospect.status_changed_at,
        Prospect.status_changed_at,
    ).where(
        Prospect.deleted_at.is_(None),
        or_(*(trigger_clause(t) for t in HANDOFF_TRIGGERS.values())),
        not_yet_handed_off(),
    )
    columns = ["id", "prospect_id", "from_state", "state_entered_at", "to_agent", "status"]
    columns += ["attempt", "created_at", "updated_at", "finished_at"]
    async with sm() as session:
        await session.execute(insert(Handoff).from_select(columns, pending))
        await session.commit()
        marked = int(await session.scalar(select(func.count()).select_from(Handoff)) or 0)
    async with sm() as session:  # the planner should know the ledger's new size
        await session.execute(text("ANALYZE"))
        await session.commit()
    return marked


async def count_handed_off(sm: async_sessionmaker[AsyncSession], lo: int, hi: int) -> int:
    """Completed ledger rows of the prospects ``lo..hi``."""
    async with sm() as session:
        query = select(func.count()).where(
            Handoff.status == HandoffStatus.COMPLETED.value,
            Handoff.prospect_id.between(lo, hi),
        )
        return int(await session.scalar(query) or 0)


async def ledger_rows(sm: async_sessionmaker[AsyncSession], lo: int, hi: int) -> int:
    """Ledger rows of any status for the prospects ``lo..hi``: exactly-once means one each."""
    async with sm() as session:
        query = select(func.count()).where(Handoff.prospect_id.between(lo, hi))
        return int(await session.scalar(query) or 0)


async def ledger_times(sm: async_sessionmaker[AsyncSession], lo: int, hi: int) -> dict[int, float]:
    """When each of the prospects ``lo..hi`` got its ledger row (its handoff began), as
    ``time.time()`` seconds: where the feed's part of the latency ends and the handoff's
    starts."""
    async with sm() as session:
        rows = await session.execute(
            select(Handoff.prospect_id, Handoff.created_at).where(
                Handoff.prospect_id.between(lo, hi)
            )
        )
        return {pid: _aware(at).timestamp() for pid, at in rows.all()}


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # SQLite's are naive UTC


async def wait_for(check: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """Poll ``check`` until it holds; the moment it did (``perf_counter``)."""
    deadline = time.perf_counter() + within
    while not await check():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what}: not done after {within:.0f} s")
        await asyncio.sleep(0.05)
    return time.perf_counter()
