"""Housekeeping beside a live handoff sweep, in one run: ``python -m bench.housekeeping_bench``.

The database gets ``--rows`` generated rows of the orchestrator's own tables (events, audit
rows and finished ledger rows in equal thirds) spread over ``--days`` days, as a system that
ran that long at a steady rate would have. Retention keeps ``--keep-days`` of each, so most of
them are due. Then, on a Temporal dev server with the real worker and the tests' stand-in
agents (hygiene scores each prospect tier C: one hop each, the feed off):

1. a handoffs sweep of ``--handoffs`` prospects without housekeeping (the baseline), its
   throughput measured to 95% of them handed off;
2. the same sweep while a housekeeping cycle deletes the due rows (production batch size and
   pause): the sweep's throughput against the baseline's, goal at most 10% slower, and the
   rows housekeeping deleted per second;
3. the baseline again, so drift over the run shows (the baseline is the mean of 1 and 3).

Checks: every prospect of a sweep got one ledger row and none was handed off twice,
housekeeping removed exactly the rows that were due, and nothing inside its window. Exit
status 1 only when a check fails, never for a timing. Results: a table on stdout and
``bench/results/housekeeping.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from bench.feed_load import PlainWriter, count_handed_off, ledger_rows, wait_for
from bench.results import Check, Figure, Goal, table
from bench.temporal_bench import TimedAgent, start_server
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from db.models import Event, Handoff, OrchestratorAction
from orchestrator.settings import (
    FeedSettings,
    ScheduleSettings,
    Settings,
    TemporalSettings,
)
from tests.helpers.agents import FakeAgent
from worker import build_worker
from workflows.cycle import CycleWorkflow
from workflows.types import CycleInput, CycleSummary

RESULTS = Path(__file__).parent / "results" / "housekeeping.json"
BASE = 700_000_000
"""The sweeps' prospect ids start here; each condition gets its own range."""
CHUNK = 5000
MARGIN = timedelta(hours=1)
SHARE = 0.95
"""A sweep's throughput is measured to this share of its prospects handed off."""
Say = Callable[[str], None]


@dataclass(frozen=True)
class HousekeepingPlan:
    rows: int
    days: float = 3.0
    keep_days: float = 1.0
    handoffs: int = 300


def _age(i: int, n: int, plan: HousekeepingPlan) -> timedelta:
    """Row ``i`` of ``n``, spread evenly over ``plan.days``; none within an hour of the
    retention's edge, so the rows due do not change while the run goes on."""
    age = timedelta(days=plan.days * (i + 0.5) / n)
    edge = timedelta(days=plan.keep_days)
    return age + 2 * MARGIN if abs(age - edge) < MARGIN else age


def history_rows(i: int, at: datetime) -> tuple[dict, dict, dict]:
    """Row ``i`` of each table, written at ``at``."""
    event = {
        "dedup_key": f"bench-{i}",
        "kind": "handoff_completed",
        "payload": {},
        "created_at": at,
    }
    action = {"action": "handoff_completed", "prospect_id": i, "created_at": at}
    ledger = {
        "id": f"bench-history-{i}",
        "prospect_id": i,  # no such prospect any more: the row may go once it is old
        "from_state": "identified",
        "state_entered_at": at,
        "to_agent": "hygiene",
        "status": "completed",
        "created_at": at,
        "updated_at": at,
        "finished_at": at,
    }
    return event, action, ledger


async def generate(sm: async_sessionmaker[AsyncSession], plan: HousekeepingPlan) -> int:
    """``plan.rows`` rows in thirds over the three tables; how many are due for deletion."""
    per_table, now = plan.rows // 3, datetime.now(UTC)
    ages = [_age(i, per_table, plan) for i in range(per_table)]
    for lo in range(0, per_table, CHUNK):
        batch = [history_rows(i, now - ages[i]) for i in range(lo, min(lo + CHUNK, per_table))]
        async with sm() as session:
            for model, k in ((Event, 0), (OrchestratorAction, 1), (Handoff, 2)):
                await session.execute(insert(model), [row[k] for row in batch])
            await session.commit()
    return 3 * sum(age > timedelta(days=plan.keep_days) for age in ages)


async def remaining(sm: async_sessionmaker[AsyncSession]) -> int:
    """Generated rows still there, over the three tables."""
    async with sm() as session:
        n = 0
        for model, where in (
            (Event, Event.dedup_key.like("bench-%")),
            (OrchestratorAction, OrchestratorAction.action == "handoff_completed"),
            (Handoff, Handoff.id.like("bench-history-%")),
        ):
            n += int(
                await session.scalar(select(func.count()).select_from(model).where(where)) or 0
            )
        return n


async def sweep(client: Client, settings: Settings, sm, writer: PlainWriter, pids: range) -> float:
    """``pids`` committed at once, then one handoffs sweep; handoffs a second until
    ``SHARE`` of them are handed off (on a busy machine one handoff can wait on a stall
    deadline, and would make the figure its own)."""
    await writer.commit(list(pids), "identified")
    began = time.perf_counter()
    handle = await client.start_workflow(
        CycleWorkflow.run,
        CycleInput(mode="handoffs"),
        id=f"bench-sweep-{uuid.uuid4().hex[:8]}",
        task_queue=settings.temporal.task_queue,
    )

    goal = math.ceil(SHARE * len(pids))

    async def done() -> bool:
        return await count_handed_off(sm, pids.start, pids.stop - 1) >= goal

    ended = await wait_for(done, max(600.0, 2.0 * len(pids)), "handoffs sweep")
    await asyncio.wait_for(handle.result(), timeout=120)  # its upkeep too, before the next
    return goal / (ended - began)


async def housekeeping(client: Client, settings: Settings) -> tuple[CycleSummary, float]:
    """One housekeeping cycle, to its end; its summary and how long it took."""
    began = time.perf_counter()
    summary = await asyncio.wait_for(
        client.execute_workflow(
            CycleWorkflow.run,
            CycleInput(mode="housekeeping"),
            id=f"bench-housekeeping-{uuid.uuid4().hex[:8]}",
            task_queue=settings.temporal.task_queue,
        ),
        timeout=3600,
    )
    return summary, time.perf_counter() - began


def bench_settings(url: str, plan: HousekeepingPlan, state_dir: Path) -> Settings:
    keep = timedelta(days=plan.keep_days)
    return Settings(
        state_dir=state_dir,
        database_url=url,
        temporal=TemporalSettings(task_queue=f"bench-housekeeping-{uuid.uuid4().hex[:8]}"),
        schedules=ScheduleSettings(enabled=False),
        feed=FeedSettings(enabled=False),
        # the windows are the plan's; the rest (batch size, pause, busy share) is what a
        # worker would read from ORCH_RETENTION__*
        retention=Settings().retention.model_copy(
            update={"events": keep, "audit": keep, "handoffs": keep}
        ),
    )


async def run_housekeeping(
    url: str, plan: HousekeepingPlan, state_dir: Path, say: Say = print
) -> tuple[list[Figure], list[Check]]:
    """The whole benchmark on the (empty) database behind ``url``."""
    engine = create_engine(url, pool_size=20, max_overflow=20)
    sm = create_sessionmaker(engine)
    env = await start_server()
    try:
        await upgrade(engine)
        say(f"generating {plan.rows:,} rows over {plan.days:g} days")
        due = await generate(sm, plan)
        settings = bench_settings(url, plan, state_dir)
        return await _measure(env.client, settings, sm, PlainWriter(engine), plan, due, say)
    finally:
        await env.shutdown()
        await engine.dispose()


async def _measure(
    client: Client,
    settings: Settings,
    sm: async_sessionmaker[AsyncSession],
    writer: PlainWriter,
    plan: HousekeepingPlan,
    due: int,
    say: Say,
) -> tuple[list[Figure], list[Check]]:
    hygiene = TimedAgent(FakeAgent("hygiene", sm, tier=lambda _pid: "C"))
    n = plan.handoffs
    ranges = [range(BASE + k * n + 1, BASE + (k + 1) * n + 1) for k in range(3)]
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(build_worker(client, sm, settings))
        await stack.enter_async_context(hygiene.worker(client))
        say(f"  sweep of {n} without housekeeping")
        before = await sweep(client, settings, sm, writer, ranges[0])
        say(f"  sweep of {n} beside housekeeping ({due:,} rows due)")
        began = time.perf_counter()
        cleaning = asyncio.create_task(housekeeping(client, settings))
        beside = await sweep(client, settings, sm, writer, ranges[1])
        swept_for = time.perf_counter() - began
        summary, took = await cleaning
        say(f"  sweep of {n} without housekeeping, again")
        after = await sweep(client, settings, sm, writer, ranges[2])
    removed = sum(summary.housekeeping.removed.values()) if summary.housekeeping else 0
    left = await remaining(sm)
    checks = [
        Check("housekeeping: removed exactly the due rows", removed == due, f"{removed} of {due}"),
        Check(
            "housekeeping: kept the rows inside the window",
            left == 3 * (plan.rows // 3) - due,
            f"{left} left",
        ),
    ]
    for name, pids in zip(("before", "beside", "after"), ranges, strict=True):
        rows, twice = await ledger_rows(sm, pids.start, pids.stop - 1), _twice(hygiene, pids)
        done = await count_handed_off(sm, pids.start, pids.stop - 1)
        checks.append(
            Check(
                f"sweep {name}: one ledger row each, none handed off twice",
                rows == n and twice == 0,
                f"{rows} rows, {done} completed, {twice} twice",
            )
        )
    baseline = (before + after) / 2
    detail: dict[str, Any] = {
        "without_before": before,
        "without_after": after,
        "rows_generated": 3 * (plan.rows // 3),
        "rows_due": due,
        "housekeeping_seconds": took,
        "sweep_seconds_beside": swept_for,
        "overlap": min(took / swept_for, 1.0) if swept_for else None,
        "removed": summary.housekeeping.removed if summary.housekeeping else {},
    }
    figures = [
        Figure.make(
            "housekeeping.rows_per_second",
            "housekeeping, rows deleted",
            "/s",
            removed / took,
            detail=detail,
        ),
        Figure.make(
            "housekeeping.sweep_throughput",
            f"sweep of {n} beside housekeeping",
            "/s",
            beside,
            baseline,
            Goal("≤ 10% slower", min_ratio=0.9),
            other_kind="without housekeeping",
            detail=detail,
        ),
    ]
    return figures, checks


def _twice(agent: TimedAgent, pids: range) -> int:
    """Prospects the agent worked on more than once for their one state entry."""
    work = agent.inner.work
    return sum(work[(pid, "identified")] > 1 for pid in pids)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--keep-days", type=float, default=1.0)
    parser.add_argument("--handoffs", type=int, default=300)
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--database-url", default=None, help="an empty database")
    return parser.parse_args(argv)


async def _main(opts: argparse.Namespace) -> int:
    from bench.run import open_target

    target = open_target(opts)
    plan = HousekeepingPlan(opts.rows, opts.days, opts.keep_days, opts.handoffs)
    try:
        url = await target.fresh("housekeeping")
        state = Path(getattr(target, "dir", Path(".orchestrator")))
        figures, checks = await run_housekeeping(url, plan, state)
    finally:
        await target.close()
    print(table(figures))
    for check in checks:
        print(f"{'ok' if check.ok else 'FAILED'}  {check.name}: {check.detail}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps([f.as_dict() for f in figures], indent=2, default=str))
    return 0 if all(c.ok for c in checks) else 1


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(_main(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
