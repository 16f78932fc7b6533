"""/metrics carries the Temporal SDK's own metrics and the handoff and cycle metrics we record
through its meter, when the worker runs in the API's process (as in ``orchestrator dev``)."""

from __future__ import annotations

import re

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from orchestrator.sdk_metrics import install_sdk_metrics
from orchestrator.settings import ObservabilitySettings, Settings
from tests.helpers.agents import FakeAgent
from tests.helpers.api import VIEWER_KEY, api_client
from tests.helpers.factories import add, prospect
from tests.helpers.handoffs import running, sweep, wait_closed


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one series (labels matched as a subset), summed over the others."""
    total, found = 0.0, False
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:{{(.*)}})? (\S+)$", line)
        if not match:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total, found = total + float(match.group(2)), True
    assert found, f"no {name}{labels} in /metrics"
    return total


async def test_metrics_include_sdk_handoff_latency_outcomes_and_cycle_duration(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    sdk = install_sdk_metrics(ObservabilitySettings(sdk_metrics_address="127.0.0.1:0"))
    assert sdk is not None
    metered = await Client.connect(
        client.service_client.config.target_host,
        namespace=client.namespace,
        data_converter=pydantic_data_converter,
        runtime=sdk.runtime,
    )
    for pid in (1, 2, 3):
        await add(agent_sessionmaker, *prospect("identified", pid=pid))
    async with running(metered, sessionmaker, worker_settings, agents):
        await sweep(metered, worker_settings)
        for pid in (1, 2, 3):
            await wait_closed(metered, pid)
    async with api_client(worker_settings, key=VIEWER_KEY) as http:
        text = (await http.get("/metrics")).text
    assert (await httpx.AsyncClient().get(sdk.url)).status_code == 200
    # ours from the database and the SDK's in one exposition
    assert "orchestrator_pending_handoffs" in text
    assert _sample(text, "temporal_workflow_completed", workflow_type="handoff") >= 3
    assert _sample(text, "temporal_activity_execution_latency_count") > 0
    # three prospects, three hops each: every trigger timed, every close counted
    latency = "orchestrator_handoff_latency_seconds"
    assert _sample(text, f"{latency}_count", agent="hygiene") >= 3
    assert _sample(text, f"{latency}_count", agent="outreach") >= 3
    assert _sample(text, f"{latency}_bucket", agent="hygiene", le="+Inf") >= 3
    outcomes = "orchestrator_handoff_outcomes"
    assert _sample(text, outcomes, agent="researcher", outcome="completed") >= 3
    assert _sample(text, "orchestrator_cycle_duration_seconds_count", mode="handoffs") >= 1
