"""Starting workflows from outside a workflow, once for everyone: the API, the CLI, the workers
and the simulation start a cycle, a handoff or the feed here, and build Web UI links here."""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.settings import TemporalSettings
from pipeline.handoffs import (
    FEED_NUDGE,
    OPEN_STATUSES,
    RETRYABLE_STATUSES,
    HandoffPolicy,
    HandoffState,
    HandoffStatus,
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


class IdempotencyConflict(ValueError):
    """The idempotency key was used before for a different request."""


def keyed_workflow_id(kind: str, operation: str, key: str) -> str:
    """The one workflow id an operation's idempotency key names: a retry with the same key
    lands on the same workflow, which Temporal keeps for the namespace's retention."""
    return f"{kind}-key-{keyed_request(operation, key)}"


async def start_cycle(
    client: Client,
    task_queue: str,
    input: CycleInput,
    *,
    started_by: str,
    summary: str,
    idempotency_key: str | None = None,
    operation: str | None = None,
) -> WorkflowHandle[CycleWorkflow, CycleSummary]:
    """Start a cycle now; its id says what it is and who asked (``cycle-<mode>-<by>-…``).
    With an idempotency key, the cycle the key started before (running or closed) is
    returned instead, if it was asked for the same work; else ``IdempotencyConflict``."""
    if idempotency_key is None:
        return await client.start_workflow(
            CycleWorkflow.run,
            input,
            id=f"cycle-{input.mode}-{started_by}-{secrets.token_hex(6)}",
            task_queue=task_queue,
            search_attributes=cycle_attributes(input.mode),
            static_summary=summary,
        )
    # per task queue, as the feed is: deployments sharing a namespace share no keys
    scope = f"{task_queue}/{operation or started_by}"
    workflow_id = keyed_workflow_id("cycle", scope, idempotency_key)
    request = input.model_dump_json(include={"mode", "report_kind", "report_date"})
    try:
        handle = await client.start_workflow(
            CycleWorkflow.run,
            input,
            id=workflow_id,
            task_queue=task_queue,
            search_attributes=cycle_attributes(input.mode),
            static_summary=summary,
            memo={REQUEST_MEMO: request},
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
    except WorkflowAlreadyStartedError:  # closed, and kept: the key's first cycle
        handle = client.get_workflow_handle_for(CycleWorkflow.run, workflow_id)
    await same_request(handle, request)
    return handle


REQUEST_MEMO = "request"
"""What a keyed start was asked to do, kept in its workflow's memo."""


async def same_request(handle: WorkflowHandle, request: str) -> None:
    """Raise ``IdempotencyConflict`` unless the workflow was started for ``request``."""
    memo = await (await handle.describe()).memo()
    if memo.get(REQUEST_MEMO) != request:
        raise IdempotencyConflict(
            f"this Idempotency-Key was used for another request ({memo.get(REQUEST_MEMO)}); "
            "use a new key for new work"
        )


async def start_handoff(
    client: Client,
    pending: PendingHandoff,
    *,
    policy: HandoffPolicy,
    task_queue: str,
    why: str,
    retry: bool = False,
    request: str | None = None,
) -> str:
    """Start the handoff of ``pending``; its workflow id. Raises
    ``WorkflowAlreadyStartedError`` when the prospect has a handoff open; ``retry`` lets it
    take over a failed or abandoned claim of the same state entry. ``request`` (see
    ``keyed_request``) is kept in its memo, so a retry of the request finds it."""
    handle = await client.start_workflow(
        HandoffWorkflow.run,
        HandoffInput(pending=pending, policy=policy, retry=retry),
        id=handoff_workflow_id(pending.prospect_id),
        task_queue=task_queue,
        search_attributes=handoff_attributes(pending.prospect_id, pending.to_agent),
        static_summary=f"{why}: {pending.from_state} → {pending.to_agent}, "
        f"prospect {pending.prospect_id}",
        memo={REQUEST_MEMO: request, PENDING_MEMO: pending.model_dump(mode="json")}
        if request
        else None,
    )
    return handle.id


PENDING_MEMO = "pending"
"""The state entry a keyed handoff start handed off."""


def keyed_request(operation: str, key: str) -> str:
    return hashlib.sha256(f"{operation}\n{key}".encode()).hexdigest()[:24]


async def handoff_started_for(
    client: Client, prospect_id: int, request: str
) -> PendingHandoff | None:
    """The entry the prospect's latest handoff workflow handed off, if ``request`` started
    it (a retried request); ``None`` otherwise."""
    handle = client.get_workflow_handle(handoff_workflow_id(prospect_id))
    try:
        memo = await (await handle.describe()).memo()
    except RPCError:
        return None
    if memo.get(REQUEST_MEMO) != request or PENDING_MEMO not in memo:
        return None
    return PendingHandoff.model_validate(memo[PENDING_MEMO])


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


async def live_handoff(client: Client, prospect_id: int) -> HandoffState | None:
    """The prospect's running handoff workflow's state (its query), or None when none runs."""
    handle = client.get_workflow_handle(handoff_workflow_id(prospect_id))
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if description.status is not WorkflowExecutionStatus.RUNNING:
        return None
    return await handle.query(HandoffWorkflow.state)


class RetryOutcome(BaseModel):
    """What one retry did: ``signalled`` (a blocked handoff tries its lease again),
    ``restarted`` (the handoff runs again), or ``refused`` with the reason."""

    handoff_id: str
    action: Literal["signalled", "restarted", "refused"]
    reason: str | None = None
    refusal: str | None = None
    """The reason as a code, for counting: ``not_retryable``, ``handoff_open``, or a
    caller's own (the bulk retry's ``agent_held``, ``prospect_retried``)."""


async def retry_handoff(
    client: Client,
    pending: PendingHandoff,
    status: HandoffStatus,
    *,
    policy: HandoffPolicy,
    task_queue: str,
    request: str | None = None,
) -> RetryOutcome:
    """Retry the ledger row of ``pending`` (now ``status``), the one way the single and the
    bulk retry both take: a blocked handoff still running is signalled; a failed, cancelled
    or abandoned one (open, but no workflow works on it) runs again; anything else is
    refused, saying why."""
    handoff_id = pending.id
    live = await live_handoff(client, pending.prospect_id)
    if live is not None and live.handoff_id == handoff_id:
        if live.status is not HandoffStatus.BLOCKED:
            return refused(
                handoff_id, "not_retryable", not_retryable(handoff_id, live.status.value)
            )
        await client.get_workflow_handle(handoff_workflow_id(pending.prospect_id)).signal(
            HandoffWorkflow.retry
        )
        return RetryOutcome(handoff_id=handoff_id, action="signalled")
    abandoned = live is None and status in OPEN_STATUSES
    if status not in RETRYABLE_STATUSES and not abandoned:
        return refused(handoff_id, "not_retryable", not_retryable(handoff_id, status.value))
    if live is not None:
        why = f"prospect {pending.prospect_id} has another handoff open ({live.handoff_id})"
        return refused(handoff_id, "handoff_open", f"{why}; retry after it ends")
    try:
        await start_handoff(
            client,
            pending,
            policy=policy,
            task_queue=task_queue,
            why="retry",
            retry=True,
            request=request,
        )
    except WorkflowAlreadyStartedError:
        why = f"a handoff of prospect {pending.prospect_id} started meanwhile; nothing to retry"
        return refused(handoff_id, "handoff_open", why)
    return RetryOutcome(handoff_id=handoff_id, action="restarted")


def refused(handoff_id: str, refusal: str, reason: str) -> RetryOutcome:
    return RetryOutcome(handoff_id=handoff_id, action="refused", reason=reason, refusal=refusal)


def not_retryable(handoff_id: str, status: str) -> str:
    return (
        f"handoff {handoff_id} is {status}; only blocked, failed or cancelled handoffs "
        "can be retried"
    )
