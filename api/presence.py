"""Agent presence for the API: who polls each agent's task queue (the process's
``TaskQueuePresence`` cache over the API's Temporal client), and when each HTTP agent's
endpoint last answered (``db.queries.presence``). Never an error: what cannot be told is
shown as unknown."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from api.temporal import TemporalGateway, TemporalUnavailable
from db.queries.presence import endpoint_answers
from orchestrator.settings import Settings
from orchestrator.task_queues import TaskQueuePresence
from pipeline.contract import agent_task_queue
from pipeline.presence import AgentPresence, http_presence, no_worker_detail
from pipeline.triggers import HANDED_TO

CONNECT_WITHIN = 3.0
"""Seconds the first read waits for Temporal: presence is never worth a slow health page."""


async def _cache(
    request: Request, gateway: TemporalGateway, settings: Settings
) -> TaskQueuePresence | str:
    """The process's presence cache, or why Temporal cannot be asked."""
    presence = getattr(request.app.state, "presence", None)
    if presence is None:
        try:
            client = await asyncio.wait_for(gateway.client(), CONNECT_WITHIN)
        except (TemporalUnavailable, TimeoutError) as exc:
            return str(exc) or "Temporal did not answer in time"
        presence = TaskQueuePresence(
            client,
            cache_seconds=settings.presence.cache_seconds,
            poller_fresh=settings.presence.poller_fresh,
        )
        request.app.state.presence = presence
    return presence


async def agents_presence(
    request: Request, session: AsyncSession, gateway: TemporalGateway, settings: Settings
) -> dict[str, AgentPresence]:
    """Every configured agent's presence, by name."""
    now = datetime.now(UTC)
    transports = {name: e.transport for name, e in settings.agent_endpoints.items()}
    answers = await endpoint_answers(session) if "http" in transports.values() else {}
    queues = None
    out: dict[str, AgentPresence] = {}
    for agent in settings.agents:
        if agent not in HANDED_TO:  # the prospector runs on its own cadence
            out[agent] = AgentPresence(
                agent=agent, transport="temporal", present=None, detail="receives no handoffs"
            )
        elif transports.get(agent, "temporal") == "http":
            max_age = settings.presence.http_answer_max_age
            out[agent] = http_presence(agent, answers.get(agent), now, max_age)
        else:
            queues = queues or await _cache(request, gateway, settings)
            out[agent] = await _queue_presence(queues, agent)
    return out


async def _queue_presence(queues: TaskQueuePresence | str, agent: str) -> AgentPresence:
    if isinstance(queues, str):
        return AgentPresence(agent=agent, transport="temporal", present=None, detail=queues)
    queue = agent_task_queue(agent)
    pollers = await queues.pollers(queue)
    if pollers.served is None:
        detail = f"cannot describe task queue {queue}: {pollers.error}"
    else:
        detail = None if pollers.served else no_worker_detail(queue)
    return AgentPresence(
        agent=agent,
        transport="temporal",
        present=pollers.served,
        pollers=pollers.pollers,
        last_seen=pollers.last_poll,
        detail=detail,
    )
