"""The auth matrix: every endpoint against no key, a wrong key, a viewer key, an operator key."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from orchestrator.settings import Settings, TemporalSettings
from tests.helpers.api import OPERATOR_KEY, VIEWER_KEY, api_client, free_port, with_keys

SAMPLE = {
    "prospect_id": "1",
    "handoff_id": "1:identified:0",
    "report_date": "2026-01-05",
    "name": "hygiene",
    "alert_id": "1",
    "run_id": "1",
    "workflow_id": "cycle-full-manual-0",
}
OPEN = {"/healthz", "/readyz", "/api/v1/handoffs/{handoff_id}/complete"}


def secured_routes() -> list[tuple[str, str]]:
    """Every operation of the live OpenAPI schema under /api/, with sample path values."""
    schema = create_app(Settings()).openapi()
    routes = []
    for template, operations in schema["paths"].items():
        if template.startswith("/api/") and template not in OPEN:
            path = re.sub(r"{(\w+)}", lambda m: SAMPLE[m.group(1)], template)
            if path.endswith("/events"):
                path += "?follow=false"  # the stream would otherwise stay open
            routes += [(method.upper(), path) for method in sorted(operations)]
    return routes


ROUTES = secured_routes()


@pytest.fixture
def offline(settings: Settings) -> Settings:
    """Temporal unreachable: an authorised action gets past auth and stops at 503/404/422."""
    return settings.model_copy(
        update={"temporal": TemporalSettings(address=f"127.0.0.1:{free_port()}")}
    )


def test_every_api_route_is_in_the_matrix() -> None:
    assert len(ROUTES) >= 12
    assert ("POST", "/api/v1/orchestrator/run") in ROUTES
    assert ("GET", "/api/v1/orchestrator/health") in ROUTES


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_route_needs_a_key_and_the_right_role(
    offline: Settings,
    engine: AsyncEngine,
    method: str,
    path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with api_client(offline, key=None) as http:
        missing = await http.request(method, path)
        wrong = await http.request(method, path, headers={"X-API-Key": "nope"})
        viewer = await http.request(method, path, headers={"X-API-Key": VIEWER_KEY})
        bearer = {"Authorization": f"Bearer {OPERATOR_KEY}"}
        operator = await http.request(method, path, headers=bearer)
    assert missing.status_code == 401 and "missing API key" in missing.json()["detail"]
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key"
    if method == "GET":
        assert viewer.status_code not in (401, 403), viewer.text
    else:
        assert viewer.status_code == 403
        assert "operator role" in viewer.json()["detail"]
    assert operator.status_code not in (401, 403), operator.text
    assert operator.status_code < 500 or operator.status_code == 503, operator.text
    for key in (OPERATOR_KEY, VIEWER_KEY, "nope"):
        assert key not in caplog.text


async def test_probes_need_no_key(offline: Settings, engine: AsyncEngine) -> None:
    async with api_client(offline, key=None) as http:
        live = await http.get("/healthz")
        ready = await http.get("/readyz")
    assert live.json() == {"status": "ok"}
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["temporal"].startswith("unreachable")


async def test_a_server_without_keys_refuses_and_says_why(
    settings: Settings, engine: AsyncEngine
) -> None:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        response = await http.get(
            "/api/v1/orchestrator/health", headers={"X-API-Key": OPERATOR_KEY}
        )
    assert response.status_code == 401
    assert "no API keys are configured" in response.json()["detail"]


def test_settings_never_show_key_hashes_in_repr() -> None:
    settings = with_keys(Settings())
    assert "sha256" not in repr(settings.api_keys[0])
