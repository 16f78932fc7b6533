"""Figure 6: the orchestrator worker's memory over one long sweep.

The worker runs as its own process (``orchestrator worker``, as in production, through
``bench.heap_worker``, which also records its Python heap and what ``malloc`` holds) on a task
queue of its own; the stand-in agents answer from the benchmark's process. One sweep hands off
every prospect (it pages, waits for room under ``max_in_flight`` and continues as new by
itself); the worker's resident memory is sampled from ``/proc`` while the handoffs complete.
A third of the way, the agents hold their calls until nine tenths of the in-flight bound is
open (``Burst``): the most work the worker can be given, which fills its workflow cache to
its bound. Flat means: at rest (at most ``QUIET`` handoffs open), the last tenth of the sweep
uses no more than a tenth more memory than the tenth after the burst drained, so nothing grows
with the number of prospects swept. What the burst itself leaves behind is a figure of its
own (after it against the 20-30% stretch before it).
"""

from __future__ import annotations

import asyncio
import ctypes.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from bench.heap_worker import latest_sample
from bench.results import Check, Figure, Goal
from db.models import Handoff, Prospect
from orchestrator.allocator import IMAGE_ENVIRONMENT
from pipeline.handoffs import OPEN_STATUSES
from tests.factories import add, prospect
from tests.outage_support import stop_worker, worker_env
from workflows.cycle import CycleWorkflow
from workflows.types import CycleInput

OFFSET = 20_000_000
"""Prospect ids of the sweep start here, apart from the other Temporal figures'."""
FLAT = 1.10
QUIET = 50
"""Handoffs open at most, for a sample to show the worker between bursts of work."""
SEED_CHUNK = 10_000
ALLOCATORS = ("image", "pymalloc", "jemalloc")
"""How the worker allocates memory: as the image runs it (``IMAGE_ENVIRONMENT``: every Python
object through glibc's ``malloc``), Python's defaults (small objects in its own arenas), or
the image's settings with jemalloc preloaded in place of glibc's ``malloc``."""
JEMALLOC_CONF = "background_thread:true"
"""jemalloc returns freed pages from a thread of its own, not only when the worker allocates."""


def allocator_env(base: dict[str, str], allocator: str) -> dict[str, str]:
    """The worker's environment ``base`` set up for ``allocator``. A clear error where
    jemalloc is not installed."""
    env = {k: v for k, v in base.items() if k not in ("PYTHONMALLOC", "LD_PRELOAD", "MALLOC_CONF")}
    if allocator == "pymalloc":
        return env
    env |= IMAGE_ENVIRONMENT
    if allocator == "jemalloc":
        found = ctypes.util.find_library("jemalloc")
        if found is None:
            raise RuntimeError("jemalloc is not installed (Debian: libjemalloc2)")
        env |= {"LD_PRELOAD": found, "MALLOC_CONF": JEMALLOC_CONF}
    return env


BURST_AT = 0.35
"""How far into the sweep the burst comes: after the 20-30% stretch, well before the last tenth."""
HOLD_AT_MOST = 180.0
"""Seconds the agents hold their calls at most, should the server start handoffs slowly."""


@dataclass
class Burst:
    """Once in the sweep, the stand-in agents hold every call until ``size`` handoffs are open,
    then answer them all: the most work the worker can have in hand at once (its bound is
    ``ORCH_HANDOFFS__MAX_IN_FLIGHT``). A slow server causes such bursts at random; made on
    purpose, every run has one at the same place, and the last tenth shows whether the worker
    gives back what the burst took."""

    gate: asyncio.Event
    """The agents' gate (``FakeAgent.gate``): cleared, every call waits."""
    at: int
    size: int
    held_since: float | None = None
    released_after: float | None = None
    peak_open: int = 0
    drained_at: int | None = None
    """Handed off when, after the burst, at most ``QUIET`` handoffs were open again."""

    def step(self, done: int, open_now: int, now: float) -> str | None:
        """Hold or release the agents; what happened, to say, if anything did."""
        if self.released_after is not None:
            if self.drained_at is None and open_now <= QUIET:
                self.drained_at = done
                return f"    burst: drained at {done:,} handed off"
            return None
        if self.held_since is None:
            if done < self.at:
                return None
            self.gate.clear()
            self.held_since = now
            return f"    burst: the agents hold every call until {self.size:,} handoffs are open"
        self.peak_open = max(self.peak_open, open_now)
        held = now - self.held_since
        if open_now < self.size and held < HOLD_AT_MOST:
            return None
        self.gate.set()
        self.released_after = held
        return f"    burst: {open_now:,} open after {held:.0f} s; the agents answer again"

    def detail(self) -> dict[str, object]:
        return {
            "at": self.at,
            "size": self.size,
            "peak_open": self.peak_open,
            "held_seconds": self.released_after,
            "drained_at": self.drained_at,
        }


def burst_for(gate: asyncio.Event, n: int, max_in_flight: int) -> Burst:
    """A burst of nine tenths of the in-flight bound, or half the sweep if that is smaller."""
    return Burst(gate, at=round(BURST_AT * n), size=max(1, min(max_in_flight * 9 // 10, n // 2)))


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
    """Blocks the worker's Python allocator has live."""
    malloc_mb: float
    """Memory in use through the C allocator (the Temporal core, the drivers)."""
    kept_mb: float
    """Memory the C allocator keeps, free, for later (its high-water mark)."""


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


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used, user and system (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    every: float = 2.0,
) -> list[Sample]:
    began, samples, quiet_since, last = time.perf_counter(), [], time.perf_counter(), -1
    next_say = 0.0
    while True:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}")
        done, open_now = await _progress(sm)
        now = time.perf_counter()
        objects, blocks, malloc_mb, kept_mb = _latest_heap(heap)
        rss = rss_mb(worker.pid)
        samples.append(
            Sample(now - began, done, rss, open_now, objects, blocks, malloc_mb, kept_mb)
        )
        if done >= n:
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
                f"{objects:,} objects"
            )
            next_say += 30
        await asyncio.sleep(every)


async def sweep_memory(
    client: Client,
    url: str,
    sm: async_sessionmaker[AsyncSession],
    n: int,
    burst: Burst,
    say: Callable[[str], None],
    allocator: str = "image",
) -> tuple[list[Figure], list[Check]]:
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
        samples = await _sample_until_done(worker, heap, sm, n, burst, say)
        cpu = cpu_seconds(worker.pid)
    finally:
        stop_worker(worker)
    took = samples[-1].seconds
    spans = stretches(n, burst.drained_at)
    (folder / "samples.jsonl").write_text("".join(json.dumps(asdict(x)) + "\n" for x in samples))
    detail = {
        "peak_mb": max(s.rss_mb for s in samples),
        "peak_open_handoffs": max(s.open for s in samples),
        "seconds": took,
        "worker_cpu_seconds_per_1000": round(cpu / n * 1000, 2),
        "allocator": allocator,
        "burst": burst.detail(),
        "stretches": spans,
        "quiet_at_most_open": QUIET,
        "quiet_samples": {k: len(v) for k, v in _windows(samples, spans, quiet=True).items()},
        "rss_mb_all_samples": _along(samples, spans, "rss_mb", quiet=False),
        "python_blocks": _along(samples, spans, "blocks"),
        "malloc_in_use_mb": _along(samples, spans, "malloc_mb"),
        "malloc_kept_free_mb": _along(samples, spans, "kept_mb"),
        "heap_log": str(heap),
        "samples": str(folder / "samples.jsonl"),
    }
    rss = _along(samples, spans, "rss_mb")
    objects = _along(samples, spans, "objects")
    label = f"worker memory over a sweep of {n:,} prospects"
    figures = [
        _flat("worker.memory", label, "MiB", rss, detail),
        _flat("worker.objects", "worker's Python objects, same sweep", "objects", objects, {}),
        Figure.make(
            "worker.memory.burst",
            f"worker memory after a burst of {burst.peak_open:,} open / before it (≤ {QUIET} open)",
            "MiB",
            rss[AFTER],
            rss[BEFORE],
            other_kind="same worker before the burst",
        ),
    ]
    say(
        f"    worker memory {rss[BEFORE]:.0f} MiB before the burst, {rss[AFTER]:.0f} MiB after it, "
        f"{rss[LAST]:.0f} MiB in the last tenth, with at most {QUIET} handoffs open "
        f"({took:.0f} s; the worker used {cpu:.0f} s of CPU)"
    )
    moved = await _moved(sm)
    check = Check("memory sweep: every prospect handed off once", moved == n, f"{moved:,} of {n:,}")
    return figures, [check]


BEFORE, AFTER, LAST = "20-30%", "the tenth after the burst", "90-100%"


def stretches(n: int, drained_at: int | None) -> dict[str, tuple[int, int]]:
    """Where each stretch of the sweep lies, in handoffs completed: before the burst, the tenth
    after it drained, and the last tenth. The burst fills the worker's workflow cache to its
    bound, so flat is judged from after it; should it never drain, the stretch before it
    stands in (the stricter comparison)."""
    tenth = n // 10
    before = (2 * tenth, 3 * tenth)
    after = (drained_at, drained_at + tenth) if drained_at is not None else before
    return {BEFORE: before, AFTER: after, LAST: (n - tenth, n)}


def _windows(
    samples: list[Sample], spans: dict[str, tuple[int, int]], quiet: bool
) -> dict[str, list[Sample]]:
    """The samples of each stretch of the sweep. Quiet: only those taken with at most
    ``QUIET`` handoffs open, so that the stretches are compared holding the same work; a
    stretch with no quiet sample keeps all of its samples (more work in hand, more memory:
    that can only fail the figure, never pass it)."""
    found = {}
    for name, (low, high) in spans.items():
        window = [s for s in samples if low <= s.done <= high] or samples[-1:]
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
