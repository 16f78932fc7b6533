"""The cockpit in a real browser (Debian's Chromium) against ``orchestrator dev --simulate``
with a researcher that fails often and gets one attempt: find a prospect and see its journey;
with the operator key retry its failed handoff, pause and resume an agent, run a monitor
cycle and acknowledge the alert it opens; with a viewer key no action is offered. Leaves
screenshots in tests/artifacts/."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Dialog, Page, expect

from api.auth import hash_key
from tests.browser.test_dashboard_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Stack,
    async_playwright,
    browser_or_skip,
    dev_stack,
    poll,
)

ARTIFACTS = Path(__file__).parents[1] / "artifacts"
VIEWER = "browser-viewer-key"
SLOW = 30_000
"""ms: what waits on the stack (a refresh, a cycle) may take at most."""


async def first_failed(stack: Stack) -> dict[str, Any] | None:
    async with httpx.AsyncClient(timeout=5, headers={"X-API-Key": stack.key}) as http:
        body = (await http.get(f"{stack.api}/api/v1/handoffs?status=failed&limit=1")).json()
        if not body["items"]:
            return None
        failed = body["items"][0]
        journey = (await http.get(f"{stack.api}/api/v1/prospects/{failed['prospect_id']}")).json()
    return {**failed, "domain": journey["prospect"]["domain"]}


def accept_dialogs(page: Page) -> None:
    """Confirm every question; answer a prompt (the pause reason) with a sentence."""

    async def on(dialog: Dialog) -> None:
        await dialog.accept("paused by the browser test")

    page.on("dialog", on)


async def test_cockpit_finds_a_journey_and_acts_only_for_an_operator(tmp_path: Path) -> None:
    browser_or_skip()
    viewer = [{"name": "browser-viewer", "role": "viewer", "sha256": hash_key(VIEWER)}]
    env = {"ORCH_API_KEYS": json.dumps(viewer), "ORCH_HANDOFFS__AGENT_MAX_ATTEMPTS": "1"}
    async with (
        dev_stack(tmp_path, "--fail", "researcher", env=env) as stack,
        async_playwright() as pw,
    ):
        failed = await poll(lambda: first_failed(stack), "no handoff failed", within=60)
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1440, "height": 1400})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            accept_dialogs(page)
            await page.goto(f"{stack.dashboard_url()}&prospect={failed['prospect_id']}")
            await operate(page, failed)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "cockpit-operator.png"), full_page=True)

            looker = await browser.new_page(viewport={"width": 1440, "height": 1000})
            looker.on("pageerror", lambda exc: errors.append(str(exc)))
            await looker.goto(f"{stack.api}/dashboard#key={VIEWER}")
            await look(looker, stack)
            await looker.screenshot(path=str(ARTIFACTS / "cockpit-viewer.png"), full_page=True)
            assert errors == []
        finally:
            await browser.close()


async def operate(page: Page, failed: dict[str, Any]) -> None:
    pid = failed["prospect_id"]
    # the link's prospect: its journey, its failed handoff offering a retry
    journey = page.get_by_test_id("journey")
    await expect(journey.locator("h3")).to_contain_text(f"#{pid}", timeout=SLOW)
    entry = journey.locator(f'li[data-kind="handoff"][data-handoff-id="{failed["id"]}"]')
    await expect(entry).to_have_attribute("data-status", "failed")
    await expect(journey.locator('li[data-kind="state_entered"]').first).to_be_visible()
    await entry.locator('[data-action="retry"]').click()
    answer = page.get_by_test_id("action-answer")
    await expect(answer).to_contain_text("Retry: restarted", timeout=SLOW)
    await expect(answer).to_have_class(re.compile(r"\bgood\b"))

    # the search box: by domain text, then by id
    await page.locator("#prospect-q").fill(failed["domain"])
    await page.get_by_role("button", name="Find").click()
    found = page.locator(f'#prospect-results li[data-prospect-id="{pid}"]')
    await expect(found).to_be_visible(timeout=SLOW)
    await found.locator("a").click()
    await expect(journey.locator("h3")).to_contain_text(f"#{pid}")

    # pause an agent and see its card change; resume it
    card = page.locator('[data-agent="hygiene"]')
    await card.locator('[data-action="pause"]').click()
    await expect(card.locator(".flag.paused")).to_be_visible(timeout=SLOW)
    await expect(answer).to_contain_text("Pause: hygiene: paused")
    await card.locator('[data-action="resume"]').click()
    await expect(card.locator(".flag.paused")).to_have_count(0, timeout=SLOW)

    # a monitor cycle from the page finds the failing researcher; acknowledge its alert
    await page.locator("#cycle-mode").select_option("monitor")
    await page.locator('[data-action="run-cycle"]').click()
    await expect(answer).to_contain_text("Run cycle: started", timeout=SLOW)
    alert = page.locator("#alerts li[data-alert-id]").first
    await expect(alert).to_be_visible(timeout=SLOW)
    alert_id = await alert.get_attribute("data-alert-id")
    await alert.locator('[data-action="acknowledge"]').click()
    await expect(answer).to_contain_text("Acknowledge: now acknowledged", timeout=SLOW)
    await expect(page.locator(f'#alerts li[data-alert-id="{alert_id}"]')).to_have_count(
        0, timeout=SLOW
    )


async def look(page: Page, stack: Stack) -> None:
    """A viewer sees everything and is offered nothing; the API refuses it anyway."""
    await expect(page.locator("[data-agent]")).to_have_count(4, timeout=SLOW)
    await expect(page.get_by_test_id("role")).to_have_text("browser-viewer (viewer)")
    await expect(page.locator("#alerts li").first).to_be_visible()
    await expect(page.locator("#violations li").first).to_be_visible()
    assert await page.locator("[data-action]").count() == 0
    assert await page.locator("#cycle-actions").is_hidden()
    async with httpx.AsyncClient(timeout=5, headers={"X-API-Key": VIEWER}) as http:
        refused = await http.post(f"{stack.api}/api/v1/agents/hygiene/pause", json={"reason": "x"})
    assert refused.status_code == 403
