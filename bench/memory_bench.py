"""Figure 6: the orchestrator worker's memory over one long sweep.

The worker runs as its own process (``orchestrator worker``, as in production, through
``bench.heap_worker``, which also records its Python heap and what ``malloc`` holds) on a task
queue of its own; the stand-in agents answer from the benchmark's process. One sweep hands off
every prospect (it pages, waits for room under ``max_in_flight`` and continues as new by
itself); the worker's resident memory is sampled from ``/proc`` while the handoffs complete.
A third of the way, the agents hold their calls until nine tenths of the in-flight bound is
open (``Burst``): the most work the worker can be given, which fills its workflow cache to
its bound. The worker is sampled for up to a minute more once the sweep is done. Flat means:
at rest (at most ``QUIET`` handoffs open), the last tenth of the sweep (that minute included)
uses no more than a tenth more memory than the tenth after the burst drained, so nothing grows
with the number of prospects swept. What the burst itself leaves behind is a figure of its
own (after it against the 20-30% stretch before it).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from bench.cpu_meter import Meter, cpu_seconds, meters, ms_per_handoff, per_handoff
from bench.heap_worker import latest_sample
from bench.memory_rules import (
    AFTER,
    BEFORE,
    FLAT,
    LAST,
    QUIET,
    Allocator,
    Burst,
    allocator_env,
    settle_seconds,
    stretches,
)
from bench.results import Check, Figure, Goal
from db.models import Handoff, Prospect
from pipeline.handoffs import OPEN_STATUSES
from tests.helpers.factories import add, prospect
from tests.helpers.outage import stop_worker, worker_env
from workflows.cycle import CycleWorkflow
from workflows.types import CycleInput

OFFSET = 20_000_000
"""Prospect ids of the sweep start here, apart from the other Temporal figures'."""
SEED_CHUNK = 10_000


@dataclass(frozen=True)
class Sample:
    seconds: float
    done: int
    rss_mb: float
    open: int
    """Handoffs of the sweep begun and not yet finished (bounded by ``max_in_flight``)."""
    objects: int
    """Objects the worker's collector tracks (its latest heap sample; 0 before the first)."""
    blocks: int
    """Blocks Python's own allocator has live (0 when its objects go through ``malloc``)."""
    malloc_mb: float
    """Memory in use through the C allocator: the Temporal core, the drivers, Python's large
    objects, and with ``PYTHONMALLOC=malloc`` (the image) every Python object."""
    kept_mb: float
    """Memory the C allocator keeps, free, for later (its high-water mark)."""
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds each part of the run has used so far (``bench.cpu_meter.meters``)."""


def start_heap_worker(env: dict[str, str], log: Path, heap: Path) -> subprocess.Popen[bytes]:
    """``orchestrator worker``, as in production, plus a record of its Python heap."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.heap_worker", str(heap)],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _latest_heap(heap: Path) -> tuple[int, int, float, float]:
    last: dict[str, Any] | None = latest_sample(heap)
    if last is None:
        return 0, 0, 0.0, 0.0
    native = last.get("malloc") or {}
    mib = 1024 * 1024
    return (
        int(last["objects"]),
        int(last["blocks"]),
        native.get("in_use", 0) / mib,
        native.get("kept_free", 0) / mib,
    )


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
    heap: Path,
    sm: async_sessionmaker[AsyncSession],
    n: int,
    burst: Burst,
    say: Callable[[str], None],
    cpu: dict[str, Meter],
    every: float = 2.0,
) -> list[Sample]:
    began, samples, quiet_since, last = time.perf_counter(), [], time.perf_counter(), -1
    next_say, ended, said_at = 0.0, None, None
    while True:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}")
        done, open_now = await _progress(sm)
        now = time.perf_counter()
        objects, blocks, malloc_mb, kept_mb = _latest_heap(heap)
        rss = rss_mb(worker.pid)
        used = {name: meter() for name, meter in cpu.items()}
        samples.append(
            Sample(now - began, done, rss, open_now, objects, blocks, malloc_mb, kept_mb, used)
        )
        if done >= n:
            ended = now if ended is None else ended
            if now - ended >= settle_seconds(n):
                return samples
        said = burst.step(done, open_now, now)
        if said:
            say(said)
        if done != last or not burst.gate.is_set():  # a held burst is not a stall
            quiet_since, last = now, done
        elif now - quiet_since > 300:
            raise TimeoutError(f"{done:,} of {n:,} handed off, nothing moved for 5 minutes")
        if now - began >= next_say:
            say(
                f"    {done:,} of {n:,} handed off, {open_now:,} open, "
                f"worker {rss:.0f} MiB ({malloc_mb:.0f} in malloc, {kept_mb:.0f} kept free), "
                f"{objects:,} objects{_cpu_since(said_at, samples[-1])}"
            )
            next_say, said_at = next_say + 30, samples[-1]
        await asyncio.sleep(every)


def _cpu_since(earlier: Sample | None, now: Sample) -> str:
    """CPU milliseconds per handoff of each part since the last progress line."""
    spent = ms_per_handoff((earlier.done, earlier.cpu), (now.done, now.cpu)) if earlier else {}
    if not spent:
        return ""
    return "; CPU ms per handoff: " + ", ".join(f"{k} {ms:.0f}" for k, ms in spent.items())


async def sweep_memory(
    client: Client,
    url: str,
    sm: async_sessionmaker[AsyncSession],
    n: int,
    burst: Burst,
    say: Callable[[str], None],
    allocator: Allocator = "image",
    server_marker: str | None = None,
) -> tuple[list[Figure], list[Check]]:
    """``server_marker``: what the Temporal server's command line holds (its database file),
    to tell its CPU time apart."""
    say(f"  memory: one sweep of {n:,} prospects through a worker process (allocator: {allocator})")
    await seed(sm, n, say)
    queue = f"bench-memory-{uuid.uuid4().hex[:8]}"
    folder = Path(tempfile.mkdtemp(prefix="orch-bench-worker-"))
    log, heap = folder / "worker.log", folder / "heap.jsonl"
    env = worker_env(url, client.service_client.config.target_host, queue)
    worker = start_heap_worker(allocator_env(env, allocator), log, heap)
    try:
        await client.start_workflow(
            CycleWorkflow.run,
            CycleInput(mode="handoffs"),
            id=f"bench-memory-sweep-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
        parts = meters(worker.pid, server_marker)
        samples = await _sample_until_done(worker, heap, sm, n, burst, say, parts)
        cpu = cpu_seconds(worker.pid)
    finally:
        stop_worker(worker)
    (folder / "samples.jsonl").write_text("".join(json.dumps(asdict(x)) + "\n" for x in samples))
    figures, rss = sweep_figures(
        samples,
        n,
        burst,
        detail={
            "seconds": samples[-1].seconds,
            "worker_cpu_seconds_per_1000": round(cpu / n * 1000, 2),
            "cpu_ms_per_handoff_by_tenth": per_handoff(
                [(x.done, x.cpu) for x in samples], max(1, n // 10)
            ),
            "allocator": allocator,
            "heap_log": str(heap),
            "samples": str(folder / "samples.jsonl"),
        },
    )
    say(
        f"    worker memory {rss[BEFORE]:.0f} MiB before the burst, {rss[AFTER]:.0f} MiB after it, "
        f"{rss[LAST]:.0f} MiB in the last tenth, with at most {QUIET} handoffs open "
        f"({samples[-1].seconds:.0f} s; the worker used {cpu:.0f} s of CPU)"
    )
    moved = await _moved(sm)
    check = Check("memory sweep: every prospect handed off once", moved == n, f"{moved:,} of {n:,}")
    return figures, [check]


def sweep_figures(
    samples: list[Sample], n: int, burst: Burst, detail: dict[str, object]
) -> tuple[list[Figure], dict[str, float]]:
    """The figures of one sweep, and the resident memory of each stretch."""
    spans = stretches(n, burst.drained_at)
    if all(s.open > QUIET for s in _windows(samples, spans, quiet=True)[AFTER]):
        spans[AFTER] = spans[BEFORE]  # no sample at rest after the burst: the stricter one
    detail = {
        **detail,
        "peak_mb": max(s.rss_mb for s in samples),
        "peak_open_handoffs": max(s.open for s in samples),
        "burst": burst.detail(),
        "stretches": spans,
        "quiet_at_most_open": QUIET,
        "quiet_samples": {k: len(v) for k, v in _windows(samples, spans, quiet=True).items()},
        "rss_mb_all_samples": _along(samples, spans, "rss_mb", quiet=False),
        "python_blocks": _along(samples, spans, "blocks"),
        "malloc_in_use_mb": _along(samples, spans, "malloc_mb"),
        "malloc_kept_free_mb": _along(samples, spans, "kept_mb"),
    }
    rss = _along(samples, spans, "rss_mb")
    objects = _along(samples, spans, "objects")
    every_object = {"all_samples": _along(samples, spans, "objects", quiet=False)}
    label = f"worker memory over a sweep of {n:,} prospects"
    return [
        _flat("worker.memory", label, "MiB", rss, detail),
        _flat(
            "worker.objects",
            "worker's Python objects, same sweep",
            "objects",
            objects,
            every_object,
        ),
        Figure.make(
            "worker.memory.burst",
            f"worker memory after a burst of {burst.peak_open:,} open / before it (≤ {QUIET} open)",
            "MiB",
            None if spans[AFTER] == spans[BEFORE] else rss[AFTER],
            rss[BEFORE],
            other_kind="same worker before the burst",
        ),
    ], rss


def _windows(
    samples: list[Sample], spans: dict[str, tuple[int, int]], quiet: bool
) -> dict[str, list[Sample]]:
    """The samples of each stretch of the sweep. Quiet: only those taken with at most
    ``QUIET`` handoffs open, so that the stretches are compared holding the same work; a
    stretch with no quiet sample keeps all of its samples (more work in hand, more memory: in
    the last tenth that can only fail the figure; the stretch after the burst is replaced by
    the one before it instead). A stretch the samples skipped over (a tiny sweep) is the first
    sample past its start."""
    found = {}
    for name, (low, high) in spans.items():
        past = next((s for s in samples if s.done >= low), samples[-1])
        window = [s for s in samples if low <= s.done <= high] or [past]
        calm = [s for s in window if s.open <= QUIET]
        found[name] = calm if quiet and calm else window
    return found


def _along(
    samples: list[Sample], spans: dict[str, tuple[int, int]], of: str, quiet: bool = True
) -> dict[str, float]:
    """The median of one measure in each stretch of the sweep."""
    windows = _windows(samples, spans, quiet)
    return {name: statistics.median(getattr(s, of) for s in w) for name, w in windows.items()}


def _flat(
    key: str, label: str, unit: str, along: dict[str, float], detail: dict[str, object]
) -> Figure:
    """One measure in the last tenth of the sweep against itself after the burst, both with
    the same few handoffs open."""
    return Figure.make(
        key,
        f"{label} (last tenth / tenth after the burst, ≤ {QUIET} open)",
        unit,
        along[LAST],
        along[AFTER],
        Goal(f"flat (≤ {FLAT:.2f}x)", max_ratio=FLAT),
        other_kind="same worker after the burst",
        detail={**detail, "along": along},
    )


async def _moved(sm: async_sessionmaker[AsyncSession]) -> int:
    query = select(func.count()).where(Prospect.id > OFFSET, Prospect.status == "in_sequence")
    async with sm() as session:
        return int(await session.scalar(query) or 0)
