"""Recorded workflow histories replay against today's workflow code.

A change that would break a running workflow (a different activity, another order) fails
here before it fails in production. Re-record after an intended change with
``ORCH_RECORD_HISTORIES=1 pytest tests/workflows/test_cycle_workflow.py``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from workflows.cycle import CycleWorkflow
from workflows.feed import FeedWorkflow
from workflows.handoff import HandoffWorkflow
from workflows.versioned import (
    VersionedCycleWorkflow,
    VersionedFeedWorkflow,
    VersionedHandoffWorkflow,
)

with workflow.unsafe.imports_passed_through():
    from activities.health import ComputeHealthInput, HealthActivities
    from workflows.types import CycleInput, CycleSummary

HISTORIES = sorted((Path(__file__).parents[1] / "histories").glob("*.json"))
WORKFLOW_TYPES = {
    "orchestrator-cycle": [CycleWorkflow],
    "handoff": [HandoffWorkflow],
    "orchestrator-feed": [FeedWorkflow],
}
VERSIONED_TYPES = {
    "orchestrator-cycle": [VersionedCycleWorkflow],
    "handoff": [VersionedHandoffWorkflow],
    "orchestrator-feed": [VersionedFeedWorkflow],
}
"""What a versioned worker registers (workflows/versioned.py): the same code, so the same
histories replay on it."""


def load(path: Path) -> tuple[str, WorkflowHistory]:
    text = path.read_text()
    first = json.loads(text)["events"][0]
    workflow_type = first["workflowExecutionStartedEventAttributes"]["workflowType"]["name"]
    return workflow_type, WorkflowHistory.from_json(path.stem, text)


def test_every_workflow_type_has_a_recorded_history() -> None:
    recorded = {load(path)[0] for path in HISTORIES}
    assert set(WORKFLOW_TYPES) <= recorded


@pytest.mark.parametrize("types", [WORKFLOW_TYPES, VERSIONED_TYPES], ids=["plain", "versioned"])
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays_without_nondeterminism(
    path: Path, types: dict[str, list[type]]
) -> None:
    workflow_type, history = load(path)
    replayer = Replayer(
        workflows=types[workflow_type],
        data_converter=pydantic_data_converter,
        unsandboxed_workflow_runner=SandboxedWorkflowRunner(),  # the handoff too, under test
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


@workflow.defn(name="orchestrator-cycle")
class ReorderedCycleWorkflow:
    """A deliberately incompatible change: the health activity with another timeout and a
    timer before it, as a careless edit might do."""

    @workflow.run
    async def run(self, input: CycleInput) -> CycleSummary:
        await workflow.sleep(timedelta(seconds=1))
        await workflow.execute_activity_method(
            HealthActivities.compute_agent_health,
            ComputeHealthInput(),
            start_to_close_timeout=timedelta(seconds=5),
        )
        return CycleSummary(mode=input.mode, started_at=workflow.now())


async def test_replay_catches_a_nondeterministic_change() -> None:
    _, history = load(next(p for p in HISTORIES if p.stem == "cycle_monitor"))
    replayer = Replayer(workflows=[ReorderedCycleWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
