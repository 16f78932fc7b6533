"""Keep the worker's resident memory close to what it uses, where glibc is the allocator.

Without the image's allocator (jemalloc, with every Python object through ``malloc``: see the
Dockerfile and bench/README.md, figure 6), glibc gives each thread that allocates an arena of
its own and keeps the chunks freed in each. Two arenas let the threads share freed chunks
again, and ``malloc_trim`` now and then hands whole free pages back. Elsewhere (musl, macOS)
these are no-ops.
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


def find_mallctl() -> Callable[..., int] | None:
    """jemalloc's control call where jemalloc is preloaded in place of the C library's
    ``malloc``, else None: ``int mallctl(const char *name, void *oldp, size_t *oldlenp,
    void *newp, size_t newlen)``."""
    function = getattr(ctypes.CDLL(None), "mallctl", None)
    if function is not None:
        function.restype = ctypes.c_int
        function.argtypes = [
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.c_void_p,
            ctypes.c_size_t,
        ]
    return function  # type: ignore[no-any-return]


def jemalloc_loaded() -> bool:
    """Whether ``malloc`` is jemalloc's (preloaded), not the C library's."""
    return find_mallctl() is not None


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
    log.debug(
        "malloc arenas: at most %d%s", arenas, "" if limited else " (refused by the C library)"
    )
    return limited


def tune_worker_memory(arenas: int, *, long_lived: bool = True) -> None:
    """Tune glibc where it is the allocator, and say how the worker allocates: that was chosen
    before the interpreter started, so all a running worker can do is tell.

    Details are DEBUG lines. The one thing to act on, a long-lived worker not run as the
    image runs it, is an INFO line for ``orchestrator worker``; ``orchestrator dev``
    (``long_lived=False``) keeps it at DEBUG, since someone trying the product on a laptop
    has nothing to do about it."""
    jemalloc = jemalloc_loaded()
    if not jemalloc:
        limit_malloc_arenas(arenas)
    python = os.environ.get("PYTHONMALLOC") or "pymalloc"
    through_malloc = python.startswith("malloc")
    if jemalloc and through_malloc:
        log.debug("memory: Python objects through malloc, which is jemalloc (as in the image)")
        return
    log.log(
        logging.INFO if long_lived else logging.DEBUG,
        "memory: Python objects from %s, malloc is %s; a long-lived worker should run as the "
        "image does (README, Worker memory), or a burst of handoffs stays resident",
        python,
        "jemalloc" if jemalloc else "the C library's",
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
