"""The worker's allocator settings: threads share few arenas, free pages go back to the
system (glibc), and Python objects through malloc let a burst go."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bench.memory_rules import IMAGE_ENVIRONMENT
from orchestrator.allocator import (
    find_malloc_trim,
    trim_memory_every,
    tune_worker_memory,
)
from orchestrator.settings import Settings

CHUNK, CHUNKS, KEEP_EVERY = 1000, 200_000, 64
JEMALLOC = ctypes.util.find_library("jemalloc") is not None

pytestmark = pytest.mark.skipif(find_malloc_trim() is None, reason="needs glibc's malloc_trim")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def fragment_the_heap() -> list[int]:
    """About 190 MiB malloc'd in small chunks and freed again, except one chunk in 64 that
    stays in use, so the heap's top cannot simply shrink: the shape a burst of work leaves
    behind. Returns the chunks still held."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    chunks = [libc.malloc(CHUNK) for _ in range(CHUNKS)]
    for address in chunks:
        ctypes.memset(address, 1, CHUNK)  # touch the pages, so they are resident
    for i, address in enumerate(chunks):
        if i % KEEP_EVERY:
            libc.free(address)
    return [a for i, a in enumerate(chunks) if i % KEEP_EVERY == 0]


def release(chunks: list[int]) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.free.argtypes = [ctypes.c_void_p]
    for address in chunks:
        libc.free(address)


async def test_trimming_returns_memory_freed_between_chunks_still_in_use() -> None:
    held = fragment_the_heap()
    try:
        before = rss_mib()
        stop = asyncio.Event()
        trimming = asyncio.create_task(trim_memory_every(timedelta(milliseconds=50), stop))
        await asyncio.sleep(0.3)
        stop.set()
        assert await trimming >= 1
        assert before - rss_mib() > 100, (before, rss_mib())
    finally:
        release(held)


async def test_a_zero_interval_never_trims() -> None:
    stop = asyncio.Event()
    stop.set()
    assert await trim_memory_every(timedelta(0), stop) == 0


async def test_trimming_stops_when_the_worker_stops() -> None:
    stop = asyncio.Event()
    trimming = asyncio.create_task(trim_memory_every(timedelta(minutes=1), stop))
    await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(trimming, 2) == 0


def test_the_allocator_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_WORKER__MEMORY_TRIM_INTERVAL", "PT0S")
    assert Settings().worker.memory_trim_interval == timedelta(0)
    monkeypatch.setenv("ORCH_WORKER__MEMORY_TRIM_INTERVAL", "-PT1S")
    with pytest.raises(ValueError, match="memory_trim_interval"):
        Settings()
    monkeypatch.delenv("ORCH_WORKER__MEMORY_TRIM_INTERVAL")
    monkeypatch.setenv("ORCH_WORKER__MALLOC_ARENAS", "0")
    assert Settings().worker.malloc_arenas == 0
    monkeypatch.setenv("ORCH_WORKER__MALLOC_ARENAS", "-1")
    with pytest.raises(ValueError, match="malloc_arenas"):
        Settings()


THREADS_THAT_ALLOCATE = """
import ctypes, ctypes.util, sys, threading
from orchestrator.allocator import limit_malloc_arenas
limit_malloc_arenas(int(sys.argv[1]))
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
together = threading.Barrier(4)
def allocate():
    for _ in range(1000):
        libc.malloc(100)
    together.wait()  # all four hold their arena at once (an exited thread's is reused)
threads = [threading.Thread(target=allocate) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
libc.malloc_stats()  # one "Arena N:" paragraph per arena, on stderr
"""


def arenas_used(limit: int, environment: str | None = None) -> int:
    """Arenas a process with four allocating threads ends up with, the limit set in code
    (and ``MALLOC_ARENA_MAX`` set to ``environment``, if given)."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    if environment is not None:
        env["MALLOC_ARENA_MAX"] = environment
    command = [sys.executable, "-c", THREADS_THAT_ALLOCATE, str(limit)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines())


def test_threads_share_the_arenas_the_limit_allows() -> None:
    assert arenas_used(0) > 1  # glibc's default: a new arena for each thread that allocates
    assert arenas_used(1) == 1


def test_malloc_arena_max_in_the_environment_wins() -> None:
    assert arenas_used(1, environment="3") == 3


SCATTERED_SURVIVORS = """
import ctypes, ctypes.util, gc, os
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
base = rss()
burst = [str(i) * 3 for i in range(2_000_000)]
peak = rss() - base
survivors = burst[::250]  # a few objects of the burst live on, spread through it
del burst
gc.collect()
ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
print(peak, rss() - base)
"""


def resident_after_a_burst(environment: dict[str, str]) -> tuple[int, int]:
    """Resident bytes a child Python grew by at the peak of a burst of small objects, and
    what it still holds once all but one in 250 are gone and memory was trimmed."""
    env = {k: v for k, v in os.environ.items() if k not in IMAGE_ENVIRONMENT} | environment
    command = [sys.executable, "-c", SCATTERED_SURVIVORS]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    peak, after = map(int, done.stdout.split())
    return peak, after


def test_python_objects_through_malloc_give_back_a_burst_that_pymalloc_keeps() -> None:
    peak, kept = resident_after_a_burst({})
    assert peak > 100 * 2**20 and kept > peak * 0.6  # an arena stays while one object lives
    peak, kept = resident_after_a_burst({"PYTHONMALLOC": "malloc"})
    assert peak > 100 * 2**20 and kept < peak * 0.35  # only the pages with a survivor stay


def test_the_worker_says_how_it_allocates(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.allocator")
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    tune_worker_memory(0)
    assert "Python objects from pymalloc, malloc is the C library's" in caplog.text
    assert "should run as the image does" in caplog.text


def test_the_dev_stack_keeps_allocator_details_at_debug(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    caplog.set_level(logging.DEBUG, logger="orchestrator.allocator")
    tune_worker_memory(2, long_lived=False)
    assert {r.levelname for r in caplog.records} == {"DEBUG"}, caplog.text
    assert "malloc arenas: at most 2" in caplog.text
    assert "Python objects from pymalloc" in caplog.text


@pytest.mark.skipif(not JEMALLOC, reason="needs Debian's libjemalloc2 (CI installs it)")
def test_a_worker_run_as_the_image_says_so() -> None:
    script = (
        "import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stdout); "
        "from orchestrator.allocator import tune_worker_memory; tune_worker_memory(2)"
    )
    env = os.environ | IMAGE_ENVIRONMENT
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "through malloc, which is jemalloc" in done.stdout
    assert "arenas" not in done.stdout  # glibc's tuning is left alone under jemalloc
