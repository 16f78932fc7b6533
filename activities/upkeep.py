"""What every cycle does last: heartbeats, the watchdog, stalled handoffs and notification
delivery (``db.commands.upkeep``, ``activities.notify``)."""

from __future__ import annotations

from datetime import datetime

import httpx
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.notify import Delivery, SinkConfig, deliver_pending
from db.commands.alerts import NotifyPolicy, rejudge_held
from db.commands.presence import clear_no_worker, open_no_worker_agents
from db.commands.upkeep import UpkeepRules, beat, note_caught_by_sweep, watch, watch_stalls
from orchestrator.task_queues import TaskQueuePresence
from pipeline.contract import agent_task_queue


class AfterCycleInput(BaseModel):
    as_of: datetime
    completed: list[str] = []
    """Cycle steps that completed (their heartbeats are recorded)."""
    caught_by_sweep: int = 0
    """Handoffs the cycle's sweep started that the change feed had not: an event says so."""


class AfterCycle(BaseModel):
    watchdog: str
    stalled: int
    delivery: Delivery


class UpkeepActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        rules: UpkeepRules,
        policy: NotifyPolicy,
        sinks: SinkConfig,
        http: httpx.AsyncClient,
        presence: TaskQueuePresence | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._rules, self._policy, self._sinks, self._http = rules, policy, sinks, http
        self._presence = presence

    @activity.defn(name="after_cycle")
    async def after_cycle(self, input: AfterCycleInput) -> AfterCycle:
        async with self._sessionmaker() as session:
            for mode in input.completed:
                await beat(session, mode, input.as_of)
            watchdog = await watch(session, input.as_of, self._rules, self._policy)
            stalled = await watch_stalls(session, input.as_of, self._policy)
            await self._watch_presence(session, input.as_of)
            await rejudge_held(session, input.as_of, self._policy)
            if input.caught_by_sweep:
                await note_caught_by_sweep(session, input.caught_by_sweep, input.as_of)
            await session.commit()
            delivery = await deliver_pending(session, self._sinks, self._http)
        if delivery.failed:
            activity.logger.warning(
                "%d notifications not delivered; retried next cycle", delivery.failed
            )
        return AfterCycle(watchdog=watchdog, stalled=stalled, delivery=delivery)

    async def _watch_presence(self, session: AsyncSession, now: datetime) -> None:
        """Resolve the ``agent_no_worker`` alerts of agents a worker serves again."""
        if self._presence is None:
            return
        served = {
            agent: (await self._presence.pollers(agent_task_queue(agent))).served
            for agent in await open_no_worker_agents(session)
        }
        if served:
            await clear_no_worker(session, served, now, self._policy)
