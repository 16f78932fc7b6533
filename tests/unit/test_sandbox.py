"""The handoff runs outside the SDK's determinism sandbox in production (for speed) and inside
it under test: ``ORCH_WORKER__SANDBOX_ALL`` decides, and the test suite turns it on."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from orchestrator.settings import Settings, WorkerSettings
from tests.helpers.careless_workflow import ClockReadingWorkflow
from worker import unsandboxed_runner
from workflows.handoff import HandoffWorkflow


async def run_careless(client: Client, settings: Settings) -> str:
    queue = f"sandbox-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ClockReadingWorkflow],
        unsandboxed_workflow_runner=unsandboxed_runner(settings),
        workflow_failure_exception_types=[Exception],  # fail the run, not retry the task
    ):
        return await client.execute_workflow(
            ClockReadingWorkflow.run,
            id=f"careless-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
            execution_timeout=timedelta(seconds=30),
        )


def test_the_handoff_is_defined_outside_the_sandbox_and_the_suite_puts_it_back() -> None:
    definition = workflow._Definition.must_from_class(HandoffWorkflow)
    assert definition.sandboxed is False
    assert WorkerSettings().sandbox_all is False
    assert Settings().worker.sandbox_all is True  # conftest sets ORCH_WORKER__SANDBOX_ALL


async def test_a_clock_read_in_an_unsandboxed_workflow_fails_under_test(client: Client) -> None:
    settings = Settings(worker=WorkerSettings(sandbox_all=True))
    with pytest.raises(WorkflowFailureError) as failed:
        await run_careless(client, settings)
    assert "Cannot access datetime.datetime.now" in str(failed.value.cause)


async def test_production_setting_runs_it_unsandboxed(client: Client) -> None:
    settings = Settings(worker=WorkerSettings(sandbox_all=False))
    assert await run_careless(client, settings)
