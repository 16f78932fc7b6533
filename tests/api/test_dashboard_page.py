"""The dashboard page is served without a key (it holds no data), with a policy that lets
it load nothing but its own script and stylesheet; the data behind it still needs a key."""

from __future__ import annotations

import re

from orchestrator.settings import Settings
from tests.helpers.api import api_client


async def test_page_and_assets_are_public_and_self_contained(settings: Settings) -> None:
    async with api_client(settings, key=None) as api:
        page = await api.get("/dashboard")
        script = await api.get("/dashboard/static/dashboard.js")
        style = await api.get("/dashboard/static/dashboard.css")
        data = await api.get("/api/v1/orchestrator/pipeline")
    assert page.status_code == script.status_code == style.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "/dashboard/static/dashboard.js" in page.text
    for text in (page.text, script.text, style.text):  # nothing from the internet (no CDN)
        assert not re.search(r"https?://|@import", text)
    assert data.status_code == 401


async def test_script_sends_the_key_as_a_header_never_in_a_url(settings: Settings) -> None:
    async with api_client(settings, key=None) as api:
        script = (await api.get("/dashboard/static/dashboard.js")).text
    assert '"X-API-Key": state.key' in script
    assert "EventSource" not in script  # it cannot send headers; the stream is read by fetch
    assert "?key=" not in script and "&key=" not in script
