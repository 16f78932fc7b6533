"""One prospect's handoff to the next agent, and on along the chain while the agent's work
moves the prospect into another state that has a trigger (the spec's ``trigger: immediate``).

Its workflow id comes from the prospect, so at most one is open per prospect. Database steps
are local activities (cheap, and part of this workflow's task); the agent's work is a regular
activity on the agent's own task queue, or a signed HTTP call answered now or by callback.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from activities.handoffs import HandoffActivities
    from db.commands.handoffs import BeginInput, BeginResult, FinishInput, FinishResult, MarkInput
    from pipeline.contract import AgentResult, AgentTask, ResultStatus, agent_task_queue
    from pipeline.handoffs import (
        HandoffState,
        HandoffStatus,
    )
    from pipeline.presence import no_worker_detail
    from workflows.handoff_types import CompleteInput, HandoffInput, HandoffOutcome
    from workflows.search_attributes import AGENT_NAME, HANDOFF_STATUS, PROSPECT_ID
    from workflows.transports import transport_for

LOCAL_TIMEOUT = timedelta(seconds=30)
LOCAL_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=20)
FLAG_NO_WORKER = "flag-no-worker"
"""Before it, a handoff to an agent nobody served showed only ``running``, then ``stalled``."""


@workflow.defn(name="handoff", sandboxed=False)
class HandoffWorkflow:
    """Outside the SDK's sandbox in production (``ORCH_WORKER__SANDBOX_ALL`` puts it back):
    a new sandbox per handoff (its module imported again each time) cost a fifth of handoff
    throughput (bench/README.md). Its code keeps the sandbox's rules, and the tests and
    replays run it sandboxed."""

    def __init__(self) -> None:
        self._state: HandoffState | None = None
        self._retry_requested = False
        self._completion: CompleteInput | None = None

    @workflow.run
    async def run(self, input: HandoffInput) -> HandoffState:
        """Hand off, and keep handing off in this same run while the agent's work leaves the
        prospect waiting for another agent. (A new run per hop would be cleaner history, but
        Temporal delays every new run of one workflow id by about a second.)"""
        current = input
        while True:
            finished = await self._hand_off(current)
            assert self._state is not None
            if finished is None or finished.next is None:
                return self._state
            current = HandoffInput(
                pending=finished.next,
                policy=current.policy,
                chain=[*current.chain, current.pending.id],
            )
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(current)

    async def _hand_off(self, input: HandoffInput) -> FinishResult | None:
        """One handoff; ``None`` when it was superseded before any agent was triggered."""
        pending = input.pending
        self._state = HandoffState(
            handoff_id=pending.id,
            prospect_id=pending.prospect_id,
            from_state=pending.from_state,
            to_agent=pending.to_agent,
            status=HandoffStatus.PENDING,
            chain=input.chain,
        )
        self._retry_requested, self._completion = False, None
        self._set_status(HandoffStatus.PENDING)
        try:
            begun = await self._begin_until_leased(input)
            if begun.outcome in ("superseded", "done"):
                self._closed(HandoffStatus.SUPERSEDED, begun.reason)
                return None
            self._state.attempt = begun.attempt
            self._state.blocked_by = None
            self._set_status(HandoffStatus.RUNNING, self._no_worker(begun))
            outcome = await self._trigger_agent(input)
        except (asyncio.CancelledError, CancelledError):
            cancelled = HandoffOutcome(
                status=HandoffStatus.CANCELLED, detail="cancelled by an operator"
            )
            await self._finish(input, cancelled)
            raise
        return await self._finish(input, outcome)

    def _no_worker(self, begun: BeginResult) -> str | None:
        """Flag a handoff begun while nobody serves its agent (the begin step's answer);
        the detail it runs with."""
        assert self._state is not None
        if not (begun.no_worker and workflow.patched(FLAG_NO_WORKER)):
            return None
        self._state.no_worker = True
        return f"{no_worker_detail(agent_task_queue(self._state.to_agent))}; waiting for one"

    @workflow.query(name="state")
    def state(self) -> HandoffState | None:
        return self._state

    @workflow.signal(name="retry")
    def retry(self) -> None:
        """Try the record lease again now instead of at the next timer."""
        self._retry_requested = True

    @workflow.signal(name="complete")
    def complete(self, input: CompleteInput) -> None:
        if self._state is not None and input.handoff_id == self._state.handoff_id:
            self._completion = input

    async def _begin_until_leased(self, input: HandoffInput) -> BeginResult:
        """Claim the ledger row and the lease; while another agent holds the lease, wait on a
        durable timer (or a ``retry`` signal) and try again."""
        info = workflow.info()
        ttl = input.policy.lease_ttl
        begin = BeginInput(
            pending=input.pending,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            lease_ttl=ttl,
            retry=input.retry,
        )
        while True:
            result = await workflow.execute_local_activity_method(
                HandoffActivities.begin_handoff,
                begin,
                start_to_close_timeout=LOCAL_TIMEOUT,
                retry_policy=LOCAL_RETRY,
            )
            if result.outcome != "blocked":
                return result
            assert self._state is not None
            self._state.blocked_by = result.holder
            self._set_status(HandoffStatus.BLOCKED, f"record lease held by {result.holder}")
            self._retry_requested = False
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._retry_requested,
                    timeout=input.policy.blocked_retry_interval,
                    timeout_summary="blocked: retry the record lease",
                )

    async def _trigger_agent(self, input: HandoffInput) -> HandoffOutcome:
        assert self._state is not None
        task = AgentTask(
            handoff_id=input.pending.id,
            prospect_id=input.pending.prospect_id,
            from_state=input.pending.from_state,
            agent=input.pending.to_agent,
            attempt=self._state.attempt,
        )
        try:
            transport = transport_for(input.policy, task.agent)
            result = await transport.call(task, input.policy, self)
        except ActivityError as err:
            if is_cancelled_exception(err):  # the workflow was cancelled while the agent ran
                raise asyncio.CancelledError from err
            return HandoffOutcome(status=HandoffStatus.FAILED, detail=_cause(err))
        except ApplicationError as err:
            return HandoffOutcome(status=HandoffStatus.FAILED, detail=err.message)
        if result.status is ResultStatus.FAILED:
            return HandoffOutcome(status=HandoffStatus.FAILED, result=result, detail=result.detail)
        return HandoffOutcome(status=HandoffStatus.COMPLETED, result=result, detail=result.detail)

    def completion(self) -> AgentResult | None:
        """An HTTP agent's late result, once its callback signalled it (see ``complete``)."""
        return self._completion.result if self._completion is not None else None

    async def flag_stall(self, done: Callable[[], bool], after: timedelta) -> None:
        """Past the stall deadline the handoff is marked stalled and keeps waiting."""
        try:
            await workflow.wait_condition(done, timeout=after, timeout_summary="stall deadline")
        except TimeoutError:
            self._set_status(HandoffStatus.STALLED, f"no answer from the agent after {after}")
            assert self._state is not None
            await workflow.execute_local_activity_method(
                HandoffActivities.mark_handoff,
                MarkInput(
                    handoff_id=self._state.handoff_id,
                    status=HandoffStatus.STALLED,
                    detail=self._state.detail,
                ),
                start_to_close_timeout=LOCAL_TIMEOUT,
                retry_policy=LOCAL_RETRY,
            )

    async def _finish(self, input: HandoffInput, outcome: HandoffOutcome) -> FinishResult:
        assert self._state is not None
        finish = FinishInput(
            pending=input.pending,
            workflow_id=workflow.info().workflow_id,
            run_id=workflow.info().run_id,
            attempt=self._state.attempt,
            status=outcome.status,
            result=outcome.result,
            detail=outcome.detail,
            find_next=len(input.chain) + 1 < input.policy.max_chain,
        )
        finished = await workflow.execute_local_activity_method(
            HandoffActivities.finish_handoff,
            finish,
            start_to_close_timeout=LOCAL_TIMEOUT,
            retry_policy=LOCAL_RETRY,
        )
        self._state.result = outcome.result
        self._closed(outcome.status, outcome.detail)
        return finished

    def _set_status(self, status: HandoffStatus, detail: str | None = None) -> None:
        assert self._state is not None
        self._state.status, self._state.detail = status, detail
        self._state.updated_at = workflow.now()
        _tag(
            (PROSPECT_ID, str(self._state.prospect_id)),
            (AGENT_NAME, self._state.to_agent),
            (HANDOFF_STATUS, status.value),
        )

    def _closed(self, status: HandoffStatus, detail: str | None) -> HandoffState:
        self._set_status(status, detail)
        assert self._state is not None
        return self._state


def _tag(*values: tuple[SearchAttributeKey[str], str]) -> None:
    """Upsert, in one command, only the search attributes that change: each upsert is an
    event and a visibility write on the server, which bounds handoff throughput. A handoff
    started by a sweep already carries its prospect, agent and ``pending``."""
    current = workflow.info().typed_search_attributes
    changed = [key.value_set(value) for key, value in values if current.get(key) != value]
    if changed:
        workflow.upsert_search_attributes(changed)


def _cause(err: ActivityError) -> str:
    cause = err.cause
    while cause is not None and cause.cause is not None and not str(cause):
        cause = cause.cause
    return str(cause or err)
