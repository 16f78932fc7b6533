"""The alert lifecycle, step by step, with a real webhook receiver on a local socket: opened,
refreshed, repeated, worsened, acknowledged, resolved; silenced agents; a sink that is down
and comes back; the watchdog and the stalled-handoffs alert; real monitor cycles delivering;
and the alerts API (filters, acknowledge, roles)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import select
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.notify import Delivery, SinkConfig, deliver_pending
from activities.upkeep import AfterCycle, AfterCycleInput, UpkeepActivities
from db.commands.alerts import AlertSpec, NotifyPolicy, raise_alert, resolve_alert
from db.commands.findings import HealthFindings, RecordHealthInput, record_health_findings
from db.commands.upkeep import UpkeepRules
from db.models import Alert, CycleHeartbeat, Handoff, Notification, OrchestratorAction
from orchestrator.settings import AlertSettings, Settings
from orchestrator.signing import SIGNATURE_HEADER, verify
from pipeline.handoffs import HandoffStatus, handoff_id
from pipeline.health import AgentHealth, HealthStatus
from tests.helpers.api import VIEWER_KEY, api_client, free_port, served
from tests.helpers.factories import NOW, add, run
from tests.helpers.handoffs import run_cycle
from worker import build_worker

SECRET = "webhook-secret"
UI = "http://temporal-ui.example:8233"
ALERTS = "/api/v1/alerts"
MINUTE, H = timedelta(minutes=1), timedelta(hours=1)
DASHBOARD = "http://orchestrator.example:8000"
POLICY = NotifyPolicy(
    sinks=["log", "webhook", "slack"], repeat_after=H, web_ui_url=UI, dashboard_url=DASHBOARD
)


# --- the receiver ------------------------------------------------------------------------


@dataclass
class Post:
    path: str
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint (``/hook``) and a Slack-compatible one (``/slack``) on a real socket.
    ``down`` makes both answer 500; refused requests are counted, not recorded."""

    url: str = ""
    down: bool = False
    posts: list[Post] = field(default_factory=list)
    refused: int = 0

    def hooks(self) -> list[Post]:
        return [p for p in self.posts if p.path == "/hook"]

    def slack(self) -> list[str]:
        return [p.json["text"] for p in self.posts if p.path == "/slack"]

    def events(self) -> list[str]:
        return [p.json["event"] for p in self.hooks()]

    def sinks(self, **overrides: Any) -> SinkConfig:
        values = dict(
            webhook_url=f"{self.url}/hook", webhook_secret=SECRET, slack_url=f"{self.url}/slack"
        )
        return SinkConfig(**{**values, **overrides})


def receiver_app(rx: Receiver) -> FastAPI:
    app = FastAPI()

    async def record(request: Request) -> Response:
        body = await request.body()
        if rx.down:
            rx.refused += 1
            return Response("sink is down", status_code=500)
        rx.posts.append(Post(request.url.path, body, dict(request.headers)))
        return Response("ok")

    app.add_api_route("/hook", record, methods=["POST"])
    app.add_api_route("/slack", record, methods=["POST"])
    return app


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()
    async with served(receiver_app(rx), free_port()) as url:
        rx.url = url
        yield rx


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


# --- helpers -----------------------------------------------------------------------------


def health(agent: str, status: str, rate: float, at: datetime) -> AgentHealth:
    """A health verdict as the monitor would compute it."""
    unhealthy = status in ("degraded", "failing")
    return AgentHealth(
        agent_name=agent,
        status=HealthStatus(status),
        reasons=[f"error rate {rate:.0%} in the window"] if unhealthy else [],
        last_successful_run=at - H,
        last_run_duration_seconds=60.0,
        avg_run_duration_seconds=60.0,
        runs_last_24h=10,
        errors_last_24h=round(rate * 10),
        error_rate=rate,
        avg_records_per_run=20.0,
        expected_records_per_run=20,
        last_failure_at=at - H if rate else None,
        last_error="boom" if rate else None,
        checked_at=at,
    )


async def findings(
    sessionmaker, at: datetime, *agents: AgentHealth, policy: NotifyPolicy = POLICY
) -> HealthFindings:
    cycle = RecordHealthInput(cycle_id=f"cycle-{at.isoformat()}", as_of=at, agents=list(agents))
    async with sessionmaker() as session:
        return await record_health_findings(session, cycle, policy, breaker=False)


async def deliver(sessionmaker, sinks: SinkConfig, http: httpx.AsyncClient) -> Delivery:
    async with sessionmaker() as session:
        return await deliver_pending(session, sinks, http)


async def notifications(sessionmaker, **where: object) -> list[Notification]:
    async with sessionmaker() as session:
        query = select(Notification).filter_by(**where).order_by(Notification.id)
        return list(await session.scalars(query))


async def alerts(sessionmaker, **where: object) -> list[Alert]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Alert).filter_by(**where).order_by(Alert.id)))


async def the_alert(sessionmaker, fingerprint: str) -> Alert:
    [alert] = await alerts(sessionmaker, fingerprint=fingerprint)
    return alert


def per_sink(rows: list[Notification]) -> list[tuple[str, str]]:
    return sorted((r.sink, r.event) for r in rows)


def each_sink(event: str) -> list[tuple[str, str]]:
    return [("log", event), ("slack", event), ("webhook", event)]


def signed(post: Post) -> bool:
    return verify(post.body, SECRET, post.headers.get(SIGNATURE_HEADER.lower()))


# --- the lifecycle -----------------------------------------------------------------------


async def test_alert_lifecycle_notifies_only_news_on_every_sink(
    sessionmaker, settings: Settings, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    sinks, t0 = receiver.sinks(), NOW
    fingerprint = "agent_health:hygiene"

    # opened: one notification per sink, delivered, the webhook signed
    opened = await findings(sessionmaker, t0, health("hygiene", "degraded", 0.2, t0))
    assert (opened.alerts_created, opened.alerts_updated) == (1, 0)
    rows = await notifications(sessionmaker)
    assert per_sink(rows) == each_sink("opened")
    assert {r.status for r in rows} == {"pending"}
    assert (await deliver(sessionmaker, sinks, http)).sent == 3
    alert = await the_alert(sessionmaker, fingerprint)
    [hook] = receiver.hooks()
    assert signed(hook)
    assert not verify(hook.body, "another secret", hook.headers.get(SIGNATURE_HEADER.lower()))
    assert hook.headers["content-type"] == "application/json"
    body = hook.json
    assert body["event"] == "opened" and body["alert_id"] == alert.id
    assert (body["agent"], body["severity"], body["status"]) == ("hygiene", "warning", "degraded")
    assert body["message"] == alert.message
    assert body["message"].startswith("hygiene is degraded: 20% error rate")
    assert (body["web_ui_url"], body["count"], body["error_rate"]) == (UI, 1, 0.2)
    [text] = receiver.slack()
    assert "*hygiene*" in text and "status degraded" in text and "error rate 20%" in text
    assert f"<{UI}|" in text and text.startswith(":rotating_light:")

    # seen again before the repeat interval: updated, nobody is told
    again = await findings(sessionmaker, t0 + 10 * MINUTE, health("hygiene", "degraded", 0.2, t0))
    assert (again.alerts_created, again.alerts_updated) == (0, 1)
    assert (await the_alert(sessionmaker, fingerprint)).count == 2
    assert len(await notifications(sessionmaker)) == 3
    assert (await deliver(sessionmaker, sinks, http)).sent == 0
    # an activity retried at the same instant changes nothing
    retried = await findings(sessionmaker, t0 + 10 * MINUTE, health("hygiene", "degraded", 0.2, t0))
    assert (retried.alerts_updated, (await the_alert(sessionmaker, fingerprint)).count) == (0, 2)

    # still open after repeat_after: a reminder
    await findings(sessionmaker, t0 + 61 * MINUTE, health("hygiene", "degraded", 0.2, t0))
    assert per_sink(await notifications(sessionmaker, event="repeat")) == each_sink("repeat")
    assert (await deliver(sessionmaker, sinks, http)).sent == 3
    assert receiver.events() == ["opened", "repeat"]
    assert receiver.hooks()[-1].json["count"] == 3
    assert receiver.slack()[-1].startswith(":hourglass:")

    # acknowledged through the API: no more reminders
    async with api_client(settings) as api:
        response = await api.post(f"{ALERTS}/{alert.id}/acknowledge")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "acknowledged"
    assert response.json()["acknowledged_by"] == "test-operator"
    await findings(sessionmaker, t0 + 3 * H, health("hygiene", "degraded", 0.2, t0))
    assert (await the_alert(sessionmaker, fingerprint)).count == 4
    assert len(await notifications(sessionmaker)) == 6

    # but worse news is still sent
    worse = t0 + 3 * H + 10 * MINUTE
    await findings(sessionmaker, worse, health("hygiene", "failing", 0.5, worse))
    assert per_sink(await notifications(sessionmaker, event="worsened")) == each_sink("worsened")
    assert (await deliver(sessionmaker, sinks, http)).sent == 3
    body = receiver.hooks()[-1].json
    assert (body["event"], body["severity"], body["status"]) == ("worsened", "critical", "failing")
    assert "status failing" in receiver.slack()[-1] and "error rate 50%" in receiver.slack()[-1]
    current = await the_alert(sessionmaker, fingerprint)
    assert (current.status, current.severity, current.count) == ("acknowledged", "critical", 5)

    # healthy again: exactly one "resolved", and nothing after it
    healed = await findings(sessionmaker, t0 + 4 * H, health("hygiene", "healthy", 0.0, t0))
    assert healed.alerts_resolved == 1
    await findings(sessionmaker, t0 + 5 * H, health("hygiene", "healthy", 0.0, t0))
    assert per_sink(await notifications(sessionmaker, event="resolved")) == each_sink("resolved")
    assert (await deliver(sessionmaker, sinks, http)).sent == 3
    assert (await deliver(sessionmaker, sinks, http)).sent == 0
    assert receiver.events() == ["opened", "repeat", "worsened", "resolved"]
    assert all(signed(p) for p in receiver.hooks())
    assert receiver.slack()[-1] == ":white_check_mark: *hygiene* resolved"
    resolved = await the_alert(sessionmaker, fingerprint)
    assert (resolved.status, resolved.resolved_at) == ("resolved", t0 + 4 * H)
    rows = await notifications(sessionmaker)
    assert len(rows) == 12 and {(r.status, r.attempts) for r in rows} == {("sent", 1)}


async def test_a_new_occurrence_after_resolution_is_a_new_alert(
    sessionmaker, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    t0 = NOW
    await findings(sessionmaker, t0, health("hygiene", "failing", 0.6, t0))
    await findings(sessionmaker, t0 + H, health("hygiene", "healthy", 0.0, t0))
    await findings(sessionmaker, t0 + 2 * H, health("hygiene", "degraded", 0.2, t0))
    await deliver(sessionmaker, receiver.sinks(), http)
    first, second = await alerts(sessionmaker)
    assert (first.status, second.status, second.count) == ("resolved", "open", 1)
    assert receiver.events() == ["opened", "resolved", "opened"]
    assert [p.json["alert_id"] for p in receiver.hooks()] == [first.id, first.id, second.id]


# --- silence -----------------------------------------------------------------------------


async def test_silenced_agent_alerts_are_recorded_but_sent_only_after_the_silence(
    sessionmaker, settings: Settings, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    now = datetime.now(UTC)
    async with api_client(settings) as api:
        response = await api.post(
            "/api/v1/agents/hygiene/silence", json={"until": (now + H).isoformat()}
        )
    assert response.status_code == 200, response.text
    assert datetime.fromisoformat(response.json()["silenced_until"]) == now + H
    sinks = receiver.sinks()

    t1 = now + MINUTE
    found = await findings(
        sessionmaker,
        t1,
        health("hygiene", "degraded", 0.2, t1),
        health("outreach", "degraded", 0.25, t1),
    )
    assert found.alerts_created == 2
    t2 = now + 30 * MINUTE
    await findings(
        sessionmaker,
        t2,
        health("hygiene", "failing", 0.5, t2),
        health("outreach", "degraded", 0.25, t2),
    )
    assert (await deliver(sessionmaker, sinks, http)).sent == 3
    assert {p.json["agent"] for p in receiver.hooks()} == {"outreach"}
    hygiene = await the_alert(sessionmaker, "agent_health:hygiene")
    assert (hygiene.status, hygiene.severity, hygiene.count) == ("open", "critical", 2)
    assert hygiene.notified_at is None
    assert await notifications(sessionmaker, alert_id=hygiene.id) == []

    # the silence is over: the next sighting is sent
    t3 = now + 2 * H
    await findings(sessionmaker, t3, health("hygiene", "failing", 0.5, t3))
    assert len(await notifications(sessionmaker, alert_id=hygiene.id)) == 3
    assert (await deliver(sessionmaker, sinks, http)).sent == 3
    body = receiver.hooks()[-1].json
    assert (body["agent"], body["severity"], body["count"]) == ("hygiene", "critical", 3)
    assert signed(receiver.hooks()[-1])
    assert "*hygiene*" in receiver.slack()[-1] and "error rate 50%" in receiver.slack()[-1]


async def test_first_notification_after_a_silence_is_sent_as_opened(
    sessionmaker, settings: Settings
) -> None:
    now = datetime.now(UTC)
    async with api_client(settings) as api:
        response = await api.post(
            "/api/v1/agents/hygiene/silence", json={"until": (now + H).isoformat()}
        )
    assert response.status_code == 200, response.text
    await findings(sessionmaker, now + MINUTE, health("hygiene", "degraded", 0.2, now))
    await findings(sessionmaker, now + 2 * H, health("hygiene", "degraded", 0.2, now))
    assert {r.event for r in await notifications(sessionmaker)} == {"opened"}


# --- a sink that is down -----------------------------------------------------------------


async def test_sink_down_keeps_notifications_pending_and_sends_them_once_when_back(
    sessionmaker, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    sinks, t0 = receiver.sinks(), NOW
    receiver.down = True
    await findings(sessionmaker, t0, health("hygiene", "degraded", 0.2, t0))

    first = await deliver(sessionmaker, sinks, http)
    assert (first.sent, first.failed, first.given_up) == (1, 2, 0)  # the log always works
    second = await deliver(sessionmaker, sinks, http)
    assert (second.sent, second.failed) == (0, 2)
    rows = {r.sink: r for r in await notifications(sessionmaker)}
    assert (rows["log"].status, rows["log"].attempts) == ("sent", 1)
    for sink in ("webhook", "slack"):
        assert (rows[sink].status, rows[sink].attempts, rows[sink].sent_at) == ("pending", 2, None)
        assert rows[sink].last_error == f"{sink} answered HTTP 500"
    assert receiver.refused == 4 and receiver.posts == []

    # the alert itself is unaffected, and keeps being refreshed meanwhile
    await findings(sessionmaker, t0 + 5 * MINUTE, health("hygiene", "degraded", 0.2, t0))
    alert = await the_alert(sessionmaker, "agent_health:hygiene")
    assert (alert.status, alert.count, alert.notified_at) == ("open", 2, t0)
    assert len(await notifications(sessionmaker)) == 3

    receiver.down = False
    back = await deliver(sessionmaker, sinks, http)
    assert (back.sent, back.failed) == (2, 0)
    assert (await deliver(sessionmaker, sinks, http)).sent == 0
    assert receiver.events() == ["opened"] and len(receiver.slack()) == 1
    assert signed(receiver.hooks()[0])
    rows = {r.sink: r for r in await notifications(sessionmaker)}
    assert {(r.status, r.attempts) for s, r in rows.items() if s != "log"} == {("sent", 3)}
    assert all(r.sent_at is not None for r in rows.values())


async def test_deliveries_are_given_up_after_max_attempts(
    sessionmaker, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    sinks, t0 = receiver.sinks(max_attempts=2), NOW
    receiver.down = True
    await findings(sessionmaker, t0, health("hygiene", "degraded", 0.2, t0))
    assert (await deliver(sessionmaker, sinks, http)).given_up == 0
    assert (await deliver(sessionmaker, sinks, http)).given_up == 2
    receiver.down = False
    assert (await deliver(sessionmaker, sinks, http)).sent == 0
    statuses = {r.sink: (r.status, r.attempts) for r in await notifications(sessionmaker)}
    assert statuses == {"log": ("sent", 1), "webhook": ("failed", 2), "slack": ("failed", 2)}
    assert receiver.posts == []


async def test_unconfigured_sink_stays_pending_with_its_reason(
    sessionmaker, http: httpx.AsyncClient
) -> None:
    await findings(sessionmaker, NOW, health("hygiene", "degraded", 0.2, NOW))
    delivery = await deliver(sessionmaker, SinkConfig(), http)
    assert (delivery.sent, delivery.failed) == (1, 2)
    [webhook] = await notifications(sessionmaker, sink="webhook")
    assert webhook.status == "pending" and "not configured" in webhook.last_error


# --- watchdog and stalled handoffs -------------------------------------------------------


def heartbeat(mode: str, at: datetime) -> CycleHeartbeat:
    """A mode that has been completing since ``at`` (its first and last time)."""
    return CycleHeartbeat(mode=mode, last_completed_at=at, first_completed_at=at)


def upkeep(sessionmaker, receiver: Receiver, http: httpx.AsyncClient) -> UpkeepActivities:
    rules = UpkeepRules(watchdog_after=(30 * MINUTE).total_seconds())
    return UpkeepActivities(sessionmaker, rules, POLICY, receiver.sinks(), http)


async def after_cycle(activities: UpkeepActivities, at: datetime, *completed: str) -> AfterCycle:
    input = AfterCycleInput(as_of=at, completed=list(completed))
    return await ActivityEnvironment().run(activities.after_cycle, input)


async def test_watchdog_raises_a_critical_alert_and_a_fresh_heartbeat_resolves_it(
    sessionmaker, agent_sessionmaker, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    t0, activities = NOW, upkeep(sessionmaker, receiver, http)
    await add(agent_sessionmaker, heartbeat("monitor", t0 - 20 * MINUTE))
    assert (await after_cycle(activities, t0, "handoffs")).watchdog == "unchanged"

    late = await after_cycle(activities, t0 + 15 * MINUTE, "handoffs")
    assert (late.watchdog, late.delivery.sent) == ("created", 3)
    alert = await the_alert(sessionmaker, "watchdog")
    assert (alert.kind, alert.severity, alert.status, alert.agent_name) == (
        "watchdog",
        "critical",
        "open",
        None,
    )
    assert "no monitor cycle has completed since" in alert.message
    [hook] = receiver.hooks()
    assert signed(hook)
    assert (hook.json["kind"], hook.json["severity"], hook.json["event"]) == (
        "watchdog",
        "critical",
        "opened",
    )
    assert receiver.slack()[0].startswith(":rotating_light: *watchdog*")

    still = await after_cycle(activities, t0 + 20 * MINUTE, "handoffs")
    assert (still.watchdog, still.delivery.sent) == ("updated", 0)

    fresh = await after_cycle(activities, t0 + 25 * MINUTE, "monitor")
    assert (fresh.watchdog, fresh.delivery.sent) == ("resolved", 3)
    assert (await the_alert(sessionmaker, "watchdog")).status == "resolved"
    assert receiver.events() == ["opened", "resolved"]
    assert (await after_cycle(activities, t0 + 30 * MINUTE, "handoffs")).watchdog == "unchanged"
    async with sessionmaker() as session:
        beats = {
            b.mode: (b.first_completed_at, b.last_completed_at)
            for b in await session.scalars(select(CycleHeartbeat))
        }
    assert beats == {
        "monitor": (t0 - 20 * MINUTE, t0 + 25 * MINUTE),
        "handoffs": (t0, t0 + 30 * MINUTE),
    }


async def test_watchdog_barks_when_no_monitor_cycle_ever_completed(
    sessionmaker, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    t0, activities = NOW, upkeep(sessionmaker, receiver, http)
    assert (await after_cycle(activities, t0)).watchdog == "unchanged"  # nothing has run yet
    assert (await after_cycle(activities, t0, "handoffs")).watchdog == "unchanged"
    assert (await after_cycle(activities, t0 + 30 * MINUTE, "report")).watchdog == "unchanged"

    late = await after_cycle(activities, t0 + 31 * MINUTE, "handoffs")
    assert (late.watchdog, late.delivery.sent) == ("created", 3)
    alert = await the_alert(sessionmaker, "watchdog")
    assert (alert.severity, alert.status) == ("critical", "open")
    assert alert.message.startswith("no monitor cycle has ever completed")
    assert t0.isoformat() in alert.message

    first = await after_cycle(activities, t0 + 32 * MINUTE, "monitor")
    assert first.watchdog == "resolved"


def stalled_row(pid: int, status: HandoffStatus, at: datetime) -> Handoff:
    return Handoff(
        id=handoff_id(pid, "identified", at),
        prospect_id=pid,
        from_state="identified",
        state_entered_at=at,
        to_agent="hygiene",
        status=status.value,
        attempt=1,
        created_at=at,
        updated_at=at,
    )


async def test_each_stalled_handoff_raises_its_own_alert_until_it_clears(
    sessionmaker, agent_sessionmaker, receiver: Receiver, http: httpx.AsyncClient
) -> None:
    t0, activities = NOW, upkeep(sessionmaker, receiver, http)
    await add(agent_sessionmaker, heartbeat("monitor", t0))
    await add(
        agent_sessionmaker,
        *[stalled_row(pid, HandoffStatus.STALLED, t0) for pid in (1, 2)],
        stalled_row(3, HandoffStatus.RUNNING, t0),
    )
    first = await after_cycle(activities, t0, "handoffs")
    assert (first.stalled, first.delivery.sent) == (2, 6)  # two alerts, three sinks each
    stall = await the_alert(sessionmaker, f"stalled_handoff:{handoff_id(1, 'identified', t0)}")
    assert (stall.kind, stall.severity, stall.status, stall.agent_name) == (
        "stalled_handoff",
        "warning",
        "open",
        "hygiene",
    )
    assert stall.details == {"prospect_id": 1, "handoff_id": handoff_id(1, "identified", t0)}
    assert "prospect 1 to hygiene is stalled" in stall.message
    hook = receiver.hooks()[0].json
    assert hook["kind"] == "stalled_handoff"
    assert hook["dashboard_url"] == f"{DASHBOARD}/dashboard#prospect={hook['prospect_id']}"

    await add(agent_sessionmaker, stalled_row(4, HandoffStatus.STALLED, t0))
    again = await after_cycle(activities, t0 + MINUTE, "handoffs")
    assert (again.stalled, again.delivery.sent) == (3, 3)  # only the new one is news

    async with sessionmaker() as session:
        for row in await session.scalars(select(Handoff).where(Handoff.prospect_id.in_([1, 2]))):
            row.status, row.finished_at = HandoffStatus.COMPLETED.value, t0 + MINUTE
        await session.commit()
    cleared = await after_cycle(activities, t0 + 2 * MINUTE, "handoffs")
    assert cleared.stalled == 1
    assert [a.status for a in await alerts(sessionmaker, kind="stalled_handoff")] == [
        "resolved",
        "resolved",
        "open",
    ]
    assert receiver.events() == ["opened", "opened", "opened", "resolved", "resolved"]


# --- through real cycles -----------------------------------------------------------------


def alerting(settings: Settings, receiver: Receiver) -> Settings:
    alerts = AlertSettings(
        webhook_url=f"{receiver.url}/hook",
        webhook_secret=SECRET,
        slack_webhook_url=f"{receiver.url}/slack",
    )
    return settings.model_copy(update={"alerts": alerts})


async def test_monitor_cycles_deliver_opened_worsened_and_resolved(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings, receiver: Receiver
) -> None:
    settings = alerting(worker_settings, receiver)
    t = datetime.now(UTC)
    # hygiene: 2 of 10 runs failed (20%): degraded
    await add(
        agent_sessionmaker,
        *[
            run("hygiene", "failed" if i < 2 else "completed", ago=H * (1 + i), now=t)
            for i in range(10)
        ],
    )
    async with build_worker(client, sessionmaker, settings):
        first = await run_cycle(client, settings, "monitor")
        second = await run_cycle(client, settings, "monitor")
        # 7 of 15 failed: failing
        await add(
            agent_sessionmaker,
            *[run("hygiene", "failed", ago=H * 11 + MINUTE * i, now=t) for i in range(5)],
        )
        third = await run_cycle(client, settings, "monitor")
        # many good runs: healthy again
        await add(
            agent_sessionmaker, *[run("hygiene", ago=MINUTE * (5 + i), now=t) for i in range(60)]
        )
        fourth = await run_cycle(client, settings, "monitor")

    summaries = [first, second, third, fourth]
    assert all(s.health is not None and s.upkeep is not None for s in summaries)
    assert [s.health.statuses["hygiene"] for s in summaries if s.health] == [
        HealthStatus.DEGRADED,
        HealthStatus.DEGRADED,
        HealthStatus.FAILING,
        HealthStatus.HEALTHY,
    ]
    assert [s.upkeep.delivery.sent for s in summaries if s.upkeep] == [3, 0, 3, 3]
    assert [s.upkeep.watchdog for s in summaries if s.upkeep] == ["unchanged"] * 4
    assert receiver.events() == ["opened", "worsened", "resolved"]
    assert all(signed(p) for p in receiver.hooks())
    opened, worsened, _ = (p.json for p in receiver.hooks())
    assert (opened["agent"], opened["severity"], opened["count"]) == ("hygiene", "warning", 1)
    assert (worsened["severity"], worsened["status"], worsened["count"]) == (
        "critical",
        "failing",
        3,
    )
    assert opened["web_ui_url"] == settings.temporal.web_ui_url
    texts = receiver.slack()
    assert "status degraded" in texts[0] and "error rate 20%" in texts[0]
    assert f"<{settings.temporal.web_ui_url}|Temporal Web UI>" in texts[0]
    assert "status failing" in texts[1] and "error rate 47%" in texts[1]
    assert texts[2] == ":white_check_mark: *hygiene* resolved"
    [alert] = await alerts(sessionmaker)
    assert (alert.status, alert.count) == ("resolved", 3)


async def test_cycles_raise_and_resolve_the_watchdog(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings, receiver: Receiver
) -> None:
    settings = alerting(worker_settings, receiver)
    stale = datetime.now(UTC) - 2 * H
    await add(agent_sessionmaker, heartbeat("monitor", stale))
    async with build_worker(client, sessionmaker, settings):
        handoffs = await run_cycle(client, settings, "handoffs")
        monitor = await run_cycle(client, settings, "monitor")
    assert handoffs.upkeep is not None and monitor.upkeep is not None
    assert (handoffs.upkeep.watchdog, handoffs.upkeep.delivery.sent) == ("created", 3)
    assert (monitor.upkeep.watchdog, monitor.upkeep.delivery.sent) == ("resolved", 3)
    assert [(p.json["kind"], p.json["event"]) for p in receiver.hooks()] == [
        ("watchdog", "opened"),
        ("watchdog", "resolved"),
    ]
    assert receiver.hooks()[0].json["severity"] == "critical"


# --- the alerts API ----------------------------------------------------------------------


async def seed_alerts(sessionmaker) -> dict[str, int]:
    """hygiene open (warning), researcher open (critical), outreach resolved, watchdog open."""
    policy, t0 = NotifyPolicy(), NOW
    specs = [
        AlertSpec(
            fingerprint="agent_health:hygiene",
            kind="agent_health",
            severity="warning",
            message="hygiene is degraded",
            agent_name="hygiene",
        ),
        AlertSpec(
            fingerprint="agent_health:researcher",
            kind="agent_health",
            severity="critical",
            message="researcher is failing",
            agent_name="researcher",
        ),
        AlertSpec(
            fingerprint="agent_health:outreach",
            kind="agent_health",
            severity="warning",
            message="outreach is degraded",
            agent_name="outreach",
        ),
        AlertSpec(
            fingerprint="watchdog", kind="watchdog", severity="critical", message="no monitor cycle"
        ),
    ]
    async with sessionmaker() as session:
        for i, spec in enumerate(specs):
            await raise_alert(session, spec, t0 + i * MINUTE, policy)
        await resolve_alert(session, "agent_health:outreach", t0 + 10 * MINUTE, policy)
        await session.commit()
    return {a.fingerprint: a.id for a in await alerts(sessionmaker)}


async def listed(api: httpx.AsyncClient, **params: object) -> list[str]:
    response = await api.get(ALERTS, params=params)
    assert response.status_code == 200, response.text
    return [a["fingerprint"] for a in response.json()]


async def test_alerts_api_filters_acknowledges_and_checks_roles(
    sessionmaker, settings: Settings
) -> None:
    ids = await seed_alerts(sessionmaker)
    hygiene = ids["agent_health:hygiene"]
    async with api_client(settings) as api, api_client(settings, key=VIEWER_KEY) as viewer:
        # most recently seen first
        assert await listed(viewer) == [
            "agent_health:outreach",
            "watchdog",
            "agent_health:researcher",
            "agent_health:hygiene",
        ]
        assert await listed(api, status="open") == [
            "watchdog",
            "agent_health:researcher",
            "agent_health:hygiene",
        ]
        assert await listed(api, status="resolved") == ["agent_health:outreach"]
        assert await listed(api, agent="hygiene") == ["agent_health:hygiene"]
        assert await listed(api, status="open", agent="outreach") == []
        assert await listed(api, limit=1) == ["agent_health:outreach"]
        assert (await api.get(ALERTS, params={"status": "closed"})).status_code == 422

        refused = await viewer.post(f"{ALERTS}/{hygiene}/acknowledge")
        assert refused.status_code == 403, refused.text
        assert "operator" in refused.json()["detail"]
        assert await listed(api, status="acknowledged") == []

        done = await api.post(f"{ALERTS}/{hygiene}/acknowledge")
        assert done.status_code == 200, done.text
        body = done.json()
        assert (body["id"], body["status"], body["acknowledged_by"]) == (
            hygiene,
            "acknowledged",
            "test-operator",
        )
        assert body["acknowledged_at"] is not None
        # acknowledging again changes nothing: the first acknowledgement stands, audited once
        again = await api.post(f"{ALERTS}/{hygiene}/acknowledge")
        assert again.status_code == 200, again.text
        assert again.json() == body
        assert await listed(viewer, status="acknowledged") == ["agent_health:hygiene"]
        assert await listed(api, status="open") == ["watchdog", "agent_health:researcher"]

        missing = await api.post(f"{ALERTS}/999999/acknowledge")
        assert missing.status_code == 404, missing.text
        resolved = await api.post(f"{ALERTS}/{ids['agent_health:outreach']}/acknowledge")
        assert resolved.status_code == 409, resolved.text
        assert "already resolved" in resolved.json()["detail"]
        assert (await api.post(f"{ALERTS}/0/acknowledge")).status_code == 422
    async with sessionmaker() as session:
        audit = list(
            await session.scalars(
                select(OrchestratorAction).where(OrchestratorAction.action == "alert_acknowledged")
            )
        )
    assert [(a.agent_name, a.details) for a in audit] == [
        (
            "hygiene",
            {"alert_id": hygiene, "fingerprint": "agent_health:hygiene", "by": "test-operator"},
        ),
    ]
