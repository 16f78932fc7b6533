"""Running the simulated pipeline next to an orchestrator: three agent workers on their own
task queues, and the prospector on its cadence, which asks for a handoffs cycle after each
batch, as a real prospector would through ``POST /run?mode=handoffs``."""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import AsyncExitStack

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from agent_sdk import AgentRuntime, DatabaseRecorder, run_every
from simulation.agents import SimulatedAgents
from simulation.scenario import SIMULATED_AGENTS, Scenario
from workflows.cycle import CycleWorkflow
from workflows.search_attributes import cycle_attributes
from workflows.types import CycleInput

log = logging.getLogger(__name__)


async def run_simulation(
    client: Client,
    sessionmaker: async_sessionmaker[AsyncSession],
    scenario: Scenario,
    task_queue: str,
    stop: asyncio.Event,
) -> SimulatedAgents:
    """Run until ``stop``; returns the agents (their counters say what they did)."""
    agents = SimulatedAgents(sessionmaker, scenario)
    recorder = DatabaseRecorder(sessionmaker)
    processes = agents.processes()
    async with AsyncExitStack() as stack:
        for name in SIMULATED_AGENTS:
            runtime = AgentRuntime(name, recorder)
            concurrency = scenario.agents.get(name)
            worker = runtime.worker(
                client,
                processes[name],
                max_concurrent=concurrency.concurrency if concurrency else 20,
            )
            await stack.enter_async_context(worker)
        prospector = AgentRuntime("prospector", recorder)

        async def prospect_and_hand_off() -> int:
            created = await agents.prospect()
            if created:
                await _request_handoffs(client, task_queue)
            return created

        log.info("simulated agents running (seed %d, speed %g)", scenario.seed, scenario.speed)
        await run_every(prospector, prospect_and_hand_off, agents.prospector_every(), stop)
    for reply in list(agents.replies):
        reply.cancel()
    return agents


async def _request_handoffs(client: Client, task_queue: str) -> None:
    await client.start_workflow(
        CycleWorkflow.run,
        CycleInput(mode="handoffs"),
        id=f"cycle-handoffs-prospector-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
        search_attributes=cycle_attributes("handoffs"),
        static_summary="handoffs for the prospector's new batch",
    )
