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
    await start_pending(
        client, pending_from_row(row), policy=policy, task_queue=task_queue, why=why, retry=True
    )


async def start_pending(
    client: Client,
    pending: PendingHandoff,
    *,
    policy: HandoffPolicy,
    task_queue: str,
    why: str,
    retry: bool = False,
) -> str:
    """Start the handoff of ``pending``; its workflow id. Raises
    ``WorkflowAlreadyStartedError`` when the prospect has a handoff open."""
    handle = await client.start_workflow(
        HandoffWorkflow.run,
        HandoffInput(pending=pending, policy=policy, retry=retry),
        id=handoff_workflow_id(pending.prospect_id),
        task_queue=task_queue,
        search_attributes=handoff_attributes(pending.prospect_id, pending.to_agent),
        static_summary=f"{why}: {pending.from_state} → {pending.to_agent}, "
        f"prospect {pending.prospect_id}",
    )
    return handle.id
