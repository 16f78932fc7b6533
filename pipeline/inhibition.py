"""Which alerts inhibit which, as data (Alertmanager's inhibition, per agent).

When an agent is already known to be in trouble (its health alert is open, its circuit is
open, an operator paused it), the per-prospect alerts that trouble causes say nothing new:
they are held back, counted on the agent's alert, and judged again once the agent recovers.
A rule matches on the agent: a source and a target must name the same agent.
"""

from __future__ import annotations

from pydantic import BaseModel

AGENT_HEALTH = "agent_health"
STALLED_HANDOFF = "stalled_handoff"
AGENT_NO_WORKER = "agent_no_worker"
PAUSED, CIRCUIT_OPEN = "paused", "circuit_open"
"""Agent controls that inhibit like an open alert does."""


class InhibitRule(BaseModel):
    """While a source holds for an agent, alerts of ``targets`` for that agent are held."""

    sources: frozenset[str]
    """Alert kinds whose open alert for the agent inhibits."""
    controls: frozenset[str] = frozenset()
    """Agent controls (``paused``, ``circuit_open``) that inhibit as well."""
    targets: frozenset[str]


INHIBIT_RULES: tuple[InhibitRule, ...] = (
    InhibitRule(
        sources=frozenset({AGENT_HEALTH}),
        controls=frozenset({PAUSED, CIRCUIT_OPEN}),
        targets=frozenset({STALLED_HANDOFF, AGENT_NO_WORKER}),
    ),
    InhibitRule(sources=frozenset({AGENT_NO_WORKER}), targets=frozenset({STALLED_HANDOFF})),
)

SOURCE_KINDS: frozenset[str] = frozenset(k for r in INHIBIT_RULES for k in r.sources)
"""Kinds whose alerts may hold others (and so count what they hold)."""


def source_kinds(target: str, rules: tuple[InhibitRule, ...] = INHIBIT_RULES) -> list[str]:
    """Alert kinds that inhibit ``target``, strongest rule first."""
    return [k for r in rules if target in r.targets for k in sorted(r.sources)]


def inhibiting_controls(target: str, rules: tuple[InhibitRule, ...] = INHIBIT_RULES) -> set[str]:
    return {c for r in rules if target in r.targets for c in r.controls}


def is_inhibitable(kind: str, rules: tuple[InhibitRule, ...] = INHIBIT_RULES) -> bool:
    return any(kind in r.targets for r in rules)


def control_hold(control: str, agent: str) -> str:
    """``held_by`` for an alert held by an agent's control rather than by an alert."""
    return f"{control}:{agent}"
