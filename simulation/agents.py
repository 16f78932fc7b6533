"""The four simulated agents, built on the agent SDK the way a real team would build theirs.

They are the only code in the project that changes prospect data. Each writes a
``status_change`` activity ({"from", "to"}) for every move, its own activities (score_change,
research_completed, email_sent, email_received), and its run history through the SDK.

Each write is one short session, opened after the agent's simulated latency and never held
across it: on SQLite every transaction holds the database's write lock from its first
statement (``db.engine``), so a session kept open while "working" would stall everyone else.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import Activity, Contact, OutreachSequence, Prospect
from pipeline.contract import AgentResult, AgentTask, ResultStatus
from simulation.scenario import Scenario

TIER_WEIGHTS = {"A1": 0.10, "A2": 0.15, "B": 0.30, "C": 0.30, "D": 0.15}
SCORE_BANDS = {"A1": (90, 100), "A2": (80, 90), "B": (65, 80), "C": (45, 65), "D": (0, 45)}
WORDS = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Hooli",
    "Vandelay",
    "Wonka",
    "Pied",
    "Massive",
    "Aperture",
)


class SimulatedFailure(RuntimeError):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def move(session: AsyncSession, prospect: Prospect, to: str, now: datetime) -> None:
    """Change a prospect's state the way every agent must: status, time, and the record."""
    session.add(
        Activity(
            prospect_id=prospect.id,
            type="status_change",
            created_at=now,
            details={"from": prospect.status, "to": to},
        )
    )
    prospect.status, prospect.status_changed_at, prospect.updated_at = to, now, now


class SimulatedAgents:
    """Behaviour per scenario; ``process`` functions for the SDK; the prospector's work."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], scenario: Scenario) -> None:
        self.sessionmaker = sessionmaker
        self.scenario = scenario
        self.random = random.Random(scenario.seed)
        self.started = _now()
        self.created = 0
        self.replies: set[asyncio.Task[None]] = set()

    def minute(self) -> float:
        return (_now() - self.started).total_seconds() / 60 * self.scenario.speed

    async def _act(self, agent: str) -> None:
        """Latency and injected failures of ``agent`` right now."""
        behaviour = self.scenario.behaviour(agent, self.minute())
        if behaviour.latency:
            await asyncio.sleep(behaviour.latency / self.scenario.speed)
        if self.random.random() < behaviour.failure_rate:
            raise SimulatedFailure(f"{agent}: simulated failure")

    async def _load(self, session: AsyncSession, task: AgentTask) -> Prospect:
        prospect = await session.get(Prospect, task.prospect_id)
        if prospect is None or prospect.status != task.from_state:
            raise SimulatedFailure(f"prospect {task.prospect_id} is not in {task.from_state}")
        return prospect

    async def hygiene(self, task: AgentTask) -> AgentResult:
        await self._act("hygiene")
        async with self.sessionmaker() as session:
            prospect, now = await self._load(session, task), _now()
            tier = self.random.choices(list(TIER_WEIGHTS), weights=list(TIER_WEIGHTS.values()))[0]
            low, high = SCORE_BANDS[tier]
            prospect.tier, prospect.score = tier, round(self.random.uniform(low, high), 1)
            session.add(
                Activity(
                    prospect_id=prospect.id,
                    type="score_change",
                    created_at=now,
                    details={"score": prospect.score, "tier": tier},
                )
            )
            move(session, prospect, "scored", now)
            await session.commit()
        return AgentResult(status=ResultStatus.COMPLETED, records_processed=1, new_status="scored")

    async def researcher(self, task: AgentTask) -> AgentResult:
        await self._act("researcher")
        async with self.sessionmaker() as session:
            prospect, now = await self._load(session, task), _now()
            session.add(
                Activity(
                    prospect_id=prospect.id,
                    type="research_completed",
                    created_at=now,
                    details={"sources": 3},
                )
            )
            move(session, prospect, "research_complete", now)
            await session.commit()
        return AgentResult(
            status=ResultStatus.COMPLETED, records_processed=1, new_status="research_complete"
        )

    async def outreach(self, task: AgentTask) -> AgentResult:
        await self._act("outreach")
        async with self.sessionmaker() as session:
            prospect, now = await self._load(session, task), _now()
            session.add(OutreachSequence(prospect_id=prospect.id, status="active", started_at=now))
            session.add(
                Activity(
                    prospect_id=prospect.id, type="email_sent", created_at=now, details={"step": 1}
                )
            )
            move(session, prospect, "in_sequence", now)
            await session.commit()
        if self.random.random() < self.scenario.reply_rate:
            reply = asyncio.create_task(self._reply_later(task.prospect_id))
            self.replies.add(reply)
            reply.add_done_callback(self.replies.discard)
        return AgentResult(
            status=ResultStatus.COMPLETED, records_processed=1, new_status="in_sequence"
        )

    async def _reply_later(self, prospect_id: int) -> None:
        await asyncio.sleep(self.scenario.reply_after_seconds / self.scenario.speed)
        async with self.sessionmaker() as session:
            prospect, now = await session.get(Prospect, prospect_id), _now()
            if prospect is None or prospect.status != "in_sequence":
                return
            session.add(
                Activity(
                    prospect_id=prospect_id,
                    type="email_received",
                    created_at=now,
                    details={"sentiment": "positive"},
                )
            )
            sequences = await session.scalars(
                select(OutreachSequence).where(
                    OutreachSequence.prospect_id == prospect_id, OutreachSequence.status == "active"
                )
            )
            for sequence in sequences:
                sequence.status, sequence.completed_at = "completed", now
            move(session, prospect, "replied", now)
            await session.commit()

    async def prospect(self) -> int:
        """One prospector run: a batch of new prospects with contacts; returns how many."""
        plan = self.scenario.prospector
        batch = plan.batch if plan.limit is None else min(plan.batch, plan.limit - self.created)
        if batch <= 0:
            return 0
        now = _now()
        async with self.sessionmaker() as session:
            for _ in range(batch):
                name = f"{self.random.choice(WORDS)} {self.random.choice(WORDS)} {self.created}"
                prospect = Prospect(
                    company_name=name,
                    domain=_domain(name),
                    status="identified",
                    status_changed_at=now,
                    created_at=now,
                    updated_at=now,
                )
                session.add(prospect)
                await session.flush()
                email = f"ceo@{prospect.domain}" if self.random.random() < plan.email_rate else None
                session.add(Contact(prospect_id=prospect.id, name="Alex", email=email, title="CEO"))
                self.created += 1
            await session.commit()
        return batch

    def processes(self) -> dict[str, Any]:
        return {"hygiene": self.hygiene, "researcher": self.researcher, "outreach": self.outreach}

    def prospector_every(self) -> timedelta:
        return timedelta(seconds=self.scenario.prospector.every_seconds / self.scenario.speed)


def _domain(name: str) -> str:
    return name.lower().replace(" ", "-") + ".example"
