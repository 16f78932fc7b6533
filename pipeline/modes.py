"""Cycle modes: what a cycle can be asked to do, and the order of a full cycle."""

from __future__ import annotations

from enum import StrEnum


class CycleMode(StrEnum):
    MONITOR = "monitor"
    HANDOFFS = "handoffs"
    RESOLVE = "resolve"
    VALIDATE = "validate"
    REPORT = "report"
    FULL = "full"
    HOUSEKEEPING = "housekeeping"
    """Retention deletes: run on its own daily Schedule, never as part of ``full``."""


FULL_ORDER: tuple[CycleMode, ...] = (
    CycleMode.MONITOR,
    CycleMode.HANDOFFS,
    CycleMode.RESOLVE,
    CycleMode.VALIDATE,
    CycleMode.REPORT,
)
"""The steps of a ``full`` cycle, in order."""


class UnsupportedModeError(ValueError):
    """A mode that is not one of ``CycleMode``."""


def parse_mode(value: str) -> CycleMode:
    """Turn user input into a runnable mode, or say exactly why it can't run."""
    try:
        mode = CycleMode(value)
    except ValueError:
        known = ", ".join(m.value for m in CycleMode)
        raise UnsupportedModeError(f"unknown mode {value!r}; known modes: {known}") from None
    return mode
