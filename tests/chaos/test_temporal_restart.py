"""The Temporal server stopped and started again while prospects flow: first with SIGTERM,
then with SIGKILL, each time down for a while and back on the same port with the same
database file. Workflows resume where they were, the workers reconnect by themselves, and
nothing is lost or done twice.

The server is a dev server of this test's own (``temporal server start-dev --db-filename``),
the database a PostgreSQL cluster of its own; the orchestrator's worker is its own process
(``orchestrator worker``), the simulated agents are SDK workers in this process. Afterwards
every prospect is in its final state, no agent did one handoff's work twice, no lease is held,
no ledger row is open, the sweep running at the first stop completed, and the worker process
never exited. The figures are printed.

CI runs 200 prospects and 10 s outages; the full size is documented in
``tests/chaos/test_db_outage.py`` (one command for the three reliability tests).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from cli.devserver import DevServer
from simulation.agents import SimulatedAgents
from tests.helpers.api import free_port
from tests.helpers.handoffs import wait_until
from tests.helpers.outage import (
    DRAIN_WITHIN,
    OUTAGE_SECONDS,
    PROSPECTS,
    CountingAgents,
    Outcome,
    Sessionmaker,
    drain,
    fresh_database,
    handoffs_begun,
    kill_server,
    open_work,
    outcome_figures,
    own_cluster,
    scenario,
    seed,
    sessionmaker_for,
    start_sweep,
    start_worker,
    stop_worker,
    worker_env,
)
from tests.helpers.pg import PgCluster
from workflows.types import CycleSummary

SIGNALS = (signal.SIGTERM, signal.SIGKILL)
ATTEMPT_TIMEOUT = "PT20S"
"""An agent's answer sent while the server is down is dropped once the SDK stops retrying it
(about 10 s); the agent activity's attempt timeout then retries it, and the agent skips work
it already did. Production keeps the default (15 minutes).

A SIGKILLed dev server can also lose a workflow it had just started (its SQLite file is not
synced at every write): the handoff's claim then stays open with nobody working on it, which
the resolve cycle finds after ``CONTENTION_AFTER`` and starts again, as it does in
production after ten minutes."""
CONTENTION_AFTER = "PT15S"


@pytest.fixture(scope="module")
def restart_cluster() -> Iterator[PgCluster]:
    with own_cluster() as cluster:
        yield cluster


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[DevServer]:
    """A dev server of this test's own, on a fixed port, its state in a file."""
    dev = DevServer(state_dir=tmp_path / "temporal", port=free_port(), headless=True)
    await dev.start()
    yield dev
    await dev.stop()


async def connect(server: DevServer) -> Client:
    return await Client.connect(server.address, data_converter=pydantic_data_converter)


async def outage(server: DevServer, sig: signal.Signals) -> None:
    """Down for ``OUTAGE_SECONDS``, then up again on the same port and file."""
    await kill_server(server, sig)
    await asyncio.sleep(OUTAGE_SECONDS)
    await server.start()


async def test_temporal_restarts_mid_run_resume_and_lose_nothing(
    server: DevServer, tmp_path: Path, restart_cluster: PgCluster
) -> None:
    url, engine = await fresh_database(restart_cluster)
    sessionmaker = sessionmaker_for(engine)
    client = await connect(server)
    task_queue = "orchestrator-restart"
    counting = CountingAgents(SimulatedAgents(sessionmaker, scenario(PROSPECTS, latency=0.2)))
    await seed(counting.agents, PROSPECTS)
    in_flight: list[int] = []
    async with AsyncExitStack() as stack:
        await counting.serve(stack, client)
        env = worker_env(
            url,
            server.address,
            task_queue,
            ORCH_HANDOFFS__ATTEMPT_TIMEOUT=ATTEMPT_TIMEOUT,
            ORCH_CONFLICTS__CONTENTION_AFTER=CONTENTION_AFTER,
        )
        worker = start_worker(env, tmp_path / "worker.log")
        first = await start_sweep(client, task_queue)
        for n, sig in enumerate(SIGNALS, start=1):
            begun = n * PROSPECTS // 10
            await wait_until(lambda b=begun: _begun_at_least(sessionmaker, b), 120)
            in_flight.append((await open_work(sessionmaker))[0])
            await outage(server, sig)
        back = time.monotonic()
        drained = await drain(client, task_queue, sessionmaker, DRAIN_WITHIN, resolve=True)
        drain_seconds = time.monotonic() - back
        # after the handoffs: the sweep's own last step may wait out a lost completion too
        summary: CycleSummary = await asyncio.wait_for(first.result(), DRAIN_WITHIN)
        exited = stop_worker(worker)
    figures = await outcome_figures(sessionmaker)
    await engine.dispose()
    outcome = Outcome(
        test="temporal-restart",
        prospects=PROSPECTS,
        outage_seconds=OUTAGE_SECONDS,
        in_flight_at_outage=min(in_flight),
        duplicates=len(counting.doubled()),
        agent_retries=sum(counting.calls.values()) - sum(counting.done.values()),
        drain_seconds=round(drain_seconds, 1),
        extra={
            **figures.pop("extra"),
            "signals": [s.name for s in SIGNALS],
            "worker_exited": exited,
            "first_sweep_completed": True,
            "in_flight_per_outage": in_flight,
            "first_sweep": summary.handoffs.model_dump() if summary.handoffs else None,
        },
        **figures,  # type: ignore[arg-type]
    )
    outcome.show()
    outcome.save()
    assert exited is None, f"the worker exited by itself with {exited}"
    assert drained, f"stuck (open ledger rows, waiting): {await open_work(sessionmaker)}"
    assert min(in_flight) > 0, "each outage must hit handoffs in flight"
    assert counting.doubled() == [] and outcome.agent_runs_doubled == 0
    assert (outcome.lost, outcome.failed_handoffs) == (0, 0), outcome.extra
    assert (outcome.locks_held, outcome.open_handoffs) == (0, 0)
    assert sum(outcome.states.values()) == PROSPECTS


async def _begun_at_least(sessionmaker: Sessionmaker, n: int) -> bool:
    return await handoffs_begun(sessionmaker) >= n
