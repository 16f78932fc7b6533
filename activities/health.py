"""The health check: the rollup brought up to date, then every agent's health
(``db.queries.health``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from db.commands.health_rollup import RollupPolicy, refresh_rollup
from db.queries.health import compute_agent_health
from orchestrator.settings import HealthSettings
from pipeline.health import (
    AgentHealth,
)


class ComputeHealthInput(BaseModel):
    as_of: datetime | None = None
    """The instant health is judged at; the cycle passes ``workflow.now()``."""


class HealthSnapshot(BaseModel):
    as_of: datetime
    agents: list[AgentHealth]


class HealthActivities:
    """Health activities, bound to the worker's database and configuration."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        expected: Mapping[str, int],
        settings: HealthSettings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._expected = dict(expected)
        self._thresholds = settings
        self._rollup = RollupPolicy(window=settings.window, settle=settings.rollup_settle)

    @activity.defn(name="compute_agent_health")
    async def compute_agent_health(self, input: ComputeHealthInput) -> HealthSnapshot:
        as_of = input.as_of or datetime.now(UTC)
        await self._refresh_rollup()
        async with self._sessionmaker() as session:
            agents = await compute_agent_health(session, self._expected, self._thresholds, as_of)
        activity.logger.info(
            "agent health at %s: %s",
            as_of.isoformat(),
            ", ".join(f"{a.agent_name} {a.status.value}" for a in agents),
        )
        return HealthSnapshot(as_of=as_of, agents=agents)

    async def _refresh_rollup(self) -> None:
        """Bring the rollup up to date, in its own transaction, at the real present (not
        ``as_of``: sealing is about what the database holds now). Best effort: the check
        is right without it, only slower, so a failure is a warning and not a retry."""
        try:
            async with self._sessionmaker() as session, session.begin():
                done = await refresh_rollup(
                    session, list(self._expected), self._rollup, datetime.now(UTC)
                )
        except Exception:  # any failure: the check below reads whatever is not sealed
            activity.logger.warning("health rollup refresh failed", exc_info=True)
            return
        if done.sealed or done.invalidated:
            activity.logger.info(
                "health rollup: %d agent-hours sealed, %d invalidated, %d pruned",
                done.sealed,
                done.invalidated,
                done.pruned,
            )
