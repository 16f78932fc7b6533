"""Figure 6's rules, apart from the machinery that runs the sweep: how the worker allocates,
the burst of work made on purpose, and which stretches of the sweep are compared. Pure, so
they are tested without a server (tests/bench/test_bench_burst.py)."""

from __future__ import annotations

import asyncio
import ctypes.util
from dataclasses import dataclass
from typing import Literal

FLAT = 1.10
"""The last tenth may use at most this much more memory than the tenth after the burst."""
QUIET = 50
"""Handoffs open at most, for a sample to show the worker between bursts of work."""

Allocator = Literal["image", "glibc", "pymalloc"]
ALLOCATORS: tuple[Allocator, ...] = ("image", "glibc", "pymalloc")
"""How the worker allocates memory: as the image runs it (``IMAGE_ENVIRONMENT``: every Python
object through ``malloc``, jemalloc's), every Python object through glibc's ``malloc`` (with
the worker's own tuning, two arenas and a trim each minute), or Python's defaults (small
objects in its own arenas, over glibc)."""


IMAGE_ENVIRONMENT = {
    "PYTHONMALLOC": "malloc",
    "LD_PRELOAD": "libjemalloc.so.2",
    "MALLOC_CONF": "background_thread:true",
}
"""What the image sets before the interpreter starts (Dockerfile; a test holds the two
together). Python keeps its small objects in arenas of its own and returns an arena only when
every object in it is gone: after a burst of open handoffs, a few long-lived objects scattered
through the burst's arenas kept it resident for good. With ``PYTHONMALLOC=malloc`` every
object goes through ``malloc``, here jemalloc (Debian's ``libjemalloc2``), which returns free
pages by itself, from a thread of its own, some seconds after they are freed. Measured on the
same sweep, this kept the least after a burst and used the least CPU of the three ways tried
(bench/README.md, figure 6)."""


def allocator_env(base: dict[str, str], allocator: Allocator) -> dict[str, str]:
    """The worker's environment ``base`` set up for ``allocator``. A clear error where
    jemalloc is not installed."""
    env = {k: v for k, v in base.items() if k not in IMAGE_ENVIRONMENT}
    if allocator == "pymalloc":
        return env
    if allocator == "glibc":
        return env | {"PYTHONMALLOC": IMAGE_ENVIRONMENT["PYTHONMALLOC"]}
    if ctypes.util.find_library("jemalloc") is None:
        raise RuntimeError(
            "the image's allocator, jemalloc, is not installed (Debian: libjemalloc2); "
            "or measure another: --worker-malloc glibc"
        )
    return env | IMAGE_ENVIRONMENT


BURST_AT = 0.35
"""How far into the sweep the burst comes: after the 20-30% stretch, well before the last tenth."""
HOLD_AT_MOST = 180.0
"""Seconds the agents hold their calls at most, should the server start handoffs slowly."""


@dataclass
class Burst:
    """Once in the sweep, the stand-in agents hold every call until ``size`` handoffs are open,
    then answer them all: the most work the worker can have in hand at once (its bound is
    ``ORCH_HANDOFFS__MAX_IN_FLIGHT``). A slow server causes such bursts at random; made on
    purpose, every run has one at the same place, and fills the worker's workflow cache to
    its bound before the stretches that judge flat."""

    gate: asyncio.Event
    """The agents' gate (``FakeAgent.gate``): cleared, every call waits."""
    n: int
    """Prospects in the sweep: no more than those not handed off yet can be open."""
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
        if open_now < min(self.size, self.n - done) and held < HOLD_AT_MOST:
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
    size = max(1, min(max_in_flight * 9 // 10, n // 2))
    return Burst(gate, n, at=round(BURST_AT * n), size=size)


def settle_seconds(n: int) -> float:
    """How long the worker is still sampled once every handoff is done: at rest at the end of
    the sweep, as after the burst, even if the server was slow enough near the end to keep
    more than ``QUIET`` handoffs open all through the last tenth. A minute at most; a tiny
    sweep barely waits."""
    return min(60.0, n / 100)


BEFORE, AFTER, LAST = "20-30%", "the tenth after the burst", "90-100%"


def stretches(n: int, drained_at: int | None) -> dict[str, tuple[int, int]]:
    """Where each stretch of the sweep lies, in handoffs completed: before the burst, the tenth
    after it drained, and the last tenth. The burst fills the worker's workflow cache to its
    bound, so flat is judged from after it. Should it drain too late for a tenth to fit before
    the last one, or never, the stretch before it stands in: the stricter comparison, never a
    stretch measured against itself."""
    tenth = n // 10
    before, last = (2 * tenth, 3 * tenth), (n - tenth, n)
    if drained_at is None or drained_at + tenth > last[0]:
        return {BEFORE: before, AFTER: before, LAST: last}
    return {BEFORE: before, AFTER: (drained_at, drained_at + tenth), LAST: last}
