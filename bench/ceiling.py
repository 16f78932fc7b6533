"""The ceiling for handoff throughput: an empty workflow that runs one activity. Kept apart
from the rest of the benchmark so the workflow sandbox imports nothing else."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

TASK_QUEUE = "bench-ceiling"


@activity.defn(name="bench_noop")
async def noop(value: int) -> int:
    return value


@workflow.defn(name="bench-empty")
class EmptyWorkflow:
    @workflow.run
    async def run(self, value: int) -> int:
        return await workflow.execute_activity(
            noop, value, start_to_close_timeout=timedelta(seconds=60)
        )
