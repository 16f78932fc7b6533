"""Hand the memory the C allocator keeps, free, back to the system now and then.

Over a long sweep the worker's Python objects and the memory in use through ``malloc`` stay
level, yet its resident size climbs in steps (bench/README.md, figure 6). glibc keeps the
chunks freed after each burst of work (the Temporal core's threads each allocate in an arena
of their own) and resident memory ratchets up to the largest burst so far. ``malloc_trim``
returns those free pages. It is glibc's; elsewhere there is nothing to do and this is a no-op.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from datetime import timedelta

log = logging.getLogger(__name__)


def find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    function = getattr(ctypes.CDLL(name), "malloc_trim", None)
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
