"""The orchestrator's Temporal worker: its workflows and activities on one task queue.

Workers are stateless; run as many as the load needs. Each one keeps the Schedules in place
when it starts, which is idempotent.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.findings import FindingsActivities
from activities.health import HealthActivities
from orchestrator.schedules import apply_schedules
from orchestrator.search_attributes import ensure_search_attributes
from orchestrator.settings import Settings
from workflows.cycle import CycleWorkflow

log = logging.getLogger(__name__)

WORKFLOWS = [CycleWorkflow]


def build_activities(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> list[object]:
    health = HealthActivities(sessionmaker, settings.agents, settings.health)
    findings = FindingsActivities(sessionmaker)
    return [health.compute_agent_health, findings.record_health_findings]


def build_worker(
    client: Client,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    task_queue: str | None = None,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue or settings.temporal.task_queue,
        workflows=WORKFLOWS,
        activities=build_activities(sessionmaker, settings),
    )


async def prepare_namespace(client: Client, settings: Settings) -> None:
    """Search attributes first: a schedule or workflow that sets an unknown one fails."""
    await ensure_search_attributes(client)
    if settings.schedules.enabled:
        await apply_schedules(client, settings)


async def run_worker(
    client: Client,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    stop: asyncio.Event,
    *,
    prepare: bool = True,
) -> None:
    if prepare:
        await prepare_namespace(client, settings)
    worker = build_worker(client, sessionmaker, settings)
    log.info("worker polling task queue %r", settings.temporal.task_queue)
    async with worker:
        await stop.wait()
    log.info("worker stopped")
