"""Keep the worker's resident memory close to what it uses: glibc's ``malloc`` tuned for a
long-lived, many-threaded process.

Over a long sweep the worker's Python objects and the memory in use through ``malloc`` stay
level, yet its resident size climbed in steps (bench/README.md, figure 6): glibc gives each
thread that allocates an arena of its own (up to eight per core), the SDK runs workflow code
on a pool of threads and the Temporal core on its own, and every arena keeps the chunks freed
after a burst of work, fragmented among live ones. Two arenas let the threads share those
chunks again, and ``malloc_trim`` now and then hands whole free pages back. Both are glibc's;
elsewhere (musl, macOS) there is nothing to do and these are no-ops.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable
from datetime import timedelta

log = logging.getLogger(__name__)

IMAGE_ENVIRONMENT = {"PYTHONMALLOC": "malloc"}
"""What the image sets before the interpreter starts (Dockerfile; a test holds the two
together). Python keeps its small objects in arenas of its own and returns an arena only when
every object in it is gone: after a burst of open handoffs, a few long-lived objects scattered
through the burst's arenas kept about 60 MiB resident for good (bench/README.md, figure 6).
Through ``malloc`` those objects share glibc's chunks, whose free pages the trim hands back."""

M_ARENA_MAX = -8
"""``mallopt``'s parameter for the most arenas glibc creates (malloc.h)."""


def c_library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def limit_malloc_arenas(arenas: int) -> bool:
    """At most ``arenas`` malloc arenas from now on (0: glibc's own limit); whether it was
    set. Call it first thing, before the threads start: a thread keeps the arena it got.
    ``MALLOC_ARENA_MAX`` in the environment, read by glibc at start, wins."""
    libc = c_library()
    mallopt = getattr(libc, "mallopt", None)
    if arenas <= 0 or mallopt is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    limited = bool(mallopt(M_ARENA_MAX, arenas))
    log.info(
        "malloc arenas: at most %d%s", arenas, "" if limited else " (refused by the C library)"
    )
    return limited


def tune_worker_memory(arenas: int) -> None:
    """Limit the arenas, and say how Python allocates its objects: the interpreter chose that
    at start, from ``PYTHONMALLOC``, so all a running worker can do is tell."""
    limit_malloc_arenas(arenas)
    allocator = os.environ.get("PYTHONMALLOC") or "pymalloc"
    if allocator == IMAGE_ENVIRONMENT["PYTHONMALLOC"]:
        log.info("Python objects through malloc (PYTHONMALLOC=%s)", allocator)
    else:
        log.info(
            "Python objects from %s; a long-lived worker should run with PYTHONMALLOC=malloc "
            "(the image does), or a burst of handoffs stays resident",
            allocator,
        )


def find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    function = getattr(c_library(), "malloc_trim", None)
    if function is None:
        return None
    function.argtypes, function.restype = [ctypes.c_size_t], ctypes.c_int
    return function  # type: ignore[no-any-return]


async def trim_memory_every(interval: timedelta, stop: asyncio.Event) -> int:
    """Trim once per ``interval`` until ``stop`` is set; how many times it trimmed. A zero
    interval, or a C library without ``malloc_trim``, does nothing."""
    trim = find_malloc_trim()
    if trim is None or interval <= timedelta(0):
        return 0
    trimmed = 0
    while not await _stopped_within(stop, interval.total_seconds()):
        # ctypes drops the GIL for the call; a thread keeps the event loop free meanwhile
        await asyncio.to_thread(trim, 0)
        trimmed += 1
    log.debug("memory trimmed %d times", trimmed)
    return trimmed


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
