"""How a handoff reaches its agent: one class per transport behind one small protocol, chosen
in one place (``transport_for``, from ``ORCH_AGENT_ENDPOINTS`` through the handoff policy).

Transports run inside the handoff workflow, so they keep its rules: their I/O is activities.
A new transport is a class here, its name in ``pipeline.handoffs.Transport``, and its activity
(if it needs one) registered by the worker.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.agent_http import HttpAgentActivities
    from pipeline.contract import PROCESS_PROSPECT, AgentResult, AgentTask
    from pipeline.contract import agent_task_queue as agent_queue
    from pipeline.handoffs import HandoffPolicy, Transport


class Waiting(Protocol):
    """What the handoff workflow lends a transport while it waits for the agent."""

    async def flag_stall(self, done: Callable[[], bool], after: timedelta) -> None:
        """Wait for ``done`` until ``after``; past it, mark the handoff stalled and return."""
        ...

    def completion(self) -> AgentResult | None:
        """The agent's late result, once its callback has signalled it."""
        ...


class AgentTransport(Protocol):
    async def call(self, task: AgentTask, policy: HandoffPolicy, waiting: Waiting) -> AgentResult:
        """Trigger the agent and return its result; raise ``ActivityError`` or
        ``ApplicationError`` when it cannot be had."""
        ...


def _agent_retry(policy: HandoffPolicy) -> RetryPolicy:
    return RetryPolicy(
        maximum_attempts=policy.agent_max_attempts, maximum_interval=timedelta(seconds=30)
    )


class TemporalTransport:
    """``process_prospect`` on the agent's own task queue (any Temporal SDK language)."""

    async def call(self, task: AgentTask, policy: HandoffPolicy, waiting: Waiting) -> AgentResult:
        handle = workflow.start_activity(
            PROCESS_PROSPECT,
            task,
            task_queue=agent_queue(task.agent),
            result_type=AgentResult,
            schedule_to_close_timeout=policy.hard_timeout,
            start_to_close_timeout=min(policy.attempt_timeout, policy.hard_timeout),
            retry_policy=_agent_retry(policy),
            summary=f"{task.agent}: {task.from_state} prospect {task.prospect_id}",
        )
        await waiting.flag_stall(lambda: handle.done(), policy.stall_after)
        return await handle


class HttpTransport:
    """A signed POST; the agent answers with its result, or 202 and calls back later."""

    async def call(self, task: AgentTask, policy: HandoffPolicy, waiting: Waiting) -> AgentResult:
        ack = await workflow.execute_activity_method(
            HttpAgentActivities.trigger_http_agent,
            task,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=_agent_retry(policy),
        )
        if ack.result is not None:
            return ack.result
        await waiting.flag_stall(lambda: waiting.completion() is not None, policy.stall_after)
        remaining = max(policy.hard_timeout - policy.stall_after, timedelta(seconds=1))
        try:
            await workflow.wait_condition(
                lambda: waiting.completion() is not None,
                timeout=remaining,
                timeout_summary="hard timeout for the agent's callback",
            )
        except TimeoutError:
            raise ApplicationError(
                f"{task.agent} accepted the task but did not call back within {policy.hard_timeout}"
            ) from None
        result = waiting.completion()
        assert result is not None
        return result


TRANSPORTS: dict[Transport, Callable[[], AgentTransport]] = {
    "temporal": TemporalTransport,
    "http": HttpTransport,
}


def transport_for(policy: HandoffPolicy, agent: str) -> AgentTransport:
    """The transport the settings name for ``agent`` (``temporal`` unless told otherwise)."""
    return TRANSPORTS[policy.transport(agent)]()
