"""Stand-in agents for tests: real Temporal activities named ``process_prospect`` served on
``agent-<name>``, doing what each agent's contract says to the prospect rows. This is the seam
the design allows a test to replace; the orchestrator's own machinery stays real."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from db.models import Activity, Prospect
from pipeline.contract import (
    PROCESS_PROSPECT,
    AgentResult,
    AgentTask,
    ResultStatus,
    agent_task_queue,
)

NEXT_STATE = {"hygiene": "scored", "researcher": "research_complete", "outreach": "in_sequence"}


@dataclass
class FakeAgent:
    """One agent. ``work`` counts the state entries it acted on (its own log, by
    prospect and state): exactly-once means every count is 1."""

    name: str
    sessionmaker: async_sessionmaker[AsyncSession]
    """The agent's own connection (``agent_sessionmaker``), not the orchestrator's."""
    tier: Callable[[int], str] = lambda _pid: "A1"
    fail_first: int = 0
    """Raise this many times per handoff before succeeding."""
    delay: float = 0.0
    gate: asyncio.Event | None = None
    """When set, every call waits for it (a slow or stuck agent)."""
    calls: list[AgentTask] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    """Calls per handoff id: counted as they come, since scanning ``calls`` on every call
    made a 100,000-prospect benchmark sweep quadratic."""
    work: Counter[tuple[int, str]] = field(default_factory=Counter)
    done: dict[str, AgentResult] = field(default_factory=dict)

    @activity.defn(name=PROCESS_PROSPECT)
    async def process_prospect(self, task: AgentTask) -> AgentResult:
        self.calls.append(task)
        self.attempts[task.handoff_id] += 1
        if task.handoff_id in self.done:  # the idempotency key: never do the work twice
            return self.done[task.handoff_id]
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.attempts[task.handoff_id] <= self.fail_first:
            raise RuntimeError(f"{self.name} failed on purpose ({self.attempts[task.handoff_id]})")
        result = await self._advance(task)
        self.done[task.handoff_id] = result
        return result

    async def _advance(self, task: AgentTask) -> AgentResult:
        now = datetime.now(UTC)
        new_status = NEXT_STATE[self.name]
        async with self.sessionmaker() as session:
            prospect = await session.get(Prospect, task.prospect_id)
            assert prospect is not None
            self.work[(task.prospect_id, task.from_state)] += 1
            prospect.status, prospect.status_changed_at, prospect.updated_at = new_status, now, now
            if self.name == "hygiene":
                prospect.tier, prospect.score = self.tier(task.prospect_id), 80.0
            session.add(
                Activity(
                    prospect_id=task.prospect_id,
                    type="status_change",
                    created_at=now,
                    details={"from": task.from_state, "to": new_status},
                )
            )
            await session.commit()
        return AgentResult(
            status=ResultStatus.COMPLETED, records_processed=1, new_status=new_status
        )

    def worker(self, client: Client) -> Worker:
        return Worker(
            client, task_queue=agent_task_queue(self.name), activities=[self.process_prospect]
        )


async def prospect_status(sessionmaker: async_sessionmaker[AsyncSession], pid: int) -> str:
    async with sessionmaker() as session:
        return (await session.scalar(select(Prospect.status).where(Prospect.id == pid))) or ""
