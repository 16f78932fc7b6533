"""What counts as a state violation, as data: kinds, dwell times, the allowed moves.

Dwell times say how long a prospect may sit in a non-terminal state before it is *stuck*;
they reflect each agent's cadence (hygiene runs often, a sequence lasts weeks).
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel

from pipeline.states import TERMINAL_STATES, TRANSITIONS


class ViolationKind(StrEnum):
    ILLEGAL_TRANSITION = "illegal_transition"
    UNKNOWN_STATE = "unknown_state"
    STUCK = "stuck"
    DROPPED_HANDOFF = "dropped_handoff"
    SCORED_WITHOUT_TIER = "scored_without_tier"
    RESEARCH_WITHOUT_ACTIVITY = "research_without_activity"
    SEQUENCE_WITHOUT_ACTIVE = "in_sequence_no_sequence"
    OUTREACH_WITHOUT_EMAIL = "ready_without_email"


INCONSISTENCIES: frozenset[ViolationKind] = frozenset(
    {
        ViolationKind.SCORED_WITHOUT_TIER,
        ViolationKind.RESEARCH_WITHOUT_ACTIVITY,
        ViolationKind.SEQUENCE_WITHOUT_ACTIVE,
        ViolationKind.OUTREACH_WITHOUT_EMAIL,
    }
)

DEFAULT_DWELL: dict[str, timedelta] = {
    "identified": timedelta(hours=2),
    "needs_scoring": timedelta(hours=2),
    "scored": timedelta(hours=24),
    "needs_research": timedelta(hours=24),
    "research_complete": timedelta(hours=24),
    "ready_for_outreach": timedelta(hours=24),
    "in_sequence": timedelta(days=30),
    "replied": timedelta(days=7),
    "sequence_finished": timedelta(days=30),
    "nurture": timedelta(days=90),
}

ALLOWED_MOVES: tuple[tuple[str, str], ...] = tuple(
    sorted((src, dst) for src, targets in TRANSITIONS.items() for dst in targets)
)


def dwell_times(overrides: dict[str, timedelta] | None = None) -> dict[str, timedelta]:
    """Default dwell times with overrides; terminal states never get stuck."""
    merged = {**DEFAULT_DWELL, **(overrides or {})}
    return {state: d for state, d in merged.items() if state not in TERMINAL_STATES}


class ValidationRules(BaseModel):
    dwell: dict[str, timedelta]
    transition_lookback: timedelta = timedelta(days=7)
    dropped_handoff_grace: timedelta = timedelta(minutes=15)
    alert_threshold: int = 50
    range_size: int = 20_000
