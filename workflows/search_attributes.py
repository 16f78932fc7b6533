"""Custom search attributes. They must exist on the server before a workflow upserts them:
the dev server registers them at start (``--search-attribute``), tests through the operator
service, production clusters once with ``temporal operator search-attribute create``."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

CYCLE_MODE = SearchAttributeKey.for_keyword("CycleMode")
PROSPECT_ID = SearchAttributeKey.for_keyword("ProspectId")
AGENT_NAME = SearchAttributeKey.for_keyword("AgentName")
HANDOFF_STATUS = SearchAttributeKey.for_keyword("HandoffStatus")

ALL = (CYCLE_MODE, PROSPECT_ID, AGENT_NAME, HANDOFF_STATUS)


def cycle_attributes(mode: str) -> TypedSearchAttributes:
    """What a cycle is tagged with, so the Web UI can filter cycles by mode."""
    return TypedSearchAttributes([SearchAttributePair(CYCLE_MODE, mode)])


def handoff_attributes(prospect_id: int, agent: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(PROSPECT_ID, str(prospect_id)),
            SearchAttributePair(AGENT_NAME, agent),
            SearchAttributePair(HANDOFF_STATUS, "pending"),
        ]
    )
