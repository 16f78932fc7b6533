"""The change feed from the API: waking it after an ingested run, and reading its state."""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.client import Client, WorkflowQueryRejectedError
from temporalio.service import RPCError, RPCStatusCode

from api.temporal import TemporalGateway, TemporalUnavailable
from orchestrator.settings import Settings
from pipeline.handoffs import FEED_NUDGE, feed_workflow_id
from workflows.feed import FeedWorkflow
from workflows.types import FeedState

log = logging.getLogger(__name__)


async def nudge_feed_quietly(gateway: TemporalGateway, settings: Settings) -> None:
    """Signal the feed to look now. It is a hint, never a failure: with the feed off, not
    running (the workers start it) or Temporal away, the feed's own polls still find the
    change, or the sweep does."""
    if not settings.feed.enabled:
        return
    try:
        client = await gateway.client()
        handle = client.get_workflow_handle(feed_workflow_id(settings.temporal.task_queue))
        await handle.signal(FEED_NUDGE)
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            log.warning("could not nudge the change feed: %s", exc)
    except TemporalUnavailable as exc:
        log.warning("could not nudge the change feed: %s", exc)


FEED_QUERY_TIMEOUT = timedelta(seconds=3)
"""A query is answered by a worker: without one it would wait, so a read gives up soon."""


async def read_feed(client: Client, settings: Settings) -> FeedState | None:
    """The running feed's cursor and counts (its ``state`` query); ``None`` when the feed
    is not running, or no worker answered in time."""
    handle = client.get_workflow_handle(feed_workflow_id(settings.temporal.task_queue))
    try:
        return await handle.query(FeedWorkflow.state, rpc_timeout=FEED_QUERY_TIMEOUT)
    except RPCError as exc:
        if exc.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.DEADLINE_EXCEEDED):
            log.warning("could not read the change feed's state: %s", exc)
        return None
    except WorkflowQueryRejectedError:
        return None
