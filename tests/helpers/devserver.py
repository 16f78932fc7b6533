"""A real Temporal dev server for tests, from the installed ``temporal`` binary."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from cli.devserver import find_binary
from workflows.search_attributes import ALL


async def start_dev_server() -> WorkflowEnvironment:
    """A dev server with our search attributes and the pydantic converter (shut it down)."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(find_binary("temporal")),
        data_converter=pydantic_data_converter,
        search_attributes=ALL,
        dev_server_log_level="error",
    )


@pytest.fixture(name="client")
async def own_server() -> AsyncIterator[Client]:
    """A dev server of the test's own as its ``client``, for a module that imports this
    fixture: pinned handoffs and a Worker Deployment, or workflows a stopped worker left
    open, must not outlive the test on the shared server (their ids are ``handoff-<pid>``)."""
    env = await start_dev_server()
    try:
        yield env.client
    finally:
        await env.shutdown()


async def terminate_running(client: Client) -> None:
    """Terminate every workflow still running on ``client``'s namespace."""
    async for execution in client.list_workflows("ExecutionStatus = 'Running'"):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        with contextlib.suppress(RPCError):
            await handle.terminate(reason="the test ended")
