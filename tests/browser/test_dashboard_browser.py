"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) opens
``/dashboard`` of ``orchestrator dev --simulate`` and checks what a person would see: four
agent cards with a status, a funnel with prospects in it, handoff counts, links into the
Temporal Web UI, and a live event arriving; and the cockpit: a prospect's journey, the
operator's actions, none for a viewer. It leaves screenshots in tests/artifacts/.

Without Chromium (``.ci/run`` installs it as root) the test is skipped, unless
``ORCH_REQUIRE_BROWSER=1`` makes that a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from api.auth import hash_key
from tests.helpers.dev import start_dev, stop_dev

try:
    from playwright.async_api import Dialog, Locator, Page, async_playwright, expect
except ImportError:  # reported by browser_or_skip
    async_playwright = None  # type: ignore[assignment]

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).parents[1] / "artifacts" / "dashboard.png"
# the network is closed: without these Chromium waits on updates, sync and GPU probes
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def browser_or_skip() -> None:
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} not found (apt-get install chromium; .ci/run does it as root)"
    elif async_playwright is None:
        missing = "the playwright package is not installed (pip install -e '.[dev]')"
    if missing and os.environ.get("ORCH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"ORCH_REQUIRE_BROWSER=1 but {missing}")
    if missing:
        pytest.skip(missing)


@dataclass
class Stack:
    api: str
    ui: str
    key: str
    output: Path
    """Everything ``orchestrator dev`` printed."""

    def dashboard_url(self) -> str:
        """The link ``dev`` prints with a new key, as a person would click it."""
        found = re.search(r"Dashboard with it: (\S+)", self.output.read_text())
        assert found, self.output.read_text()
        return found.group(1)


async def poll(check: Callable[[], Awaitable[T]], what: str, within: float = 60.0) -> T:
    """``await check()`` until it returns something truthy; that value."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            if found := await check():
                return found
        except httpx.TransportError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what} within {within} s")
        await asyncio.sleep(0.5)


VIEWER = "browser-viewer-key"
"""A viewer key the stack accepts besides the operator key ``dev`` makes."""


@pytest.fixture(scope="module")
async def simulated_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """``orchestrator dev --simulate`` on free ports, shared by this module's tests (its start
    and stop are most of their time), stopped with Ctrl-C (its process group killed if it
    does not stop). The researcher fails often, with one attempt per handoff, so there are
    failed handoffs and a failing agent to act on. Skips first when there is no browser."""
    browser_or_skip()
    viewer = [{"name": "browser-viewer", "role": "viewer", "sha256": hash_key(VIEWER)}]
    env = {"ORCH_API_KEYS": json.dumps(viewer), "ORCH_HANDOFFS__AGENT_MAX_ATTEMPTS": "1"}
    tmp_path = tmp_path_factory.mktemp("stack")
    async with dev_stack(tmp_path, "--fail", "researcher", env=env) as stack:
        yield stack


@asynccontextmanager
async def dev_stack(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[Stack]:
    """The simulated dev stack with these extra arguments and ``ORCH_*`` settings."""
    dev = start_dev(tmp_path, "--simulate", "--speed", "5", *args, env=env)
    try:
        await poll(_answers(f"{dev.api}/healthz"), "the API did not answer")
        key = (dev.state_dir / "dev-api-key").read_text().strip()
        yield Stack(dev.api, dev.ui, key, dev.log)
    finally:
        stop_dev(dev)


def _answers(url: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        async with httpx.AsyncClient(timeout=5) as http:
            return (await http.get(url)).status_code == 200

    return check


async def handoffs_completed(stack: Stack) -> int:
    headers = {"X-API-Key": stack.key}
    async with httpx.AsyncClient(timeout=5, headers=headers) as http:
        body = (await http.get(f"{stack.api}/api/v1/orchestrator/pipeline")).json()
    return body["handoffs"].get("completed", 0)


async def test_dashboard_shows_a_living_pipeline(simulated_stack: Stack) -> None:
    stack = simulated_stack
    await poll(lambda: handoffs_completed(stack), "no handoff completed", within=60)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1440, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            url = stack.dashboard_url()
            assert url == f"{stack.api}/dashboard#key={stack.key}"
            await page.goto(url)
            await check_page(page, stack)
            SCREENSHOT.parent.mkdir(exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
            print(f"dashboard screenshot: {SCREENSHOT}")
            await check_login(await browser.new_page(), stack)
            assert errors == []
        finally:
            await browser.close()
    printed = [line for line in stack.output.read_text().splitlines() if stack.key in line]
    assert len(printed) == 2, printed  # the new key and the dashboard link; no request line


async def check_login(page: Page, stack: Stack) -> None:
    """Without a key (a new tab) the page asks for one, refuses a wrong one, takes a right
    one; the key never appears in a URL the page requests."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await page.goto(f"{stack.api}/dashboard")
    await expect(page.locator("#login")).to_be_visible()
    await page.locator("#key").fill("orch_wrong")
    await page.get_by_role("button", name="Open dashboard").click()
    await expect(page.locator("#login-error")).to_have_text("invalid API key")
    await page.locator("#key").fill(stack.key)
    await page.get_by_role("button", name="Open dashboard").click()
    await expect(page.locator("[data-agent]")).to_have_count(4)
    assert requested and not [url for url in requested if stack.key in url]


async def check_page(page: Page, stack: Stack) -> None:
    # the key left the address bar at once; it is sent as a header, never in a URL
    assert stack.key not in page.url
    cards = page.locator("[data-agent]")
    await expect(cards).to_have_count(4)
    assert await cards.evaluate_all("cs => cs.map(c => c.dataset.agent)") == [
        "prospector",
        "hygiene",
        "researcher",
        "outreach",
    ]
    for card in await cards.all():
        status = card.get_by_test_id("agent-status")
        await expect(status).to_have_text(re.compile(r"^(healthy|degraded|failing|unknown)$"))
    await expect(cards.first).to_contain_text("circuit")

    # a non-empty funnel and state chart; handoff counts
    counts = page.locator("#states .bar-row")
    await expect(counts.first).to_be_visible()
    assert max(int(c) for c in await _data(counts, "count")) > 0
    assert int((await _data(page.locator("#funnel .funnel-row"), "count"))[0]) > 0
    completed = page.locator('#handoff-tiles [data-kind="completed"]')
    await expect(completed).to_have_attribute("data-count", re.compile(r"^[1-9]\d*$"))

    # every workflow links to the Temporal Web UI
    links = page.locator("a.wf")
    await expect(links.first).to_be_visible()
    prefix = f"{stack.ui}/namespaces/default/workflows/"
    hrefs = await links.evaluate_all("as => as.map(a => a.href)")
    assert hrefs and all(h.startswith(prefix) for h in hrefs), hrefs
    assert any(h.startswith(prefix + "handoff-") for h in hrefs)
    # the cycles the Schedules start (the prospector leaves handoffs to the feed), and the feed
    cycles = await page.locator("#cycles a.wf").evaluate_all("as => as.map(a => a.href)")
    assert cycles and all(h.startswith(prefix) for h in cycles), cycles
    feed = page.locator('#feed [data-kind="feed-lag"]')
    await expect(feed).to_have_attribute("data-running", "true")
    assert prefix + "feed-orchestrator" in hrefs

    # a live event (the simulation keeps handing off) reaches the page through the stream
    await expect(page.locator("#live")).to_have_text("live")
    await expect(page.get_by_test_id("event-count")).to_have_text(
        re.compile(r"^[1-9]\d* live$"), timeout=30_000
    )
    await expect(page.locator("#events li.fresh").first).to_be_attached()


async def _data(locator: Locator, name: str) -> list[str]:
    return await locator.evaluate_all(f"els => els.map(e => e.dataset.{name})")


# --- the cockpit (api/static/cockpit.js) ---------------------------------------------------

ARTIFACTS = Path(__file__).parents[1] / "artifacts"
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


async def monitor_now(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=5, headers={"X-API-Key": stack.key}) as http:
        started = await http.post(f"{stack.api}/api/v1/orchestrator/run?mode=monitor")
    assert started.status_code == 202, started.text


def accept_dialogs(page: Page) -> None:
    """Confirm every question; answer a prompt (the pause reason) with a sentence."""

    async def on(dialog: Dialog) -> None:
        await dialog.accept("paused by the browser test")

    page.on("dialog", on)


async def test_cockpit_finds_a_journey_and_acts_only_for_an_operator(
    simulated_stack: Stack,
) -> None:
    """Find a prospect and see its journey; with the operator key retry its failed handoff,
    pause and resume an agent, run a cycle, acknowledge the alert a monitor cycle opened for
    the failing researcher; with a viewer key no action is offered. Leaves screenshots in
    tests/artifacts/."""
    stack = simulated_stack
    async with async_playwright() as pw:
        failed = await poll(lambda: first_failed(stack), "no handoff failed", within=60)
        await monitor_now(stack)  # finds the failing researcher while the page is used
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
    assert "null" not in await journey.inner_text()  # an absent part draws nothing
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

    # run a cycle from the page; acknowledge the alert of the monitor the test started
    await page.locator("#cycle-mode").select_option("validate")
    await page.locator('[data-action="run-cycle"]').click()
    await expect(answer).to_contain_text("Run cycle: started cycle-validate", timeout=SLOW)
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
