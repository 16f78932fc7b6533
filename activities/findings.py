"""The monitor's second step: a health snapshot recorded as alerts and events
(``db.commands.findings``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from db.commands.alerts import (
    NotifyPolicy,
)
from db.commands.findings import HealthFindings, RecordHealthInput, record_health_findings


class FindingsActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        policy: NotifyPolicy | None = None,
        breaker: bool = True,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._policy = policy or NotifyPolicy()
        self._breaker = breaker

    @activity.defn(name="record_health_findings")
    async def record_health_findings(self, input: RecordHealthInput) -> HealthFindings:
        async with self._sessionmaker() as session:
            return await record_health_findings(session, input, self._policy, self._breaker)
