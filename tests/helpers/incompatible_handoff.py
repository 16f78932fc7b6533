"""A v2 of the handoff workflow that cannot replay a v1 history: a timer before its first
step, where a v1 history has the ledger's local activity. In a module of its own so the
sandbox can import it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior

from workflows.versioned import VERSIONED_WORKFLOWS, VersionedHandoffWorkflow

with workflow.unsafe.imports_passed_through():
    from pipeline.handoffs import HandoffState
    from workflows.handoff_types import HandoffInput


@workflow.defn(name="handoff", sandboxed=False, versioning_behavior=VersioningBehavior.PINNED)
class IncompatibleHandoffWorkflow(VersionedHandoffWorkflow):
    @workflow.run
    async def run(self, input: HandoffInput) -> HandoffState:
        await workflow.sleep(timedelta(milliseconds=10))
        return await super().run(input)


V2_WORKFLOWS: list[type] = [
    IncompatibleHandoffWorkflow if w is VersionedHandoffWorkflow else w for w in VERSIONED_WORKFLOWS
]
