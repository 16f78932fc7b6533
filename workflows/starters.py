"""Starting workflows from outside a workflow, once for everyone: the API, the CLI, the workers
and the simulation start a cycle, a handoff or the feed here, and build Web UI links here."""

from __future__ import annotations

import uuid
from urllib.parse import quote

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from orchestrator.settings import TemporalSettings
from pipeline.handoffs import (
    FEED_NUDGE,
    HandoffPolicy,
    PendingHandoff,
    feed_workflow_id,
    handoff_workflow_id,
)
from workflows.cycle import CycleWorkflow
from workflows.feed import FeedWorkflow
from workflows.handoff import HandoffWorkflow
from workflows.handoff_types import HandoffInput
from workflows.search_attributes import cycle_attributes, handoff_attributes
from workflows.types import CycleInput, CycleSummary, FeedInput

FEED_SUMMARY = "change feed: hands prospects off as they enter a trigger state"


def web_ui_url(temporal: TemporalSettings, workflow_id: str | None = None) -> str:
    """The Web UI's list of this namespace's workflows, or one workflow's page."""
    base = temporal.web_ui_url.rstrip("/")
    workflows = f"{base}/namespaces/{quote(temporal.namespace, safe='')}/workflows"
    return f"{workflows}/{quote(workflow_id, safe='')}" if workflow_id else workflows


async def start_cycle(
    client: Client, task_queue: str, input: CycleInput, *, started_by: str, summary: str
) -> WorkflowHandle[CycleWorkflow, CycleSummary]:
    """Start a cycle now; its id says what it is and who asked (``cycle-<mode>-<by>-…``)."""
    return await client.start_workflow(
        CycleWorkflow.run,
        input,
        id=f"cycle-{input.mode}-{started_by}-{uuid.uuid4().hex[:12]}",
        task_queue=task_queue,
        search_attributes=cycle_attributes(input.mode),
        static_summary=summary,
    )


async def start_handoff(
    client: Client,
    pending: PendingHandoff,
    *,
    policy: HandoffPolicy,
    task_queue: str,
    why: str,
    retry: bool = False,
) -> str:
    """Start the handoff of ``pending``; its workflow id. Raises
    ``WorkflowAlreadyStartedError`` when the prospect has a handoff open; ``retry`` lets it
    take over a failed or abandoned claim of the same state entry."""
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


async def ensure_feed(client: Client, task_queue: str) -> WorkflowHandle[FeedWorkflow, None]:
    """The running feed, started if it is not (idempotent: every worker calls this)."""
    return await client.start_workflow(
        FeedWorkflow.run,
        FeedInput(),
        id=feed_workflow_id(task_queue),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary=FEED_SUMMARY,
    )


async def nudge_feed(client: Client, task_queue: str) -> None:
    """Wake the feed now, starting it if it is not running (signal-with-start)."""
    await client.start_workflow(
        FeedWorkflow.run,
        FeedInput(),
        id=feed_workflow_id(task_queue),
        task_queue=task_queue,
        start_signal=FEED_NUDGE,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary=FEED_SUMMARY,
    )
