"""Handoff vocabulary and policy: identities, statuses, and the knobs a handoff runs with."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from pipeline.contract import AgentResult


class HandoffStatus(StrEnum):
    PENDING = "pending"
    BLOCKED = "blocked"
    RUNNING = "running"
    STALLED = "stalled"
    COMPLETED = "completed"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"


OPEN_STATUSES = frozenset(
    {HandoffStatus.PENDING, HandoffStatus.BLOCKED, HandoffStatus.RUNNING, HandoffStatus.STALLED}
)
RETRYABLE_STATUSES = frozenset({HandoffStatus.FAILED, HandoffStatus.CANCELLED})


def handoff_id(prospect_id: int, from_state: str, state_entered_at: datetime) -> str:
    """One id per entry of a prospect into a state: the exactly-once key, and the
    idempotency key the agent receives."""
    micros = int(state_entered_at.timestamp() * 1_000_000)
    return f"{prospect_id}:{from_state}:{micros}"


def handoff_workflow_id(prospect_id: int) -> str:
    """One open handoff workflow per prospect: a second start is refused by Temporal."""
    return f"handoff-{prospect_id}"


class PendingHandoff(BaseModel):
    prospect_id: int
    from_state: str
    state_entered_at: datetime
    to_agent: str

    @property
    def id(self) -> str:
        return handoff_id(self.prospect_id, self.from_state, self.state_entered_at)


class StartedPage(BaseModel):
    """Handoffs a sweep started from one page, some perhaps not begun yet. A child writes its
    ledger row only when its first task runs, and until then the ledger does not show it as
    open; the sweep carries these so its count of handoffs in flight includes them."""

    after_id: int | None
    through_id: int
    """The page's prospects: ids in ``(after_id, through_id]``."""
    started: int
    since: datetime
    """Shortly before the page was found: a ledger row of one of its prospects written since
    then is one of these handoffs begun."""
    prospect_ids: list[int] = []
    """The feed's pages name their prospects (its entries are not an id range): counted
    exactly, and not started again by a re-read while they have not begun."""


Transport = Literal["temporal", "http"]


class HandoffPolicy(BaseModel):
    """Timeouts and limits, read from settings by an activity and carried in workflow input
    (workflows cannot read configuration themselves)."""

    stall_after: timedelta = timedelta(minutes=10)
    hard_timeout: timedelta = timedelta(hours=1)
    blocked_retry_interval: timedelta = timedelta(seconds=30)
    agent_max_attempts: int = Field(6, ge=1)
    """Attempts of the agent's activity: 1, 2, 4, 8, 16 s apart (about 30 s in all), so a
    short database or network blip on the agent's side does not fail the handoff."""
    attempt_timeout: timedelta = timedelta(minutes=15)
    """Longest one attempt of the agent's work may take. Without it an answer lost on the
    way (the agent's worker died, or the Temporal server was down when it answered) would
    hold the handoff and its lease until ``hard_timeout``; with it the attempt is retried,
    and the agent skips work it already did for that handoff id."""
    lease_margin: timedelta = timedelta(minutes=5)
    max_chain: int = Field(20, ge=1)
    transports: dict[str, Transport] = {}

    def transport(self, agent: str) -> Transport:
        return self.transports.get(agent, "temporal")

    @property
    def lease_ttl(self) -> timedelta:
        """How long a handoff may hold its record lease and its ledger row: a live run
        ends by then."""
        return self.hard_timeout + self.lease_margin


class HandoffState(BaseModel):
    """What the ``state`` query returns: everything an operator wants to know at once."""

    handoff_id: str
    prospect_id: int
    from_state: str
    to_agent: str
    status: HandoffStatus
    attempt: int = 1
    blocked_by: str | None = None
    detail: str | None = None
    result: AgentResult | None = None
    updated_at: datetime | None = None
    chain: list[str] = []
    """Handoff ids already completed by earlier runs of this chain."""
    no_worker: bool = False
    """Begun while no worker polled the agent's task queue: it waits for one to come."""


def feed_workflow_id(task_queue: str) -> str:
    """The change feed of the orchestrator on ``task_queue``: one per task queue (and so
    per deployment), ``feed-orchestrator`` by default."""
    return f"feed-{task_queue}"


FEED_NUDGE = "nudge"
"""The signal that wakes the feed (agents send it after a run that changed states)."""
