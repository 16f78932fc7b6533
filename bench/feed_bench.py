"""Figures 7 and 8, the change feed, on a Temporal dev server with the table the benchmark
loaded still in place (its size and the feed's index are part of what is measured):

7. commit to the first agent's call: prospects written one per commit at a steady rate by a
   plain writer (``bench.feed_load``; no nudge), idle and under a background load of half
   figure 8's rate, against the sweep path (feed stopped, a Temporal Schedule starting the
   handoffs sweep every ``sweep_period`` seconds) measured in the same run;
8. handoff throughput through the feed: ``handoffs`` prospects in one commit, all handed off
   by the feed (no sweep), against the one-activity-workflow ceiling, taken before and after.

The orchestrator is the real worker with the production feed settings; the agents are the
tests' stand-ins, timed (``bench.temporal_bench.TimedAgent``). Hygiene scores the measured
prospects tier C, so each makes exactly one handoff and the load stays what the writer puts
in."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from bench.feed_load import (
    PlainWriter,
    count_handed_off,
    ledger_rows,
    ledger_times,
    mark_loaded_handed_off,
    wait_for,
)
from bench.feed_sweep import SweepPath, sweep_path
from bench.results import Check, Figure, Goal, percentile
from bench.temporal_bench import TimedAgent, ceiling, start_server
from db.engine import create_engine
from db.models import Prospect
from orchestrator.settings import ScheduleSettings, Settings, TemporalSettings
from tests.helpers.agents import FakeAgent
from worker import build_worker
from workflows.cycle import CycleWorkflow
from workflows.feed import FeedWorkflow
from workflows.starters import ensure_feed
from workflows.types import CycleInput, FeedState

AGENTS = ("hygiene", "researcher", "outreach")
BASE = 500_000_000
"""The benchmark's own prospect ids start here, far above the loaded table's."""
BURST, IDLE, MEASURED, BACKGROUND, SWEEP = (BASE + k * 10_000_000 for k in range(5))
Say = Callable[[str], None]


@dataclass(frozen=True)
class FeedPlan:
    handoffs: int
    """Prospects committed at once for figure 8."""
    commits: int
    """Prospects written one per commit in each condition of figure 7."""
    rate: float = 4.0
    """Commits a second in figure 7's feed conditions."""
    sweep_period: float = 30.0
    sweep_periods: int = 2
    """The sweep path spreads its ``commits`` over this many periods."""
    load: float | None = None
    """Handoffs a second under load, the measured commits included; ``None``: half of
    figure 8's rate."""


@dataclass
class Rig:
    """What every step uses: the server, the database, the agents and the plain writer."""

    client: Client
    sm: async_sessionmaker[AsyncSession]
    settings: Settings
    writer: PlainWriter
    agents: dict[str, TimedAgent] = field(default_factory=dict)

    def once(self, agent: str, pids: range, state: str) -> int:
        """How many of ``pids`` the agent acted on exactly once for ``state``."""
        work = self.agents[agent].inner.work
        return sum(work[(pid, state)] == 1 for pid in pids)

    async def check_once(self, name: str, agent: str, pids: range, state: str) -> Check:
        """Each of ``pids`` handed off exactly once: the agent's own log and the ledger."""
        once = self.once(agent, pids, state)
        rows = await ledger_rows(self.sm, pids.start, pids.stop - 1)
        ok = once == len(pids) == rows
        return Check(name, ok, f"{once} of {len(pids)} once by {agent}; {rows} ledger rows")


async def run_feed(
    url: str, sm: async_sessionmaker[AsyncSession], plan: FeedPlan, state_dir: Path, say: Say
) -> tuple[list[Figure], list[Check]]:
    """Figures 7 and 8 on the database behind ``url`` (loaded, migrated), in one run."""
    marked = await mark_loaded_handed_off(sm)
    async with sm() as session:
        table = int(await session.scalar(select(func.count()).select_from(Prospect)) or 0)
    say(f"feed: {table:,} prospects in the table, {marked:,} ledger rows of the loaded ones")
    settings = Settings(
        state_dir=state_dir,
        database_url=url,
        temporal=TemporalSettings(task_queue=f"bench-feed-{uuid.uuid4().hex[:8]}"),
        schedules=ScheduleSettings(enabled=False),
    )
    writer_engine = create_engine(url)
    env = await start_server()
    try:
        rig = Rig(env.client, sm, settings, PlainWriter(writer_engine))
        return await _measure(rig, plan, table, say)
    finally:
        await env.shutdown()
        await writer_engine.dispose()


async def _measure(
    rig: Rig, plan: FeedPlan, table: int, say: Say
) -> tuple[list[Figure], list[Check]]:
    say(f"  ceiling: {plan.handoffs} empty workflows with one activity")
    before = await ceiling(rig.client, plan.handoffs)
    rig.agents = {name: TimedAgent(FakeAgent(name, rig.sm)) for name in AGENTS}
    # one hop per measured prospect: hygiene scores it C, and scored C has no trigger
    rig.agents["hygiene"] = TimedAgent(FakeAgent("hygiene", rig.sm, tier=lambda _pid: "C"))
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(build_worker(rig.client, rig.sm, rig.settings))
        for agent in rig.agents.values():
            await stack.enter_async_context(agent.worker(rig.client))
        feed = await ensure_feed(rig.client, rig.settings.temporal.task_queue)
        rate, checks = await _burst(rig, plan.handoffs, say)
        after = await ceiling(rig.client, plan.handoffs)
        say(f"  ceiling {before:.1f}/s before, {after:.1f}/s after; feed {rate:.1f}/s")
        idle, idle_checks = await _steady(rig, range(IDLE + 1, IDLE + plan.commits + 1), plan)
        load = plan.load if plan.load is not None else rate / 2
        loaded, load_checks = await _under_load(rig, plan, max(load - plan.rate, 0.0), say)
        state: FeedState = await feed.query(FeedWorkflow.state)
        reconciled, sweep_seconds = await _reconcile(rig)
        await feed.terminate("benchmark: the sweep path is measured without the feed")
        say(f"  sweep path: a sweep every {plan.sweep_period:g} s, feed stopped")
        pids = range(SWEEP + 1, SWEEP + plan.commits + 1)
        swept = await sweep_path(rig, pids, plan.sweep_period, plan.sweep_periods)
        sweep_check = await rig.check_once(
            "feed: sweep path, each once", "hygiene", pids, "identified"
        )
    context = {
        "prospects_in_table": table,
        "feed": {"polls": state.polls, "started": state.handoffs.started, "runs": state.runs},
        "reconciling_sweep_seconds": sweep_seconds,
        "load_per_second": load,
        "rate_per_second": plan.rate,
    }
    figures = _latency_figures(idle, loaded, swept, plan, context)
    figures.append(_throughput_figure(rate, (before + after) / 2, plan.handoffs, context))
    return figures, [*checks, *idle_checks, *load_checks, reconciled, sweep_check]


async def _burst(rig: Rig, n: int, say: Say) -> tuple[float, list[Check]]:
    """Figure 8: ``n`` prospects ready for outreach in one commit; until all are done."""
    say(f"  feed throughput: {n} prospects ready for outreach in one commit, no sweep")
    pids = range(BURST + 1, BURST + n + 1)

    async def done() -> bool:
        return await count_handed_off(rig.sm, pids.start, pids.stop - 1) >= n

    await rig.writer.commit(list(pids), "ready_for_outreach", "A1")
    began = time.perf_counter()
    ended = await wait_for(done, max(120.0, n / 5), "feed throughput")
    check = await rig.check_once(
        "feed throughput: each once", "outreach", pids, "ready_for_outreach"
    )
    return n / (ended - began), [check]


@dataclass
class Latencies:
    """Commit to the first call per prospect, and its two parts: to the ledger row (the
    feed found it and its handoff began) and from there to the agent's call."""

    total: list[float]
    to_ledger: list[float]
    ledger_to_call: list[float]

    def detail(self, p: float) -> dict[str, float]:
        return {
            f"to_ledger_p{p:g}": percentile(self.to_ledger, p),
            f"ledger_to_call_p{p:g}": percentile(self.ledger_to_call, p),
        }


async def _steady(rig: Rig, pids: range, plan: FeedPlan) -> tuple[Latencies, list[Check]]:
    """Figure 7: one prospect per commit at ``plan.rate``; the feed hands each to hygiene."""
    await rig.writer.steady(pids, plan.rate, "identified")
    hygiene = rig.agents["hygiene"]

    async def done() -> bool:
        started = all(pid in hygiene.started for pid in pids)
        return started and await count_handed_off(rig.sm, pids.start, pids.stop - 1) >= len(pids)

    await wait_for(done, 120.0, "feed latency")
    began = await ledger_times(rig.sm, pids.start, pids.stop - 1)
    committed, called = rig.writer.committed, hygiene.started
    latencies = Latencies(
        total=[called[pid] - committed[pid] for pid in pids],
        to_ledger=[began[pid] - committed[pid] for pid in pids],
        ledger_to_call=[called[pid] - began[pid] for pid in pids],
    )
    label = "idle" if pids.start < MEASURED else "under load"
    return latencies, [
        await rig.check_once(f"feed latency {label}: each once", "hygiene", pids, "identified")
    ]


async def _under_load(
    rig: Rig, plan: FeedPlan, load: float, say: Say
) -> tuple[Latencies, list[Check]]:
    """Figure 7 again while a second writer adds ``load`` one-hop handoffs a second."""
    say(f"  feed latency under {plan.rate:g} + {load:.1f} background handoffs/s")
    stop = asyncio.Event()
    background = asyncio.create_task(rig.writer.background(BACKGROUND + 1, load, stop))
    await asyncio.sleep(3.0)  # the load reaches its pace first
    try:
        latencies, checks = await _steady(
            rig, range(MEASURED + 1, MEASURED + plan.commits + 1), plan
        )
    finally:
        stop.set()
        written = await background
    pids = range(BACKGROUND + 1, BACKGROUND + len(written) + 1)

    async def drained() -> bool:
        return await count_handed_off(rig.sm, pids.start, pids.stop - 1) >= len(pids)

    await wait_for(drained, 120.0 + len(pids) / 5, "background load")
    checks.append(
        await rig.check_once("feed load: each once", "outreach", pids, "ready_for_outreach")
    )
    return latencies, checks


async def _reconcile(rig: Rig) -> tuple[Check, float]:
    """The scheduled sweep behind the feed, once everything is done: it should find nothing
    to start, and count nothing the feed missed. Its duration is the sweep's cost per run."""
    began = time.perf_counter()
    summary = await rig.client.execute_workflow(
        CycleWorkflow.run,
        CycleInput(mode="handoffs"),
        id=f"bench-reconcile-{uuid.uuid4().hex[:8]}",
        task_queue=rig.settings.temporal.task_queue,
    )
    seconds = time.perf_counter() - began
    sweep = summary.handoffs
    started = sweep.started if sweep else -1
    caught = sweep.caught_by_sweep if sweep else -1
    ok = started == 0 and caught == 0
    detail = f"started {started}, caught_by_sweep {caught}, {seconds:.1f} s"
    return Check("feed: the reconciling sweep found nothing left", ok, detail), seconds


def _latency_figures(
    idle: Latencies, loaded: Latencies, swept: SweepPath, plan: FeedPlan, context: dict
) -> list[Figure]:
    rows = []
    table = f"{context['prospects_in_table']:,} in table"
    load = f"under a load of {context['load_per_second']:.1f}/s"
    for key, measured, words in (("idle", idle, "idle"), ("load", loaded, load)):
        for p, goal in ((50, Goal("< 1 s", max_ours=1.0)), (99, Goal("< 2 s", max_ours=2.0))):
            detail = {**context, **measured.detail(p), "samples": measured.total}
            rows.append(
                Figure.make(
                    f"feed.latency.{key}.p{p}",
                    f"commit → first agent call p{p}, {words}, {len(measured.total)} at "
                    f"{plan.rate:g}/s ({table})",
                    "s",
                    percentile(measured.total, p),
                    percentile(swept.latencies, p),
                    goal,
                    other_kind=f"sweep every {plan.sweep_period:g} s",
                    detail={**detail, "sweep_path": swept.detail(p)},
                )
            )
    return rows


def _throughput_figure(rate: float, ceiling_rate: float, n: int, context: dict) -> Figure:
    return Figure.make(
        "feed.throughput",
        f"handoff throughput through the feed, {n} handoffs",
        "/s",
        rate,
        ceiling_rate,
        Goal("≥ 0.6 of ceiling", min_ratio=0.6),
        other_kind="ceiling",
        detail=context,
    )
