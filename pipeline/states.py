"""Prospect states and the transitions the pipeline allows (DESIGN.md, "Prospect states")."""

from __future__ import annotations

from collections.abc import Mapping

TRANSITIONS: Mapping[str, frozenset[str]] = {
    "identified": frozenset({"needs_scoring", "scored", "disqualified"}),
    "needs_scoring": frozenset({"scored", "disqualified"}),
    "scored": frozenset(
        {
            "needs_research",
            "research_complete",
            "ready_for_outreach",
            "nurture",
            "disqualified",
            "needs_scoring",
        }
    ),
    "needs_research": frozenset({"research_complete", "disqualified"}),
    "research_complete": frozenset(
        {"ready_for_outreach", "in_sequence", "nurture", "disqualified", "needs_scoring"}
    ),
    "ready_for_outreach": frozenset({"in_sequence", "disqualified"}),
    "in_sequence": frozenset({"replied", "sequence_finished", "disqualified"}),
    "replied": frozenset({"meeting_booked", "closed_lost", "nurture"}),
    "sequence_finished": frozenset({"nurture", "closed_lost"}),
    "nurture": frozenset({"needs_scoring"}),
    "meeting_booked": frozenset(),
    "closed_lost": frozenset(),
    "disqualified": frozenset(),
}

TERMINAL_STATES: frozenset[str] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
KNOWN_STATES: frozenset[str] = frozenset(TRANSITIONS)

TIERS: tuple[str, ...] = ("A1", "A2", "B", "C", "D")


def is_known(state: str) -> bool:
    return state in TRANSITIONS


def is_allowed(from_state: str, to_state: str) -> bool:
    """A move is allowed only between known states along an edge of the graph."""
    return to_state in TRANSITIONS.get(from_state, frozenset())
