"""Cycle modes: what a cycle can be asked to do, and which of them exist yet."""

from __future__ import annotations

from enum import StrEnum


class CycleMode(StrEnum):
    MONITOR = "monitor"
    HANDOFFS = "handoffs"
    RESOLVE = "resolve"
    VALIDATE = "validate"
    REPORT = "report"
    FULL = "full"


IMPLEMENTED_MODES: frozenset[CycleMode] = frozenset(
    {CycleMode.MONITOR, CycleMode.HANDOFFS, CycleMode.REPORT, CycleMode.FULL}
)
FULL_ORDER: tuple[CycleMode, ...] = (
    CycleMode.MONITOR,
    CycleMode.HANDOFFS,
    CycleMode.RESOLVE,
    CycleMode.VALIDATE,
    CycleMode.REPORT,
)
"""The steps of a ``full`` cycle, in order; steps not built yet are reported as skipped."""


class UnsupportedModeError(ValueError):
    """A mode that is known but not built yet, or not known at all."""


def parse_mode(value: str) -> CycleMode:
    """Turn user input into a runnable mode, or say exactly why it can't run."""
    try:
        mode = CycleMode(value)
    except ValueError:
        known = ", ".join(m.value for m in CycleMode)
        raise UnsupportedModeError(f"unknown mode {value!r}; known modes: {known}") from None
    if mode not in IMPLEMENTED_MODES:
        ready = ", ".join(sorted(m.value for m in IMPLEMENTED_MODES))
        raise UnsupportedModeError(
            f"mode {mode.value!r} is not available yet; available modes: {ready}"
        )
    return mode
