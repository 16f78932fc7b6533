"""Housekeeping: one bounded pass of retention deletes per call, heartbeating per batch
(``db.commands.retention``). The cycle calls again until no table is left, so one activity
never runs long and a cancelled or lost worker is noticed within a heartbeat."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from db.commands.retention import PrunePlan, prune_tables
from orchestrator.settings import RetentionSettings

PASS_SECONDS = 120.0
"""No batch of a pass starts after this long, well inside the activity's 10-minute timeout."""


class HousekeepingInput(BaseModel):
    as_of: datetime
    """The instant every window is measured back from, the same across passes."""
    tables: list[str] | None = None
    """Tables still to prune, in order; ``None``: every table with a window."""


class HousekeepingPass(BaseModel):
    removed: dict[str, int] = {}
    """Rows deleted per table in this pass."""
    remaining: list[str] = []
    """Tables not finished (empty: housekeeping is done)."""
    batches: int = 0


class RetentionActivities:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], retention: RetentionSettings
    ) -> None:
        self._sessionmaker, self._retention = sessionmaker, retention

    @activity.defn(name="prune_retained_rows")
    async def prune_retained_rows(self, input: HousekeepingInput) -> HousekeepingPass:
        windows = self._retention.windows()
        tables = [
            t for t in (input.tables if input.tables is not None else windows) if t in windows
        ]
        plan = PrunePlan(
            windows=windows,
            as_of=input.as_of,
            batch_size=self._retention.batch_size,
            batch_pause=self._retention.batch_pause,
            max_batches=self._retention.batches_per_pass,
            busy_share=self._retention.busy_share,
            max_seconds=PASS_SECONDS,
        )
        done = await prune_tables(self._sessionmaker, plan, tables, on_batch=_heartbeat)
        return HousekeepingPass(
            removed=done.removed, remaining=done.remaining, batches=done.batches
        )


def _heartbeat(table: str, removed: int) -> None:
    activity.heartbeat(table, removed)
