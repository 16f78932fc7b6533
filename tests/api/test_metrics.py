"""/metrics: the pipeline's state in the Prometheus text format, behind a key."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.settings import Settings
from tests.helpers.api import VIEWER_KEY, api_client
from tests.helpers.factories import add, mixed_history, prospect


async def test_metrics_show_health_queues_and_need_a_key(
    settings: Settings, engine: AsyncEngine, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *mixed_history(datetime.now(UTC)))
    for pid in (1, 2, 3):
        await add(agent_sessionmaker, *prospect("identified", pid=pid))
    async with api_client(settings, key=None) as http:
        refused = await http.get("/metrics")
        response = await http.get("/metrics", headers={"X-API-Key": VIEWER_KEY})
    assert refused.status_code == 401
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'orchestrator_agent_status{agent="researcher",status="failing"} 1.0' in text
    assert 'orchestrator_agent_status{agent="researcher",status="healthy"} 0.0' in text
    assert 'orchestrator_agent_error_rate{agent="researcher"} 0.5' in text
    assert 'orchestrator_agent_runs_24h{agent="hygiene"} 10.0' in text
    assert 'orchestrator_pending_handoffs{agent="hygiene"} 3.0' in text
    assert 'orchestrator_open_alerts{severity="critical"} 0.0' in text
