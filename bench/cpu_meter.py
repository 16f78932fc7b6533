"""CPU time of each part of a benchmark run, read from Linux ``/proc``.

The sweep of figure 6 shares two cores between the worker, the Temporal server, PostgreSQL
and the benchmark's own process (the stand-in agents). When the sweep slows, the CPU each
part spent per handoff says which of them slowed it.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Iterator
from pathlib import Path

Meter = Callable[[], float]
Reading = tuple[int, dict[str, float]]
"""Handoffs done, and the CPU seconds each part had used by then."""


def cpu_seconds(pid: int, reaped: bool = False) -> float:
    """CPU time a process has used, user and system; 0 once it is gone. ``reaped`` adds
    that of its children it has waited for (a postmaster's backends that have exited)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11 : 15 if reaped else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def _processes() -> Iterator[Path]:
    return (p for p in Path("/proc").iterdir() if p.name.isdigit())


def _owner(proc: Path) -> int | None:
    try:
        return proc.stat().st_uid
    except FileNotFoundError:
        return None


def _cmdline(proc: Path) -> str:
    try:
        return proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def pids_with(fragment: str) -> list[int]:
    """Processes whose command line contains ``fragment``."""
    return [int(p.name) for p in _processes() if fragment in _cmdline(p)]


def owned_by(user: str) -> Meter:
    """CPU of every process of ``user`` (a local PostgreSQL): the live ones and the exited
    children they reaped, so backends that come and go with the pool still count. 0 when
    there is no such user."""
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return lambda: 0.0
    return lambda: sum(
        cpu_seconds(int(p.name), reaped=True) for p in _processes() if _owner(p) == uid
    )


def of_pids(pids: list[int]) -> Meter:
    return lambda: sum(cpu_seconds(pid) for pid in pids)


def meters(worker_pid: int, server_marker: str | None) -> dict[str, Meter]:
    """The parts of a sweep: the worker, the Temporal server (the process whose command line
    holds ``server_marker``, its database file), a local PostgreSQL and this process."""
    found = pids_with(server_marker) if server_marker else []
    parts = {
        "worker": of_pids([worker_pid]),
        "bench": of_pids([os.getpid()]),
        "postgres": owned_by("postgres"),
    }
    if found:
        parts["temporal"] = of_pids(found)
    return parts


def ms_per_handoff(earlier: Reading, later: Reading) -> dict[str, float]:
    """CPU milliseconds per handoff each part spent between two readings (none moved: {})."""
    moved = later[0] - earlier[0]
    if moved <= 0:
        return {}
    return {k: (used - earlier[1].get(k, 0.0)) * 1000 / moved for k, used in later[1].items()}


def per_handoff(readings: list[Reading], every: int) -> list[dict[str, float | int]]:
    """CPU milliseconds per handoff of each part, for each stretch of ``every`` handoffs
    (``readings``: handoffs done and the cumulative CPU seconds of each part at that moment).
    What is left at the end counts as a stretch of its own if it is at least half of one; it
    ends where the last handoff was done, so time spent at rest afterwards is not counted."""
    if not readings:
        return []
    last = max(done for done, _ in readings)
    ends = [r for r in readings if r[0] < last] + [next(r for r in readings if r[0] == last)]
    rows: list[dict[str, float | int]] = []
    start = ends[0]
    for reading in ends[1:]:
        moved = reading[0] - start[0]
        if moved < every and not (reading[0] == last and moved * 2 >= every):
            continue
        row: dict[str, float | int] = {"through": reading[0]}
        row.update({k: round(ms, 2) for k, ms in ms_per_handoff(start, reading).items()})
        rows.append(row)
        start = reading
    return rows
