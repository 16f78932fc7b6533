"""The worker's memory trim hands freed ``malloc`` memory back to the system (glibc)."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.memory_trim import find_malloc_trim, trim_memory_every
from orchestrator.settings import Settings

CHUNK, CHUNKS, KEEP_EVERY = 1000, 200_000, 64

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


def test_the_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_WORKER__MEMORY_TRIM_INTERVAL", "PT0S")
    assert Settings().worker.memory_trim_interval == timedelta(0)
    monkeypatch.setenv("ORCH_WORKER__MEMORY_TRIM_INTERVAL", "-PT1S")
    with pytest.raises(ValueError, match="memory_trim_interval"):
        Settings()
