"""Taking real servers away in the middle of a run and bringing them back, and reading what
the run left behind.

PostgreSQL: a throwaway cluster of our own (``tests.helpers.pg.start_cluster``), stopped with
``pg_ctl`` and started again on the same port with the options it was started with (read
from ``postmaster.opts``, so a change of options in ``tests/helpers/pg.py`` carries over). Temporal:
a dev server of our own (``orchestrator.devserver.DevServer``) on fixed ports with its state
in a file, killed and started again on the same port and file. The orchestrator's worker runs
as its own process (``orchestrator worker``), as in production; the simulated agents run in
the test process and count the work they do per handoff id (their own log).

Sizes (CI runs the defaults):

- ``ORCH_CHAOS_PROSPECTS`` prospects per run (default 200; shared with the worker crash test)
- ``ORCH_OUTAGE_SECONDS`` how long a server stays down (default 10; full size 30)
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from agent_sdk import AgentRuntime, DatabaseRecorder
from cli.devserver import DevServer
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from db.models import AgentRun, Contact, Handoff, Prospect, RecordLock
from db.queries.handoffs import EMAIL_PATTERN, pending_counts
from pipeline.contract import AgentResult, AgentTask
from pipeline.handoffs import OPEN_STATUSES
from simulation.agents import SimulatedAgents
from simulation.scenario import Behaviour, Scenario
from tests.helpers.pg import PgCluster, PostgresUnavailable, start_cluster
from workflows.cycle import CycleWorkflow
from workflows.types import CycleInput, CycleSummary

PROSPECTS = int(os.environ.get("ORCH_CHAOS_PROSPECTS", "200"))
OUTAGE_SECONDS = float(os.environ.get("ORCH_OUTAGE_SECONDS", "10"))
DRAIN_WITHIN = max(300.0, PROSPECTS * 0.3)
"""Three handoffs per prospect at about 20 a second on two cores (bench/README.md), with room."""
STUCK_AFTER = 150.0
"""Longer than the longest retry backoff a step can be in (an agent activity at 8 attempts
waits 1, 2, 4, 8, 16, 30, 30 s), so a quiet spell means stuck, not waiting."""
SIMULATED = ("hygiene", "researcher", "outreach")
ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"
RESULTS = Path(__file__).parents[2] / "bench" / "results"
Sessionmaker = async_sessionmaker[AsyncSession]


# --- PostgreSQL -------------------------------------------------------------------------


@contextmanager
def own_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of the caller's own, since these tests stop servers mid-run;
    skipped (or failed, with ``ORCH_REQUIRE_POSTGRES=1``) without PostgreSQL binaries."""
    try:
        cluster = start_cluster()
    except PostgresUnavailable as exc:
        if os.environ.get("ORCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"ORCH_REQUIRE_POSTGRES=1 but PostgreSQL is unavailable: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


def _pg_ctl(cluster: PgCluster, *args: str) -> list[str]:
    cmd = [str(cluster.bindir / "pg_ctl"), "-D", str(cluster.data), *args]
    return ["runuser", "-u", cluster.run_as, "--", *cmd] if cluster.run_as else cmd


def _server_options(cluster: PgCluster) -> str:
    """The options the server runs with now, minus the data directory pg_ctl passes itself."""
    words = shlex.split((cluster.data / "postmaster.opts").read_text())[1:]
    if "-D" in words:
        at = words.index("-D")
        del words[at : at + 2]
    return shlex.join(words)


def stop_postgres(cluster: PgCluster) -> str:
    """Stop the server the way an operator restarting it would (fast: sessions are ended and
    their transactions rolled back, committed work is kept); returns its options, to start it
    again with. (Immediate mode would lose acknowledged commits here, as the test clusters run
    with ``synchronous_commit=off``; that is the cluster's trade, not the orchestrator's.)"""
    options = _server_options(cluster)
    subprocess.run(_pg_ctl(cluster, "-m", "fast", "-w", "stop"), check=True, capture_output=True)
    return options


def start_postgres(cluster: PgCluster, options: str) -> None:
    """Start the stopped server again on the same port, with the same options."""
    log = str(cluster.root / "server.log")
    subprocess.run(
        _pg_ctl(cluster, "-o", options, "-l", log, "-w", "start"), check=True, capture_output=True
    )


async def fresh_database(cluster: PgCluster) -> tuple[str, AsyncEngine]:
    """A new database on ``cluster``, migrated to head; its URL and an engine."""
    url = cluster.url(await cluster.create_database())
    engine = create_engine(url)
    await upgrade(engine)
    return url, engine


# --- Temporal --------------------------------------------------------------------------


async def kill_server(server: DevServer, sig: signal.Signals) -> None:
    """Take the dev server away: SIGTERM lets it shut down, SIGKILL does not."""
    assert server.process is not None
    os.killpg(server.process.pid, sig)
    await server.process.wait()


# --- the orchestrator's worker and the agents -------------------------------------------


def worker_env(database_url: str, address: str, task_queue: str, **extra: str) -> dict[str, str]:
    """Settings for ``orchestrator worker``: this test's database, server and queue."""
    return {
        **os.environ,
        "ORCH_DATABASE_URL": database_url,
        "ORCH_TEMPORAL__ADDRESS": address,
        "ORCH_TEMPORAL__TASK_QUEUE": task_queue,
        "ORCH_SCHEDULES__ENABLED": "false",
        "ORCH_LOG_LEVEL": "WARNING",
        "ORCH_AGENTS": '{"prospector": 50, "hygiene": 1, "researcher": 1, "outreach": 1}',
        **extra,
    }


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(ORCHESTRATOR), "worker"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_worker(worker: subprocess.Popen[bytes]) -> int | None:
    """Stop the worker; its exit code if it had already exited by itself (it should not)."""
    exited = worker.poll()
    if exited is None:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
    return exited


def scenario(prospects: int, latency: float) -> Scenario:
    """Agents slow enough that handoffs are in flight when a server goes away."""
    return Scenario(
        seed=23,
        prospector={"batch": 100, "limit": prospects, "every_seconds": 1},
        agents={name: Behaviour(latency=latency, concurrency=10) for name in SIMULATED},
        reply_rate=0.0,
    )


@dataclass
class CountingAgents:
    """The simulated agents, counting per agent and handoff id the calls that did the work.
    A call that failed (its database was down) and was retried is expected; work done twice
    for one handoff is the bug."""

    agents: SimulatedAgents
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    done: Counter[tuple[str, str]] = field(default_factory=Counter)

    def process(self, name: str) -> Callable[[AgentTask], Awaitable[AgentResult]]:
        inner = self.agents.processes()[name]

        async def counted(task: AgentTask) -> AgentResult:
            self.calls[(name, task.handoff_id)] += 1
            result = await inner(task)
            self.done[(name, task.handoff_id)] += 1
            return result

        return counted

    async def serve(self, stack: AsyncExitStack, client: Client) -> None:
        """Each agent's worker, through the agent SDK (which records ``agent_runs``)."""
        recorder = DatabaseRecorder(self.agents.sessionmaker)
        for name in SIMULATED:
            runtime = AgentRuntime(name, recorder)
            worker = runtime.worker(client, self.process(name), max_concurrent=10)
            await stack.enter_async_context(worker)

    def doubled(self) -> list[tuple[str, str]]:
        return [key for key, n in self.done.items() if n > 1]


async def seed(agents: SimulatedAgents, count: int) -> None:
    while agents.created < count:
        await agents.prospect()


async def start_sweep(client: Client, task_queue: str, mode: str = "handoffs") -> WorkflowHandle:
    return await client.start_workflow(
        CycleWorkflow.run,
        CycleInput(mode=mode),
        id=f"outage-{mode}-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
        result_type=CycleSummary,
    )


async def drain(
    client: Client,
    task_queue: str,
    sessionmaker: Sessionmaker,
    within: float,
    *,
    resolve: bool = False,
) -> bool:
    """Sweep again whenever the last sweep has finished (as the every-5-minutes schedule with
    its overlap policy ``skip`` would, only sooner) until no handoff is open and no prospect
    waits; ``False`` if that does not happen ``within`` seconds, or nothing moves for
    ``STUCK_AFTER`` seconds. With ``resolve``, a resolve cycle runs after each sweep, as its
    every-30-minutes schedule would: it restarts handoffs whose workflow was lost (open
    claims nobody works on)."""
    deadline = time.monotonic() + within
    last, moved = None, time.monotonic()
    running: list[WorkflowHandle] = []
    while time.monotonic() < deadline and time.monotonic() - moved < STUCK_AFTER:
        work = (*await open_work(sessionmaker), await handoffs_begun(sessionmaker))
        if work[:2] == (0, 0):
            return True
        if work != last:
            last, moved = work, time.monotonic()
        if not running or all([await _closed(h) for h in running]):
            running = [await start_sweep(client, task_queue)]
            if resolve:
                running.append(await start_sweep(client, task_queue, mode="resolve"))
        await asyncio.sleep(2.0)
    return False


async def _closed(handle: WorkflowHandle) -> bool:
    return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING


# --- reading what happened --------------------------------------------------------------


async def open_work(sessionmaker: Sessionmaker) -> tuple[int, int]:
    """(open ledger rows, prospects still waiting for a handoff)."""
    async with sessionmaker() as session:
        open_rows = await session.scalar(
            select(func.count()).select_from(Handoff).where(Handoff.finished_at.is_(None))
        )
        waiting = sum((await pending_counts(session)).values())
    return open_rows or 0, waiting


async def handoffs_begun(sessionmaker: Sessionmaker) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(Handoff)) or 0


def expected_final(tier: str | None, has_email: bool) -> str:
    """Where a prospect ends when every handoff went through: A1/A2 are researched and, with
    an email, put in sequence; other tiers stay scored (no trigger takes them further)."""
    if tier in ("A1", "A2"):
        return "in_sequence" if has_email else "research_complete"
    return "scored"


@dataclass
class Outcome:
    """The figures a run prints and stores."""

    test: str
    prospects: int
    outage_seconds: float
    in_flight_at_outage: int
    lost: int
    duplicates: int
    agent_runs_doubled: int
    failed_handoffs: int
    locks_held: int
    open_handoffs: int
    drain_seconds: float
    agent_retries: int
    states: dict[str, int]
    extra: dict[str, object] = field(default_factory=dict)

    def show(self) -> None:
        figures = {k: v for k, v in asdict(self).items() if k != "test"}
        print(
            f"\n{self.test}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in figures.items())
        )

    def save(self) -> None:
        """Kept next to the benchmark results (``bench/results/reliability-<test>.json``)."""
        RESULTS.mkdir(parents=True, exist_ok=True)
        body = {**asdict(self), "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (RESULTS / f"reliability-{self.test}.json").write_text(json.dumps(body, indent=2) + "\n")


async def outcome_figures(sessionmaker: Sessionmaker) -> dict[str, object]:
    """Lost prospects, doubled agent runs, held leases, open and failed ledger rows, states."""
    async with sessionmaker() as session:
        with_email = exists().where(
            Contact.prospect_id == Prospect.id, Contact.email.like(EMAIL_PATTERN)
        )
        rows = (await session.execute(select(Prospect.status, Prospect.tier, with_email))).all()
        doubled = await session.scalar(
            select(func.count()).select_from(
                select(AgentRun.handoff_id)
                .where(AgentRun.status == "completed", AgentRun.handoff_id.is_not(None))
                .group_by(AgentRun.agent_name, AgentRun.handoff_id)
                .having(func.count() > 1)
                .subquery()
            )
        )
        locks = await session.scalar(select(func.count()).select_from(RecordLock))
        failed = (
            await session.execute(
                select(Handoff.id, Handoff.detail).where(Handoff.status == "failed").limit(5)
            )
        ).all()
        by_status = dict(
            (
                await session.execute(select(Handoff.status, func.count()).group_by(Handoff.status))
            ).all()
        )
    open_rows = sum(n for s, n in by_status.items() if s in {o.value for o in OPEN_STATUSES})
    return {
        "lost": sum(1 for status, tier, email in rows if status != expected_final(tier, email)),
        "agent_runs_doubled": doubled or 0,
        "locks_held": locks or 0,
        "open_handoffs": open_rows,
        "failed_handoffs": by_status.get("failed", 0),
        "states": dict(Counter(status for status, _, _ in rows)),
        "extra": {"failed_examples": [f"{i}: {d}" for i, d in failed]},
    }


def sessionmaker_for(engine: AsyncEngine) -> Sessionmaker:
    return create_sessionmaker(engine)
