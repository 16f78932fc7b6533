"""The workflows as a versioned worker registers them: the same code and names, plus the
Worker Versioning behaviour Temporal routes each run by.

Why subclasses and not a ``versioning_behavior`` on the plain classes: Temporal refuses a
versioning behaviour from an unversioned worker, and the plain classes run on unversioned
workers (``orchestrator dev``, the tests, the benches). A versioned worker (with
``ORCH_DEPLOYMENT__VERSIONING`` on) registers these instead.

- The handoff is ``PINNED``: it lives minutes, so it finishes on the build it started on and a
  deploy never replays an open handoff on changed code (no ``workflow.patched`` needed).
- The cycle and the feed are ``AUTO_UPGRADE``: the feed runs for ever and a sweep can run
  long, so they move to the current version at their next task; a change of shape in them
  still goes behind ``workflow.patched``.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import VersioningBehavior

from workflows.cycle import CycleWorkflow
from workflows.feed import FeedWorkflow
from workflows.handoff import HandoffWorkflow

with workflow.unsafe.imports_passed_through():
    from pipeline.handoffs import HandoffState
    from workflows.handoff_types import HandoffInput
    from workflows.types import CycleInput, CycleSummary, FeedInput


@workflow.defn(name="handoff", sandboxed=False, versioning_behavior=VersioningBehavior.PINNED)
class VersionedHandoffWorkflow(HandoffWorkflow):
    """The handoff, pinned to the version it started on."""

    @workflow.run
    async def run(self, input: HandoffInput) -> HandoffState:
        return await super().run(input)


@workflow.defn(name="orchestrator-cycle", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class VersionedCycleWorkflow(CycleWorkflow):
    """The cycle, moving to the current version at its next workflow task."""

    @workflow.run
    async def run(self, input: CycleInput) -> CycleSummary:
        return await super().run(input)


@workflow.defn(name="orchestrator-feed", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class VersionedFeedWorkflow(FeedWorkflow):
    """The change feed, moving to the current version at its next workflow task."""

    @workflow.run
    async def run(self, input: FeedInput) -> None:
        await super().run(input)


VERSIONED_WORKFLOWS: list[type] = [
    VersionedCycleWorkflow,
    VersionedHandoffWorkflow,
    VersionedFeedWorkflow,
]
