"""Workflow shapes for ``bench.shape_bench``: the ceiling's one-activity workflow with a
handoff's parts added one at a time. Kept apart so the workflow sandbox imports nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.workflow import ParentClosePolicy

TASK_QUEUE = "bench-shape"
AGENT_QUEUE = "bench-shape-agent"
STATUS = SearchAttributeKey.for_keyword("HandoffStatus")
STEP = timedelta(seconds=30)


@activity.defn(name="bench_shape_agent")
async def agent(value: int) -> int:
    return value


@activity.defn(name="bench_shape_step")
async def step(value: int) -> int:
    return value


@workflow.defn(name="bench-shape")
class ShapeWorkflow:
    """One agent activity on another queue, plus the handoff's ``parts``: ``step`` (a local
    activity before and after, as its database steps), ``tag`` (two search-attribute
    upserts, as its status) and ``stall`` (a timer around the call, as its stall deadline)."""

    @workflow.run
    async def run(self, parts: list[str]) -> int:
        if "step" in parts:
            await workflow.execute_local_activity(step, 1, start_to_close_timeout=STEP)
        if "tag" in parts:
            workflow.upsert_search_attributes([STATUS.value_set("running")])
        call = asyncio.ensure_future(
            workflow.execute_activity(
                agent, 1, task_queue=AGENT_QUEUE, start_to_close_timeout=timedelta(minutes=1)
            )
        )
        if "stall" in parts:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(call.done, timeout=timedelta(minutes=30))
        result = await call
        if "step" in parts:
            await workflow.execute_local_activity(step, 1, start_to_close_timeout=STEP)
        if "tag" in parts:
            workflow.upsert_search_attributes([STATUS.value_set("completed")])
        return result


@workflow.defn(name="bench-shape-parent")
class ParentWorkflow:
    """Starts ``n`` shapes as abandoned children, ``batch`` at a time as a sweep does, and
    stays open until they complete, recording each completion as the feed does."""

    @workflow.run
    async def run(self, prefix: str, n: int, batch: int, parts: list[str]) -> None:
        pending = SearchAttributePair(STATUS, "pending")
        tags = TypedSearchAttributes([pending]) if "tag" in parts else None
        children = []
        for first in range(0, n, batch):
            children += await asyncio.gather(
                *(
                    workflow.start_child_workflow(
                        ShapeWorkflow.run,
                        parts,
                        id=f"{prefix}-{i}",
                        parent_close_policy=ParentClosePolicy.ABANDON,
                        search_attributes=tags,
                    )
                    for i in range(first, min(n, first + batch))
                )
            )
        await asyncio.gather(*children)


class Starter:
    """Starts shapes with the client, from an activity: the alternative to children."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="bench_shape_start")
    async def start(self, prefix: str, first: int, last: int, parts: list[str]) -> None:
        pending = SearchAttributePair(STATUS, "pending")
        tags = TypedSearchAttributes([pending]) if "tag" in parts else None
        await asyncio.gather(
            *(
                self.client.start_workflow(
                    ShapeWorkflow.run,
                    parts,
                    id=f"{prefix}-{i}",
                    task_queue=TASK_QUEUE,
                    search_attributes=tags,
                )
                for i in range(first, last)
            )
        )


@workflow.defn(name="bench-shape-starter")
class StarterWorkflow:
    """Starts ``n`` shapes through :class:`Starter`'s activity, ``batch`` a call."""

    @workflow.run
    async def run(self, prefix: str, n: int, batch: int, parts: list[str]) -> None:
        for first in range(0, n, batch):
            await workflow.execute_activity_method(
                Starter.start,
                args=[prefix, first, min(n, first + batch), parts],
                start_to_close_timeout=timedelta(minutes=1),
            )
