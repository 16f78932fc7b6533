"""The sweep path of figure 7: the feed stopped, a Temporal Schedule starting the handoffs
sweep every ``period`` seconds (the orchestrator's own schedule with an interval instead of
its cron, overlap skip), and prospects written one per commit, spread over a few periods.

Production sweeps every five minutes; that is measured here at a shorter period to keep the
run short, and computed for five minutes from what was measured. A prospect waits for the
next sweep (uniform over the period: interval schedules fire on multiples of the period since
the epoch) and then for the sweep itself (the schedule firing, the sweep reading the table to
its page, the handoff starting behind the others that sweep found): the *overhead*, which
does not depend on the period."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio.client import Schedule, ScheduleIntervalSpec, ScheduleSpec

from bench.feed_load import count_handed_off, wait_for
from bench.results import percentile
from orchestrator.settings import Settings
from pipeline.modes import CycleMode
from workflows.schedules import HANDOFFS_SCHEDULE_ID, ScheduledCycle, build_schedule

if TYPE_CHECKING:
    from bench.feed_bench import Rig

PRODUCTION_PERIOD = 300.0
"""The handoffs schedule's default cron, every five minutes."""
STEPS = 100
"""Points over the period when combining the wait with the measured overheads."""


@dataclass
class SweepPath:
    period: float
    latencies: list[float] = field(default_factory=list)
    overheads: list[float] = field(default_factory=list)
    """Per prospect, the first call less the next scheduled sweep after its commit."""
    fire_offsets: list[float] = field(default_factory=list)
    """The schedule's recent fire times modulo the period: 0 when aligned as assumed."""

    def expected(self, p: float, period: float = PRODUCTION_PERIOD) -> float:
        """The ``p`` percentile at ``period``: a uniform wait plus a measured overhead."""
        return expected_latency(self.overheads, period, p)

    def detail(self, p: float) -> dict[str, Any]:
        return {
            "period_seconds": self.period,
            "samples": sorted(self.latencies),
            f"overhead_p{p:g}": percentile(self.overheads, p),
            f"computed_at_{PRODUCTION_PERIOD:g}_s_p{p:g}": self.expected(p),
            "fire_offsets": self.fire_offsets,
        }


def expected_latency(overheads: list[float], period: float, p: float) -> float:
    """Percentile ``p`` of wait + overhead, the wait uniform over ``period``."""
    waits = [(i + 0.5) / STEPS * period for i in range(STEPS)]
    return percentile([w + o for w in waits for o in overheads], p)


def interval_schedule(settings: Settings, period: float) -> Schedule:
    """The orchestrator's handoffs schedule, firing every ``period`` seconds."""
    cycle = ScheduledCycle(HANDOFFS_SCHEDULE_ID, CycleMode.HANDOFFS, f"every {period:g} s")
    every = ScheduleIntervalSpec(every=timedelta(seconds=period))
    return replace(build_schedule(cycle, settings), spec=ScheduleSpec(intervals=[every]))


async def sweep_path(rig: Rig, pids: range, period: float, periods: int) -> SweepPath:
    """Write ``pids`` over ``periods`` periods with the schedule on; until all are done."""
    handle = await rig.client.create_schedule(
        HANDOFFS_SCHEDULE_ID, interval_schedule(rig.settings, period)
    )
    try:
        await rig.writer.steady(pids, len(pids) / (period * periods), "identified")

        async def done() -> bool:
            return await count_handed_off(rig.sm, pids.start, pids.stop - 1) >= len(pids)

        await wait_for(done, 2 * period + 120.0, "sweep path")
        actions = (await handle.describe()).info.recent_actions
    finally:
        await handle.delete()
    started = rig.agents["hygiene"].started
    committed = rig.writer.committed
    return SweepPath(
        period=period,
        latencies=[started[pid] - committed[pid] for pid in pids],
        overheads=[started[pid] - next_fire(committed[pid], period) for pid in pids],
        fire_offsets=[a.scheduled_at.timestamp() % period for a in actions],
    )


def next_fire(at: float, period: float) -> float:
    """The first multiple of ``period`` (since the epoch) at or after ``at``."""
    return math.ceil(at / period) * period
