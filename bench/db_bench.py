"""Figures 1-3 (health check, daily report, pending handoffs) and the correctness oracle, on
one loaded database: ours and the spec's baseline, same data, same process, same instant.

The health check is measured in its steady state: the hourly rollup (activities/
health_rollup.py) refreshed once at ``NOW``, as the scheduled check does before computing.
The rollup's first build and a later refresh are reported beside it (no goal)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench import baseline_spec as spec
from bench.generate import EXPECTED, NOW
from bench.results import Check, Figure, Goal, measure
from db.commands.health_rollup import LATE_LAG, RefreshResult, RollupPolicy, refresh_rollup
from db.commands.reports import build_daily_report
from db.models import AgentRunHour
from db.queries.handoffs import find_pending_page
from db.queries.health import compute_agent_health
from orchestrator.settings import HandoffSettings, HealthSettings
from pipeline.reports import PipelineReport
from tests.helpers.oracles import every_run_window_stats

PAGE_SIZE = min(HandoffSettings().page_size, HandoffSettings().max_children_per_run)
"""The sweep's page size with the default settings."""
MILLION = 1_000_000


def _label(n: int) -> str:
    if n >= MILLION and n % MILLION == 0:
        return f"{n // MILLION}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


class DbBench:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        repeat: int,
        baseline_repeat: int,
        say: Callable[[str], None],
    ) -> None:
        self.sm = sessionmaker
        self.repeat = repeat
        self.baseline_repeat = baseline_repeat
        self.say = say
        self.thresholds = HealthSettings()
        self.rollup = RollupPolicy(self.thresholds.window, self.thresholds.rollup_settle)

    # --- the two sides ------------------------------------------------------------------------

    async def ours_health(self) -> list[Any]:
        async with self.sm() as session:
            return await compute_agent_health(session, EXPECTED, self.thresholds, NOW)

    async def raw_health(self) -> list[Any]:
        """Every run aggregated, no rollup: what ours must equal."""
        async with self.sm() as session:
            return await compute_agent_health(
                session, EXPECTED, self.thresholds, NOW, window=every_run_window_stats
            )

    async def refresh(self, now: datetime) -> RefreshResult:
        async with self.sm() as session, session.begin():
            return await refresh_rollup(session, list(EXPECTED), self.rollup, now)

    async def timed_refreshes(
        self, now: datetime, forget_from: datetime
    ) -> tuple[list[float], RefreshResult]:
        """``repeat`` refreshes at ``now``, each after deleting the rollup rows from
        ``forget_from`` on (outside the timing), so each one seals the same hours."""
        samples, result = [], RefreshResult()
        for _ in range(max(self.repeat, 1)):
            async with self.sm() as session, session.begin():
                await session.execute(delete(AgentRunHour).where(AgentRunHour.hour >= forget_from))
            began = time.perf_counter()
            result = await self.refresh(now)
            samples.append(time.perf_counter() - began)
        return samples, result

    async def build_rollup(self, runs: int) -> list[Figure]:
        """The first build (every hour of the retention span) at ``NOW``, after the two
        refreshes that leave its watermark; then the refresh of the next hour, one hour on
        (the costliest refresh of an hour: the other three seal nothing). Leaves the rollup
        as the first build made it, as a check at ``NOW`` finds it."""
        tag = _label(runs)
        self.say(f"  health rollup ({tag} runs): first build, next hour's refresh")
        for ago in (4, 2):
            await self.refresh(NOW - ago * LATE_LAG)
        build, built = await self.timed_refreshes(NOW, NOW - 2 * self.rollup.retention)
        hour = timedelta(hours=1)
        later = NOW + hour
        step, stepped = await self.timed_refreshes(later, later - self.rollup.settle - hour)
        async with self.sm() as session, session.begin():
            await session.execute(delete(AgentRunHour).where(AgentRunHour.hour >= NOW - hour))
        return [
            Figure.make(
                f"rollup.build.{runs}",
                f"health rollup first build ({built.sealed} agent-hours), {tag} runs",
                "s",
                statistics.median(build),
                detail={"ours": build, "sealed": built.sealed},
            ),
            Figure.make(
                f"rollup.refresh.{runs}",
                f"health rollup refresh sealing the next hour, {tag} runs",
                "s",
                statistics.median(step),
                detail={"ours": step, "sealed": stepped.sealed},
            ),
        ]

    async def spec_health(self) -> dict[str, spec.AgentHealth]:
        async with self.sm() as session:
            return await spec.HealthMonitor(session, EXPECTED).check_all_agents(NOW, list(EXPECTED))

    async def ours_report(self) -> PipelineReport:
        async with self.sm() as session:
            return await build_daily_report(
                session,
                report_date=NOW.date(),
                tz="UTC",
                expected_agents=EXPECTED,
                thresholds=self.thresholds,
                previous=None,
                generated_at=NOW,
            )

    async def spec_report(self) -> spec.PipelineReport:
        async with self.sm() as session:
            return await spec.PipelineReporter(session).generate_daily_report(NOW)

    async def ours_pending(self) -> tuple[set[tuple[int, str, str]], list[float]]:
        """Every page, one session each (as the sweep's activity does); the page times."""
        found: set[tuple[int, str, str]] = set()
        pages: list[float] = []
        cursor = None
        while True:
            began = time.perf_counter()
            async with self.sm() as session:
                page = await find_pending_page(session, cursor, PAGE_SIZE)
            pages.append(time.perf_counter() - began)
            found.update((p.prospect_id, p.from_state, p.to_agent) for p in page.items)
            if page.next_cursor is None:
                return found, pages
            cursor = page.next_cursor

    async def spec_pending(self) -> set[tuple[int, str, str]]:
        async with self.sm() as session:
            pending = await spec.HandoffManager(session).check_pending_handoffs()
        return {(h.prospect_id, h.from_state, h.to_agent) for h in pending}

    # --- figures ------------------------------------------------------------------------------

    async def run(
        self, prospects: int, runs: int, pending: int
    ) -> tuple[list[Figure], list[Check]]:
        figures: list[Figure] = []
        checks: list[Check] = []
        big = runs >= MILLION
        tag = _label(runs)

        figures += await self.build_rollup(runs)
        self.say(f"  health check ({tag} runs): ours")
        ours_m, ours_h = await measure(self.ours_health, self.repeat)
        self.say(f"  health check ({tag} runs): baseline")
        spec_m, spec_h = await measure(self.spec_health, self.baseline_repeat, warmup=False)
        goal = Goal("< 100 ms, ≤ 0.02 (50x)" if big else "< 100 ms", 0.1, 0.02 if big else None)
        figures.append(
            Figure.make(
                f"health.time.{runs}",
                f"health check, {tag} runs",
                "s",
                ours_m.median,
                spec_m.median,
                goal,
                detail={"ours": ours_m.samples, "baseline": spec_m.samples},
            )
        )
        figures.append(
            Figure.make(
                f"health.memory.{runs}",
                f"health check peak memory, {tag} runs",
                "bytes",
                ours_m.peak_bytes,
                spec_m.peak_bytes,
            )
        )
        checks += compare_health(ours_h, spec_h)
        checks += compare_rollup(ours_h, await self.raw_health())

        tag = _label(prospects)
        self.say(f"  daily report ({tag} prospects): ours")
        ours_m, ours_r = await measure(self.ours_report, self.repeat)
        self.say(f"  daily report ({tag} prospects): baseline")
        spec_m, spec_r = await measure(self.spec_report, self.baseline_repeat, warmup=False)
        big = prospects >= MILLION
        goal = Goal("< 2 s, ≤ 0.05 (20x)" if big else "< 2 s", 2.0, 0.05 if big else None)
        figures.append(
            Figure.make(
                f"report.time.{prospects}",
                f"daily report, {tag} prospects",
                "s",
                ours_m.median,
                spec_m.median,
                goal,
                detail={"ours": ours_m.samples, "baseline": spec_m.samples},
            )
        )
        figures.append(
            Figure.make(
                f"report.memory.{prospects}",
                f"daily report peak memory, {tag} prospects",
                "bytes",
                ours_m.peak_bytes,
                spec_m.peak_bytes,
            )
        )
        checks += compare_report(ours_r, spec_r)

        tag = _label(pending)
        self.say(f"  pending handoffs ({tag} pending): ours")
        ours_m, (ours_p, pages) = await measure(self.ours_pending, self.repeat, memory=False)
        self.say(f"  pending handoffs ({tag} pending): baseline")
        spec_m, spec_p = await measure(
            self.spec_pending, self.baseline_repeat, warmup=False, memory=False
        )
        figures.append(
            Figure.make(
                f"pending.time.{pending}",
                f"pending handoffs, {tag} pending, all {len(pages)} pages",
                "s",
                ours_m.median,
                spec_m.median,
                Goal("< 2 s", 2.0),
                detail={
                    "pages": len(pages),
                    "slowest_page": max(pages),
                    "ours": ours_m.samples,
                    "baseline": spec_m.samples,
                },
            )
        )
        checks.append(_check_set(f"pending handoffs ({tag}): same set", ours_p, spec_p))
        checks.append(
            Check(
                f"pending handoffs ({tag}): as many as generated",
                len(ours_p) == pending,
                f"{len(ours_p)} found, {pending} generated",
            )
        )
        return figures, checks


# --- the oracle -----------------------------------------------------------------------------


def _close(a: float, b: float, tol: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def compare_health(ours: list[Any], theirs: dict[str, spec.AgentHealth]) -> list[Check]:
    """Counts, error rates, averages and the last success: what the spec computes right.
    Not the status (the spec's code against its own table; unknown against failing), and not
    the last success when the spec has none in its window (we look further back)."""
    checks = []
    for o in ours:
        t = theirs[o.agent_name]
        wrong = []
        pairs = [
            ("runs", o.runs_last_24h, t.runs_last_24h, 0),
            ("errors", o.errors_last_24h, t.errors_last_24h, 0),
            ("error rate", o.error_rate, t.error_rate, 1e-9),
            ("avg records", o.avg_records_per_run, t.avg_records_per_run, 1e-9),
            # the spec's "last_run_duration_seconds" is the average over successful runs
            ("avg duration", o.avg_run_duration_seconds, t.last_run_duration_seconds, 1e-3),
        ]
        for name, a, b, tol in pairs:
            if not _close(float(a), float(b), tol):
                wrong.append(f"{name}: ours {a} spec {b}")
        if t.last_successful_run is not None and o.last_successful_run != t.last_successful_run:
            wrong.append(f"last success: ours {o.last_successful_run} spec {t.last_successful_run}")
        detail = "; ".join(wrong) or (
            f"{o.runs_last_24h} runs, {o.errors_last_24h} errors; status ours {o.status.value}, "
            f"spec {t.status} (not compared)"
        )
        checks.append(Check(f"health {o.agent_name}: same figures", not wrong, detail))
    return checks


def compare_rollup(ours: list[Any], raw: list[Any]) -> list[Check]:
    """Health read through the rollup against every run aggregated: the same, to rounding."""
    wrong = []
    for o, r in zip(ours, raw, strict=True):
        for name, a in o.model_dump().items():
            b = getattr(r, name)
            same = _close(a, b) if isinstance(a, float) else a == b
            if not same:
                wrong.append(f"{o.agent_name} {name}: rollup {a}, all runs {b}")
    detail = "; ".join(wrong) or f"{len(ours)} agents, every field"
    return [Check("health through the rollup: same as from every run", not wrong, detail)]


def compare_report(ours: PipelineReport, theirs: spec.PipelineReport) -> list[Check]:
    c = ours.counts
    pairs = [
        ("total prospects", ours.total_prospects, theirs.total_prospects),
        ("by status", ours.prospects_by_status, theirs.prospects_by_status),
        ("by tier", ours.prospects_by_tier, theirs.prospects_by_tier),
        ("added", c.added, theirs.prospects_added_24h),
        ("scored", c.scored, theirs.prospects_scored_24h),
        ("researched", c.researched, theirs.prospects_researched_24h),
        ("emails sent", c.emails_sent, theirs.emails_sent_24h),
        ("active sequences", ours.active_sequences, theirs.active_sequences),
        ("sequences completed", c.sequences_completed, theirs.sequences_completed_24h),
        ("agent runs", c.agent_runs, theirs.agent_runs_24h),
        ("agent errors", c.agent_errors, theirs.agent_errors_24h),
    ]
    checks = [
        Check(f"report {name}: same", a == b, "" if a == b else f"ours {a} spec {b}")
        for name, a, b in pairs
    ]
    same = _close(c.response_rate, theirs.response_rate)
    checks.append(
        Check(
            "report response rate: same",
            same,
            f"ours {c.response_rate} spec {theirs.response_rate}",
        )
    )
    return checks


def _check_set(name: str, ours: set[Any], theirs: set[Any]) -> Check:
    if ours == theirs:
        return Check(name, True, f"{len(ours)} each")
    only_ours, only_spec = sorted(ours - theirs)[:5], sorted(theirs - ours)[:5]
    return Check(name, False, f"only ours {only_ours}…, only spec {only_spec}…")
