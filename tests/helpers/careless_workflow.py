"""A careless edit to an unsandboxed workflow, in a module of its own so the sandbox can
import it: the machine's clock instead of ``workflow.now()``."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import workflow


@workflow.defn(name="careless-handoff", sandboxed=False)
class ClockReadingWorkflow:
    @workflow.run
    async def run(self) -> str:
        return datetime.now(UTC).isoformat()
