"""Running the simulated pipeline next to an orchestrator: three agent workers on their own
task queues, and the prospector on its cadence. Like any real agent it writes prospects and
leaves the rest to the orchestrator's change feed, which it nudges after each batch."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from agent_sdk import AgentRuntime, DatabaseRecorder, feed_nudge, run_every
from simulation.agents import SimulatedAgents
from simulation.scenario import SIMULATED_AGENTS, Scenario

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
    workers = []
    for name in SIMULATED_AGENTS:
        concurrency = scenario.agents.get(name)
        limit = concurrency.concurrency if concurrency else 20
        workers.append(
            AgentRuntime(name, recorder).worker(client, processes[name], max_concurrent=limit)
        )
    running = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        prospector = AgentRuntime("prospector", recorder)
        log.info("simulated agents running (seed %d, speed %g)", scenario.seed, scenario.speed)
        await run_every(
            prospector,
            agents.prospect,
            agents.prospector_every(),
            stop,
            nudge=feed_nudge(client, task_queue),
        )
    finally:
        # the three workers drain side by side, not one after another
        await asyncio.gather(*(worker.shutdown() for worker in workers), return_exceptions=True)
        await asyncio.gather(*running, return_exceptions=True)
        for reply in list(agents.replies):
            reply.cancel()
    return agents
