"""Figures 4 and 5 on a Temporal dev server: handoff throughput against the ceiling (an empty
workflow with one activity, on the same server in the same run), and the latency from one
agent finishing to the next one being triggered along chained handoffs.

The orchestrator is the real worker (``worker.build_worker``); the agents are the tests'
stand-ins (``tests.helpers.agents.FakeAgent``, no delay), wrapped to record when each call
starts and returns."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.ceiling import TASK_QUEUE as CEILING_QUEUE
from bench.ceiling import EmptyWorkflow, noop
from bench.memory_bench import sweep_memory
from bench.memory_rules import Allocator, burst_for
from bench.results import Check, Figure, Goal, percentile
from cli.devserver import find_binary
from db.models import Handoff, Prospect
from orchestrator.settings import FeedSettings, ScheduleSettings, Settings, TemporalSettings
from pipeline.contract import PROCESS_PROSPECT, AgentResult, AgentTask, agent_task_queue
from tests.helpers.agents import FakeAgent
from tests.helpers.factories import add, prospect
from worker import build_worker
from workflows.cycle import CycleWorkflow
from workflows.search_attributes import ALL
from workflows.types import CycleInput

AGENTS = ("hygiene", "researcher", "outreach")
CHAIN_OFFSET = 10_000_000
"""Prospect ids of the latency chains start here, apart from the throughput prospects."""


@dataclass
class TimedAgent:
    """A stand-in agent that notes when each call starts and returns (``time.time()``)."""

    inner: FakeAgent
    started: dict[int, float] = field(default_factory=dict)
    returned: dict[int, float] = field(default_factory=dict)

    @activity.defn(name=PROCESS_PROSPECT)
    async def process_prospect(self, task: AgentTask) -> AgentResult:
        self.started.setdefault(task.prospect_id, time.time())
        result = await self.inner.process_prospect(task)
        self.returned[task.prospect_id] = time.time()
        return result

    def worker(self, client: Client) -> Worker:
        return Worker(
            client,
            task_queue=agent_task_queue(self.inner.name),
            activities=[self.process_prospect],
        )


SQLITE_FAST = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=off"]


async def start_server(database: Path | None = None) -> WorkflowEnvironment:
    """The dev server; in memory unless ``database`` names a file for its state."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(find_binary("temporal")),
        data_converter=pydantic_data_converter,
        search_attributes=ALL,
        dev_server_log_level="error",
        dev_server_database_filename=str(database) if database else None,
        # a throwaway file: durability is not what is measured
        dev_server_extra_args=SQLITE_FAST if database else [],
    )


async def ceiling(client: Client, n: int, start_batch: int = 100) -> float:
    """Empty workflows (one activity each) completed per second, ``n`` started at once."""
    async with Worker(
        client, task_queue=CEILING_QUEUE, workflows=[EmptyWorkflow], activities=[noop]
    ):
        run = uuid.uuid4().hex[:8]

        async def one(i: int) -> None:
            await client.execute_workflow(
                EmptyWorkflow.run, i, id=f"bench-empty-{run}-{i}", task_queue=CEILING_QUEUE
            )

        await asyncio.gather(*(one(-i - 1) for i in range(min(20, n))))  # warm-up
        began = time.perf_counter()
        sem = asyncio.Semaphore(start_batch * 10)

        async def limited(i: int) -> None:
            async with sem:
                await one(i)

        await asyncio.gather(*(limited(i) for i in range(n)))
        return n / (time.perf_counter() - began)


async def _count(sm: async_sessionmaker[AsyncSession], query: object) -> int:
    async with sm() as session:
        return int(await session.scalar(query) or 0)


async def _wait_for(
    sm: async_sessionmaker[AsyncSession], query: object, n: int, within: float
) -> float:
    """Poll until ``query`` counts ``n``; the moment it did (``perf_counter``)."""
    deadline = time.perf_counter() + within
    while True:
        if await _count(sm, query) >= n:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            got = await _count(sm, query)
            raise TimeoutError(f"{got} of {n} done after {within:.0f} s")
        await asyncio.sleep(0.05)


async def _sweep(client: Client, settings: Settings) -> None:
    await client.start_workflow(
        CycleWorkflow.run,
        CycleInput(mode="handoffs"),
        id=f"bench-sweep-{uuid.uuid4().hex[:10]}",
        task_queue=settings.temporal.task_queue,
    )


async def run_temporal(
    url: str,
    sm: async_sessionmaker[AsyncSession],
    state_dir: Path,
    *,
    handoffs: int,
    chains: int,
    say: Callable[[str], None],
    chain_wave: int = 10,
    sweep: int = 0,
    allocator: Allocator = "image",
) -> tuple[list[Figure], list[Check]]:
    settings = Settings(
        state_dir=state_dir,
        database_url=url,
        temporal=TemporalSettings(task_queue=f"bench-{uuid.uuid4().hex[:8]}"),
        schedules=ScheduleSettings(enabled=False),
        # figures 4 and 5 measure the sweep and the chain: no feed runs, none is counted
        feed=FeedSettings(enabled=False),
    )
    say("  starting the Temporal dev server")
    env = await start_server()
    try:
        client = env.client
        say(f"  ceiling: {handoffs} empty workflows with one activity")
        before = await ceiling(client, handoffs)
        agents = {name: TimedAgent(FakeAgent(name, sm)) for name in AGENTS}
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(build_worker(client, sm, settings))
            for agent in agents.values():
                await stack.enter_async_context(agent.worker(client))
            rate, throughput_checks = await _throughput(client, sm, settings, handoffs, say)
            # the server slows as it fills up, so the ceiling is taken on both sides of ours
            after = await ceiling(client, handoffs)
            ceiling_rate = (before + after) / 2
            say(f"  ceiling {before:.1f}/s before, {after:.1f}/s after; ours {rate:.1f}/s")
            latencies, chain_checks = await _latency(
                client, sm, settings, agents, chains, say, chain_wave
            )
    finally:
        await env.shutdown()
    memory = await _memory(url, sm, sweep, say, allocator) if sweep else ([], [])
    figures = [
        Figure.make(
            "handoff.throughput",
            f"handoff throughput, {handoffs} handoffs",
            "/s",
            rate,
            ceiling_rate,
            Goal("≥ 0.5 of ceiling", min_ratio=0.5),
            other_kind="ceiling",
        ),
        Figure.make(
            "handoff.latency.p50",
            f"handoff latency p50, {len(latencies)} hops, {chain_wave} chains at a time",
            "s",
            percentile(latencies, 50),
            goal=Goal("< 1 s", max_ours=1.0),
        ),
        Figure.make(
            "handoff.latency.p99",
            f"handoff latency p99, {len(latencies)} hops, {chain_wave} chains at a time",
            "s",
            percentile(latencies, 99),
        ),
    ]
    return figures + memory[0], throughput_checks + chain_checks + memory[1]


async def _memory(
    url: str,
    sm: async_sessionmaker[AsyncSession],
    sweep: int,
    say: Callable[[str], None],
    allocator: Allocator,
) -> tuple[list[Figure], list[Check]]:
    """Figure 6 on a server of its own that keeps its state in a file: the in-memory one
    grows by about 100 KiB per handoff, and 100,000 of them did not fit on a 24 GiB machine."""
    say("  starting a Temporal dev server with a database file for the sweep")
    gate = asyncio.Event()
    gate.set()
    burst = burst_for(gate, sweep, Settings().handoffs.max_in_flight)  # what the worker reads
    with tempfile.TemporaryDirectory(prefix="orch-bench-temporal-") as folder:
        database = Path(folder) / "temporal.db"
        env = await start_server(database)
        try:
            async with AsyncExitStack() as stack:
                for name in AGENTS:
                    agent = TimedAgent(FakeAgent(name, sm, gate=gate))
                    await stack.enter_async_context(agent.worker(env.client))
                return await sweep_memory(
                    env.client, url, sm, sweep, burst, say, allocator, str(database)
                )
        finally:
            await env.shutdown()


async def _throughput(
    client: Client,
    sm: async_sessionmaker[AsyncSession],
    settings: Settings,
    n: int,
    say: Callable[[str], None],
) -> tuple[float, list[Check]]:
    rows: list[object] = []
    for pid in range(1, n + 1):
        rows += prospect("ready_for_outreach", tier="A1", pid=pid)
    await add(sm, *rows)
    say(f"  throughput: {n} prospects ready for outreach, one sweep")
    done = select(func.count()).where(Handoff.status == "completed", Handoff.prospect_id <= n)
    began = time.perf_counter()
    await _sweep(client, settings)
    ended = await _wait_for(sm, done, n, within=max(120.0, n / 5))
    moved = await _count(
        sm,
        select(func.count()).where(Prospect.status == "in_sequence", Prospect.id <= n),
    )
    return n / (ended - began), [
        Check("throughput: every prospect handed off once", moved == n, f"{moved} of {n}")
    ]


async def _latency(
    client: Client,
    sm: async_sessionmaker[AsyncSession],
    settings: Settings,
    agents: dict[str, TimedAgent],
    chains: int,
    say: Callable[[str], None],
    wave: int = 10,
) -> tuple[list[float], list[Check]]:
    """Chains ``wave`` at a time: the hop latency of a pipeline moving at a steady pace (all
    at once measures the queue behind them instead; the throughput figure covers that)."""
    pids = range(CHAIN_OFFSET + 1, CHAIN_OFFSET + chains + 1)
    say(f"  latency: {chains} prospects through hygiene → researcher → outreach, {wave} at a time")
    done = select(func.count()).where(Prospect.status == "in_sequence", Prospect.id > CHAIN_OFFSET)
    for first in range(0, chains, wave):
        batch = pids[first : first + wave]
        rows: list[object] = []
        for pid in batch:
            rows += prospect("identified", pid=pid)
        await add(sm, *rows)
        await _sweep(client, settings)
        await _wait_for(sm, done, first + len(batch), within=max(120.0, wave / 2))
    hops = [("hygiene", "researcher"), ("researcher", "outreach")]
    latencies = [
        agents[nxt].started[pid] - agents[prev].returned[pid] for prev, nxt in hops for pid in pids
    ]
    work = {
        name: sum(n for (p, _), n in a.inner.work.items() if p > CHAIN_OFFSET)
        for name, a in agents.items()
    }
    once = all(n == chains for n in work.values())
    return latencies, [
        Check("latency: each agent acted once per chained prospect", once, str(work))
    ]
