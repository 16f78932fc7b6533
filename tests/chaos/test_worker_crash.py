"""Workers killed with SIGKILL, one at a time, again and again, while prospects flow: nothing
is lost, nothing is done twice.

Three orchestrator workers run as their own processes (``orchestrator worker``, the
environment compose gives ``--scale worker=3``); the simulated agents run here, counting
every call they receive by handoff id (their own log). One worker at a time is killed at a
random moment and started again while the other two carry on. Afterwards every qualifying
prospect has reached outreach, no agent was triggered twice for one state entry, no lease is
held and no handoff is open. The figures are printed.

CI runs a reduced size; the full one (2,000 prospects, five kills) is
``ORCH_CHAOS_PROSPECTS=2000 ORCH_CHAOS_KILLS=5 pytest tests/chaos/test_worker_crash.py -s``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.client import Client

from agent_sdk import AgentRuntime, DatabaseRecorder
from db.models import Contact, Handoff, Prospect, RecordLock
from pipeline.handoffs import OPEN_STATUSES
from simulation.agents import SimulatedAgents
from simulation.scenario import Behaviour, Scenario
from tests.helpers.outage import (
    DRAIN_WITHIN,
    CountingAgents,
    drain,
    open_work,
    seed,
    start_sweep,
    start_worker,
)

PROSPECTS = int(os.environ.get("ORCH_CHAOS_PROSPECTS", "200"))
KILLS = int(os.environ.get("ORCH_CHAOS_KILLS", "2"))
WORKERS = 3
"""Worker processes on the one task queue, as ``docker compose up --scale worker=3`` runs."""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_worker_killed_repeatedly_loses_and_doubles_nothing(
    client: Client, sessionmaker, worker_settings, tmp_path: Path
) -> None:
    scenario = Scenario(
        seed=11,
        prospector={"batch": 50, "limit": PROSPECTS, "every_seconds": 1},
        agents={
            n: Behaviour(latency=0.01, concurrency=50)
            for n in ("hygiene", "researcher", "outreach")
        },
        reply_rate=0.0,
    )
    agents = SimulatedAgents(sessionmaker, scenario)
    counting = CountingAgents(agents)
    env = {
        **os.environ,
        "ORCH_DATABASE_URL": worker_settings.database_url,
        "ORCH_TEMPORAL__ADDRESS": worker_settings.temporal.address,
        "ORCH_TEMPORAL__TASK_QUEUE": worker_settings.temporal.task_queue,
        "ORCH_SCHEDULES__ENABLED": "false",
        "ORCH_LOG_LEVEL": "WARNING",
        "ORCH_AGENTS": '{"prospector": 50, "hygiene": 1, "researcher": 1, "outreach": 1}',
    }
    log = tmp_path / "worker.log"
    chance = random.Random(5)
    recorder = DatabaseRecorder(sessionmaker)
    started = time.monotonic()
    async with AsyncExitStack() as stack:
        for name in ("hygiene", "researcher", "outreach"):
            runtime = AgentRuntime(name, recorder)
            await stack.enter_async_context(runtime.worker(client, counting.process(name)))
        await seed(agents, PROSPECTS)
        workers = [start_worker(env, log) for _ in range(WORKERS)]
        task_queue = worker_settings.temporal.task_queue
        await start_sweep(client, task_queue)
        for kill in range(KILLS):
            await asyncio.sleep(chance.uniform(0.5, 2.0))
            victim = kill % WORKERS  # one at a time, the others carry on
            os.killpg(workers[victim].pid, signal.SIGKILL)
            workers[victim].wait(30)
            workers[victim] = start_worker(env, log)
            await start_sweep(client, task_queue)
        # a new sweep whenever the last one finished, until nothing is open or waiting
        drained = await drain(client, task_queue, sessionmaker, DRAIN_WITHIN)
        drained_at = time.monotonic() if drained else None
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.wait(30)
    assert drained_at is not None, f"not drained: {await open_work(sessionmaker)}"

    async with sessionmaker() as session:
        statuses = dict(
            (
                await session.execute(
                    select(Prospect.status, func.count()).group_by(Prospect.status)
                )
            ).all()
        )
        qualifying = await session.scalar(
            select(func.count())
            .select_from(Prospect)
            .where(
                Prospect.tier.in_(("A1", "A2")),
                select(Contact.id)
                .where(Contact.prospect_id == Prospect.id, Contact.email.like("%_@_%"))
                .exists(),
            )
        )
        locks = await session.scalar(select(func.count()).select_from(RecordLock))
        open_rows = await session.scalar(
            select(func.count())
            .select_from(Handoff)
            .where(Handoff.status.in_([s.value for s in OPEN_STATUSES]))
        )
    duplicates = sum(1 for n in counting.calls.values() if n > 1)
    reached = statuses.get("in_sequence", 0)
    print(
        f"\nworker crash: workers {WORKERS}, prospects {PROSPECTS}, kills {KILLS}, "
        f"duplicates {duplicates}, "
        f"lost {qualifying - reached}, locks held {locks}, open handoffs {open_rows}, "
        f"time to drain {drained_at - started:.1f} s, states {statuses}"
    )
    assert duplicates == 0, [k for k, n in counting.calls.items() if n > 1][:5]
    assert reached == qualifying
    assert (locks, open_rows) == (0, 0)
    assert sum(statuses.values()) == PROSPECTS
