"""Turning an agent's ``process`` function into a Temporal activity on ``agent-<name>``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from agent_sdk.recorders import RunRecorder
from pipeline.contract import (
    PROCESS_PROSPECT,
    AgentResult,
    AgentTask,
    ResultStatus,
    agent_task_queue,
)
from pipeline.handoffs import FEED_NUDGE, feed_workflow_id

log = logging.getLogger(__name__)
Process = Callable[[AgentTask], Awaitable[AgentResult]]
Nudge = Callable[[], Awaitable[None]]


def feed_nudge(client: Client, orchestrator_task_queue: str = "orchestrator") -> Nudge:
    """What a scheduled agent calls after a run that changed prospects: a signal that wakes
    the orchestrator's change feed. A hint only: errors are logged, never raised, and the
    feed's own polls find the change anyway."""
    handle = client.get_workflow_handle(feed_workflow_id(orchestrator_task_queue))

    async def nudge() -> None:
        try:
            await handle.signal(FEED_NUDGE)
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND:
                log.warning("could not nudge the orchestrator's change feed: %s", exc)

    return nudge


class AgentRuntime:
    """One agent: its name and where its run history goes."""

    def __init__(self, name: str, recorder: RunRecorder) -> None:
        self.name = name
        self.recorder = recorder

    async def handle(self, task: AgentTask, process: Process) -> AgentResult:
        """Run ``process`` once per handoff, recorded as an ``agent_runs`` row."""
        if await self.recorder.already_done(self.name, task.handoff_id):
            return AgentResult(
                status=ResultStatus.SKIPPED,
                detail=f"handoff {task.handoff_id} was already processed",
            )
        run_id = await self.recorder.started(self.name, task.handoff_id)
        try:
            result = await process(task)
        except (Exception, asyncio.CancelledError) as exc:  # a cancelled run ended too
            error = (
                "cancelled"
                if isinstance(exc, asyncio.CancelledError)
                else (f"{type(exc).__name__}: {exc}")
            )
            await asyncio.shield(
                self.recorder.finished(self.name, run_id, ok=False, records=0, error=error)
            )
            raise
        ok = result.status is not ResultStatus.FAILED
        await self.recorder.finished(
            self.name,
            run_id,
            ok=ok,
            records=result.records_processed,
            error=None if ok else result.detail,
        )
        return result

    def activity(self, process: Process) -> Callable[[AgentTask], Awaitable[AgentResult]]:
        @activity.defn(name=PROCESS_PROSPECT)
        async def process_prospect(task: AgentTask) -> AgentResult:
            return await self.handle(task, process)

        return process_prospect

    def worker(self, client: Client, process: Process, *, max_concurrent: int = 50) -> Worker:
        """A worker serving ``process_prospect`` on ``agent-<name>``; use as ``async with``."""
        return Worker(
            client,
            task_queue=agent_task_queue(self.name),
            activities=[self.activity(process)],
            max_concurrent_activities=max_concurrent,
        )


async def run_every(
    runtime: AgentRuntime,
    work: Callable[[], Awaitable[int]],
    every: timedelta,
    stop: asyncio.Event,
    nudge: Nudge | None = None,
) -> None:
    """A scheduled agent (the prospector has no upstream): ``work`` returns the records it
    processed; each call is one recorded run, failures included, until ``stop`` is set. A
    run that processed records calls ``nudge`` (see :func:`feed_nudge`)."""
    while not stop.is_set():
        run_id = await runtime.recorder.started(runtime.name, None)
        try:
            records = await work()
        except Exception as exc:  # a failed run is recorded; the schedule goes on
            log.warning("%s run failed: %s", runtime.name, exc)
            await runtime.recorder.finished(
                runtime.name, run_id, ok=False, records=0, error=f"{type(exc).__name__}: {exc}"
            )
        else:
            await runtime.recorder.finished(
                runtime.name, run_id, ok=True, records=records, error=None
            )
            if records and nudge is not None:
                await nudge()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every.total_seconds())
