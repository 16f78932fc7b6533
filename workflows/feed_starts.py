"""Starting and nudging the change feed from outside a workflow (workers, the API)."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from pipeline.handoffs import FEED_NUDGE, feed_workflow_id
from workflows.feed import FeedWorkflow
from workflows.types import FeedInput

SUMMARY = "change feed: hands prospects off as they enter a trigger state"


async def ensure_feed(client: Client, task_queue: str) -> WorkflowHandle[FeedWorkflow, None]:
    """The running feed, started if it is not (idempotent: every worker calls this)."""
    return await client.start_workflow(
        FeedWorkflow.run,
        FeedInput(),
        id=feed_workflow_id(task_queue),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary=SUMMARY,
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
        static_summary=SUMMARY,
    )
