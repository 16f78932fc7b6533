"""Starting a handoff workflow from outside a workflow (the API's retry, conflict recovery)."""

from __future__ import annotations

from temporalio.client import Client

from db.models import Handoff
from pipeline.handoffs import HandoffPolicy, PendingHandoff, handoff_workflow_id
from workflows.handoff import HandoffInput, HandoffWorkflow
from workflows.search_attributes import handoff_attributes


def pending_from_row(row: Handoff) -> PendingHandoff:
    return PendingHandoff(
        prospect_id=row.prospect_id, from_state=row.from_state,
        state_entered_at=row.state_entered_at, to_agent=row.to_agent,
    )  # fmt: skip


async def start_handoff(
    client: Client, row: Handoff, *, policy: HandoffPolicy, task_queue: str, why: str
) -> None:
    """Run a ledger row's handoff again; raises ``WorkflowAlreadyStartedError`` when the
    prospect has a handoff open. ``retry`` lets it take over a failed or abandoned claim."""
    await client.start_workflow(
        HandoffWorkflow.run,
        HandoffInput(pending=pending_from_row(row), policy=policy, retry=True),
        id=handoff_workflow_id(row.prospect_id),
        task_queue=task_queue,
        search_attributes=handoff_attributes(row.prospect_id, row.to_agent),
        static_summary=f"{why}: {row.from_state} → {row.to_agent}, prospect {row.prospect_id}",
    )
