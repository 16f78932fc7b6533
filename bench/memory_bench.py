"""Figure 6: the orchestrator worker's memory over one long sweep.

The worker runs as its own process (``orchestrator worker``, as in production) on a task queue
of its own; the stand-in agents answer from the benchmark's process. One sweep hands off every
prospect (it pages, waits for room under ``max_in_flight`` and continues as new by itself);
the worker's resident memory is sampled from ``/proc`` while the handoffs complete. Flat
means: the last tenth of the sweep uses no more than a tenth more memory than the stretch
after the workflow cache has filled (20 to 30% of the way), so nothing grows with the number
of prospects swept.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from bench.results import Check, Figure, Goal
from db.models import Handoff, Prospect
from pipeline.handoffs import OPEN_STATUSES
from tests.factories import add, prospect
from tests.outage_support import start_worker, stop_worker, worker_env
from workflows.cycle import CycleWorkflow
from workflows.types import CycleInput

OFFSET = 20_000_000
"""Prospect ids of the sweep start here, apart from the other Temporal figures'."""
FLAT = 1.10
SEED_CHUNK = 10_000


@dataclass(frozen=True)
class Sample:
    seconds: float
    done: int
    rss_mb: float
    open: int
    """Handoffs of the sweep begun and not yet finished (bounded by ``max_in_flight``)."""


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux ``/proc``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def seed(sm: async_sessionmaker[AsyncSession], n: int, say: Callable[[str], None]) -> None:
    """``n`` prospects ready for outreach: one handoff each. Prospects first, then contacts,
    so each chunk is two inserts."""
    for first in range(0, n, SEED_CHUNK):
        rows: list[object] = []
        for pid in range(OFFSET + first + 1, OFFSET + min(first + SEED_CHUNK, n) + 1):
            rows += prospect("ready_for_outreach", tier="A1", pid=pid)
        rows.sort(key=lambda row: not isinstance(row, Prospect))
        await add(sm, *rows)
        say(f"    seeded {min(first + SEED_CHUNK, n):,} of {n:,}")


async def _progress(sm: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """Handoffs of the sweep completed, and open."""
    is_open = Handoff.status.in_(sorted(s.value for s in OPEN_STATUSES))
    query = select(
        func.count().filter(Handoff.status == "completed"), func.count().filter(is_open)
    ).where(Handoff.prospect_id > OFFSET)
    async with sm() as session:
        done, open_now = (await session.execute(query)).one()
    return int(done), int(open_now)


async def _sample_until_done(
    worker: subprocess.Popen[bytes],
    sm: async_sessionmaker[AsyncSession],
    n: int,
    say: Callable[[str], None],
    every: float = 2.0,
) -> list[Sample]:
    began, samples, quiet_since, last = time.perf_counter(), [], time.perf_counter(), -1
    next_say = 0.0
    while True:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}")
        done, open_now = await _progress(sm)
        now = time.perf_counter()
        samples.append(Sample(now - began, done, rss_mb(worker.pid), open_now))
        if done >= n:
            return samples
        if done != last:
            quiet_since, last = now, done
        elif now - quiet_since > 300:
            raise TimeoutError(f"{done:,} of {n:,} handed off, nothing moved for 5 minutes")
        if now - began >= next_say:
            say(
                f"    {done:,} of {n:,} handed off, {open_now:,} open, "
                f"worker {samples[-1].rss_mb:.0f} MiB"
            )
            next_say += 30
        await asyncio.sleep(every)


def _median_rss(samples: list[Sample], n: int, low: float, high: float) -> float:
    window = [s.rss_mb for s in samples if low * n <= s.done <= high * n]
    return statistics.median(window) if window else samples[-1].rss_mb


async def sweep_memory(
    client: Client,
    url: str,
    sm: async_sessionmaker[AsyncSession],
    n: int,
    say: Callable[[str], None],
) -> tuple[list[Figure], list[Check]]:
    say(f"  memory: one sweep of {n:,} prospects through a worker process")
    await seed(sm, n, say)
    queue = f"bench-memory-{uuid.uuid4().hex[:8]}"
    log = Path(tempfile.mkdtemp(prefix="orch-bench-worker-")) / "worker.log"
    worker = start_worker(worker_env(url, client.service_client.config.target_host, queue), log)
    try:
        await client.start_workflow(
            CycleWorkflow.run,
            CycleInput(mode="handoffs"),
            id=f"bench-memory-sweep-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
        samples = await _sample_until_done(worker, sm, n, say)
    finally:
        stop_worker(worker)
    settled = _median_rss(samples, n, 0.2, 0.3)
    last = _median_rss(samples, n, 0.9, 1.0)
    took = samples[-1].seconds
    say(f"    worker memory {settled:.0f} MiB at 20-30%, {last:.0f} MiB at 90-100% ({took:.0f} s)")
    detail = {
        "peak_mb": max(s.rss_mb for s in samples),
        "peak_open_handoffs": max(s.open for s in samples),
        "seconds": took,
        "at": {f"{q}%": _median_rss(samples, n, q / 100 - 0.02, q / 100) for q in (10, 50, 100)},
    }
    figure = Figure.make(
        "worker.memory",
        f"worker memory over a sweep of {n:,} prospects (last tenth / 20-30%)",
        "MiB",
        last,
        settled,
        Goal(f"flat (≤ {FLAT:.2f}x)", max_ratio=FLAT),
        other_kind="same worker at 20-30%",
        detail=detail,
    )
    moved = await _moved(sm)
    check = Check("memory sweep: every prospect handed off once", moved == n, f"{moved:,} of {n:,}")
    return [figure], [check]


async def _moved(sm: async_sessionmaker[AsyncSession]) -> int:
    query = select(func.count()).where(Prospect.id > OFFSET, Prospect.status == "in_sequence")
    async with sm() as session:
        return int(await session.scalar(query) or 0)
