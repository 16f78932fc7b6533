"""The spec's algorithms, as the spec writes them: ORM rows loaded into Python and counted
there. This is the baseline the benchmarks measure ours against, and the correctness oracle
ours must agree with where the spec is right.

Ported from ``../shared/seed/orchestrator-agent-spec.md`` (``HealthMonitor.check_agent``,
``PipelineReporter.generate_daily_report``, ``HandoffManager.check_pending_handoffs``) to the
async session the project uses; each ``self.db.query(Model).filter(...).all()`` becomes
``(await session.scalars(select(Model).where(...))).all()`` and each ``.count()`` a
``SELECT count(*) FROM (SELECT ...)``, which is what ``Query.count()`` emits. Changed only
where the spec's code cannot run:

- the spec's naive ``now`` gives way to a ``now`` argument (aware UTC; the models refuse naive
  datetimes), so both sides judge the same instant;
- ``_determine_status`` compares ``last_success`` only when it is not ``None`` (it already
  does; ``AgentHealth.is_healthy``, which does not, is not used);
- ``has_contact_with_email(p)``, which the spec names but never defines, is the lazy load it
  would be: one query for the prospect's contacts, then a look for an address.

Left as the spec has them, and therefore not compared with ours: the status grading (the code
disagrees with the spec's own table, which we follow), ``unknown`` for an agent that ran
before the window but not in it (we say *failing*), and the report's summary sentence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Activity, AgentRun, Contact, OutreachSequence, Prospect

SPEC_AGENTS = ("prospector", "hygiene", "researcher", "outreach")


@dataclass
class AgentHealth:
    agent_name: str
    status: str
    last_successful_run: datetime | None
    last_run_duration_seconds: float
    runs_last_24h: int
    errors_last_24h: int
    error_rate: float
    avg_records_per_run: float


class HealthMonitor:
    EXPECTED_RECORDS_PER_RUN: Mapping[str, int] = {
        "prospector": 10,
        "hygiene": 20,
        "researcher": 5,
        "outreach": 10,
    }

    def __init__(self, db_session: AsyncSession, expected: Mapping[str, int] | None = None):
        self.db = db_session
        if expected is not None:
            self.EXPECTED_RECORDS_PER_RUN = dict(expected)

    async def check_all_agents(
        self, now: datetime, agents: Sequence[str] = SPEC_AGENTS
    ) -> dict[str, AgentHealth]:
        return {agent: await self.check_agent(agent, now) for agent in agents}

    async def check_agent(self, agent_name: str, now: datetime) -> AgentHealth:
        yesterday = now - timedelta(hours=24)

        runs = (
            await self.db.scalars(
                select(AgentRun).where(
                    AgentRun.agent_name == agent_name, AgentRun.started_at >= yesterday
                )
            )
        ).all()

        if not runs:
            return AgentHealth(
                agent_name=agent_name,
                status="unknown",
                last_successful_run=None,
                last_run_duration_seconds=0,
                runs_last_24h=0,
                errors_last_24h=0,
                error_rate=0,
                avg_records_per_run=0,
            )

        successful_runs = [r for r in runs if r.status == "completed"]
        failed_runs = [r for r in runs if r.status == "failed"]

        last_success = max(
            (r.completed_at for r in successful_runs if r.completed_at), default=None
        )

        error_rate = len(failed_runs) / len(runs) if runs else 0

        avg_records = (
            sum(r.records_processed or 0 for r in successful_runs) / len(successful_runs)
            if successful_runs
            else 0
        )

        status = self._determine_status(
            now,
            error_rate=error_rate,
            last_success=last_success,
            avg_records=avg_records,
            expected_records=self.EXPECTED_RECORDS_PER_RUN.get(agent_name, 10),
        )

        return AgentHealth(
            agent_name=agent_name,
            status=status,
            last_successful_run=last_success,
            last_run_duration_seconds=self._avg_duration(successful_runs),
            runs_last_24h=len(runs),
            errors_last_24h=len(failed_runs),
            error_rate=error_rate,
            avg_records_per_run=avg_records,
        )

    def _determine_status(
        self,
        now: datetime,
        error_rate: float,
        last_success: datetime | None,
        avg_records: float,
        expected_records: float,
    ) -> str:
        if error_rate > 0.3:
            return "failing"
        if last_success and (now - last_success) > timedelta(hours=24):
            return "failing"
        if error_rate > 0.1:
            return "degraded"
        if last_success and (now - last_success) > timedelta(hours=6):
            return "degraded"
        if avg_records < expected_records * 0.2:
            return "degraded"
        return "healthy"

    def _avg_duration(self, runs: list[AgentRun]) -> float:
        durations = [
            (r.completed_at - r.started_at).total_seconds()
            for r in runs
            if r.completed_at and r.started_at
        ]
        return sum(durations) / len(durations) if durations else 0


@dataclass
class PipelineReport:
    date: datetime
    total_prospects: int
    prospects_by_status: dict[str, int]
    prospects_by_tier: dict[str, int]
    prospects_added_24h: int
    prospects_scored_24h: int
    prospects_researched_24h: int
    emails_sent_24h: int
    active_sequences: int
    sequences_completed_24h: int
    response_rate: float
    agent_runs_24h: int
    agent_errors_24h: int
    summary: str


async def _count(db: AsyncSession, query: Any) -> int:
    """``Query.count()``: ``SELECT count(*) FROM (<the query>)``."""
    return int(await db.scalar(select(func.count()).select_from(query.subquery())) or 0)


class PipelineReporter:
    def __init__(self, db_session: AsyncSession):
        self.db = db_session

    async def generate_daily_report(self, now: datetime) -> PipelineReport:
        db = self.db
        yesterday = now - timedelta(hours=24)

        prospects = (await db.scalars(select(Prospect).where(Prospect.deleted_at.is_(None)))).all()

        by_status: dict[str, int] = {}
        by_tier: dict[str, int] = {}
        for p in prospects:
            by_status[p.status] = by_status.get(p.status, 0) + 1
            if p.tier:
                by_tier[p.tier] = by_tier.get(p.tier, 0) + 1

        added = await _count(db, select(Prospect).where(Prospect.created_at >= yesterday))

        def activities(kind: str, since: datetime) -> Any:
            return select(Activity).where(Activity.type == kind, Activity.created_at >= since)

        scored = await _count(db, activities("score_change", yesterday))
        researched = await _count(db, activities("research_completed", yesterday))
        emails = await _count(db, activities("email_sent", yesterday))

        active_seqs = await _count(
            db, select(OutreachSequence).where(OutreachSequence.status == "active")
        )
        completed_seqs = await _count(
            db, select(OutreachSequence).where(OutreachSequence.completed_at >= yesterday)
        )

        week_ago = now - timedelta(days=7)
        emails_week = await _count(db, activities("email_sent", week_ago))
        replies_week = await _count(db, activities("email_received", week_ago))
        response_rate = replies_week / emails_week if emails_week > 0 else 0

        runs = (await db.scalars(select(AgentRun).where(AgentRun.started_at >= yesterday))).all()
        errors = sum(1 for r in runs if r.status == "failed")

        summary = self._generate_summary(
            total=len(prospects),
            added=added,
            by_tier=by_tier,
            emails=emails,
            response_rate=response_rate,
        )

        return PipelineReport(
            date=now,
            total_prospects=len(prospects),
            prospects_by_status=by_status,
            prospects_by_tier=by_tier,
            prospects_added_24h=added,
            prospects_scored_24h=scored,
            prospects_researched_24h=researched,
            emails_sent_24h=emails,
            active_sequences=active_seqs,
            sequences_completed_24h=completed_seqs,
            response_rate=response_rate,
            agent_runs_24h=len(runs),
            agent_errors_24h=errors,
            summary=summary,
        )

    def _generate_summary(
        self, total: int, added: int, by_tier: dict[str, int], emails: int, response_rate: float
    ) -> str:
        parts = [
            f"Pipeline has {total} total prospects",
            f"({by_tier.get('A1', 0)} A1, {by_tier.get('A2', 0)} A2).",
            f"Added {added} new prospects today.",
            f"Sent {emails} emails.",
        ]
        if response_rate > 0.15:
            parts.append(f"Response rate is strong at {response_rate:.0%}.")
        elif response_rate > 0.05:
            parts.append(f"Response rate is {response_rate:.0%}.")
        elif emails > 0:
            parts.append(f"Response rate is low at {response_rate:.0%}.")
        return " ".join(parts)


# --- handoffs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handoff:
    prospect_id: int
    from_state: str
    to_agent: str


class HandoffManager:
    def __init__(self, db_session: AsyncSession):
        self.db = db_session

    async def has_contact_with_email(self, p: Prospect) -> bool:
        contacts = (await self.db.scalars(select(Contact).where(Contact.prospect_id == p.id))).all()
        return any(c.email and "@" in c.email for c in contacts)

    def triggers(self) -> dict[str, dict[str, Any]]:
        async def research_tiers(p: Prospect) -> bool:
            return p.tier in ("A1", "A2")

        async def outreach_ready(p: Prospect) -> bool:
            return p.tier in ("A1", "A2", "B") and await self.has_contact_with_email(p)

        return {
            "identified": {"next_agent": "hygiene", "trigger": "immediate"},
            "needs_scoring": {"next_agent": "hygiene", "trigger": "immediate"},
            "scored": {
                "next_agent": "researcher",
                "condition": research_tiers,
                "trigger": "immediate",
            },
            "needs_research": {"next_agent": "researcher", "trigger": "immediate"},
            "research_complete": {
                "next_agent": "outreach",
                "condition": outreach_ready,
                "trigger": "immediate",
            },
            "ready_for_outreach": {"next_agent": "outreach", "trigger": "immediate"},
        }

    async def check_pending_handoffs(self) -> list[Handoff]:
        pending = []
        for state, config in self.triggers().items():
            prospects = (
                await self.db.scalars(
                    select(Prospect).where(Prospect.status == state, Prospect.deleted_at.is_(None))
                )
            ).all()
            for prospect in prospects:
                if "condition" in config and not await config["condition"](prospect):
                    continue
                pending.append(
                    Handoff(
                        prospect_id=prospect.id, from_state=state, to_agent=config["next_agent"]
                    )
                )
        return pending
