"""The spec's HANDOFF_TRIGGERS as data.

Conditions are declarative (allowed tiers, "needs a contact with an email") rather than
lambdas, so the handoff finder can turn them into SQL and the handoff workflow can check the
same rule again on a freshly read prospect.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel


class HandoffTrigger(BaseModel, frozen=True):
    state: str
    next_agent: str
    tiers: frozenset[str] | None = None
    """When set, only prospects whose tier is one of these are handed off."""
    requires_contact_email: bool = False

    def admits(self, *, tier: str | None, has_contact_email: bool) -> bool:
        if self.tiers is not None and tier not in self.tiers:
            return False
        return has_contact_email or not self.requires_contact_email


HANDOFF_TRIGGERS: Mapping[str, HandoffTrigger] = {
    t.state: t
    for t in (
        HandoffTrigger(state="identified", next_agent="hygiene"),
        HandoffTrigger(state="needs_scoring", next_agent="hygiene"),
        HandoffTrigger(state="scored", next_agent="researcher", tiers=frozenset({"A1", "A2"})),
        HandoffTrigger(state="needs_research", next_agent="researcher"),
        HandoffTrigger(
            state="research_complete",
            next_agent="outreach",
            tiers=frozenset({"A1", "A2", "B"}),
            requires_contact_email=True,
        ),
        HandoffTrigger(state="ready_for_outreach", next_agent="outreach"),
    )
}

HANDED_TO: frozenset[str] = frozenset(t.next_agent for t in HANDOFF_TRIGGERS.values())
"""Agents that receive handoffs, so need a worker (or an endpoint) to be there: not the
prospector, which runs on its own cadence."""
