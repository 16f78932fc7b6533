"""The reports endpoints through ASGI, on SQLite and PostgreSQL: a stored report by date, today's,
the list, the latest weekly one, Markdown, and (re)generation through a real report cycle on a
real Temporal dev server and worker.

Reports are stored with ``generate_report`` itself (what the activity and the CLI run), over a
small seed whose figures are written out here by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from db.commands.reports import REPORT_GENERATED, ReportConfig, generate_report
from db.models import Activity, AgentRun, Event, OutreachSequence, Prospect
from db.models import PipelineReport as ReportRow
from orchestrator.settings import Settings
from pipeline.reports import ReportKind, report_date_for, report_window
from tests.helpers.api import api_client
from tests.helpers.factories import count
from worker import build_worker

BASE = "/api/v1/orchestrator"
DAY = date(2026, 11, 10)
START, END = report_window(DAY, "UTC")  # 2026-11-09 08:00 UTC -> 2026-11-10 08:00 UTC
H, D = timedelta(hours=1), timedelta(days=1)
SPEC_KEYS = {
    "date",
    "total_prospects",
    "prospects_by_status",
    "prospects_by_tier",
    "activity",
    "sequences",
    "agents",
    "summary",
}
SUMMARY = (
    "Pipeline has 6 total prospects (2 A1, 1 A2). Added 3 new prospects today. "
    "Sent 4 emails. Response rate is strong at 20%."
)
"""The seed's summary: 6 live prospects, 3 added in the window, 4 emails in it, and 1 reply
to the 5 emails of the 7 days up to its end."""


# --- seed and helpers -----------------------------------------------------------------------


def _prospect(status: str, tier: str | None, created: datetime, n: int) -> Prospect:
    return Prospect(
        company_name=f"Company {n}",
        domain=f"c{n}.test",
        status=status,
        tier=tier,
        score=None,
        status_changed_at=created,
        created_at=created,
        updated_at=created,
        deleted_at=None,
    )


async def seed(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Rows inside and outside the window of DAY's daily report."""
    async with sessionmaker() as session:
        prospects = [
            _prospect("identified", None, START + H, 1),
            _prospect("scored", "A1", START + 2 * H, 2),
            _prospect("in_sequence", "B", START + 3 * H, 3),
            _prospect("scored", "A2", START - 2 * D, 4),
            _prospect("research_complete", "A1", START - 3 * D, 5),
            _prospect("disqualified", "D", END, 6),  # on the end: the next window's
        ]
        session.add_all(prospects)
        await session.flush()
        pid = prospects[0].id
        activities = [
            ("score_change", START + H),
            ("score_change", START + 4 * H),
            ("score_change", END),  # next window
            ("research_completed", START + 5 * H),
            *[("email_sent", START + k * H) for k in (1, 2, 3, 6)],
            ("email_sent", START - 2 * D),  # in the 7 days of the response rate only
            ("email_received", START + 7 * H),
        ]
        session.add_all(
            Activity(prospect_id=pid, type=kind, details=None, created_at=at)
            for kind, at in activities
        )
        session.add_all(
            OutreachSequence(
                prospect_id=pid, status=status, started_at=START - 5 * D, completed_at=done
            )
            for status, done in [
                ("active", None),
                ("active", None),
                ("completed", START + 8 * H),
                ("completed", START - H),
            ]
        )
        session.add_all(
            AgentRun(
                agent_name=agent,
                status=status,
                started_at=at,
                completed_at=at + H,
                records_processed=10 if status == "completed" else None,
                error="boom" if status == "failed" else None,
            )
            for agent, status, at in [
                ("hygiene", "completed", START + H),
                ("hygiene", "failed", START + 2 * H),
                ("researcher", "completed", START + 3 * H),
                ("outreach", "failed", START - H),
            ]
        )
        await session.commit()


def config_of(settings: Settings) -> ReportConfig:
    return ReportConfig(settings.agents, settings.health, settings.time_zone, settings.reports.at)


async def store(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    day: date,
    kind: ReportKind = "daily",
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """Generate and store one report, as the report activity does; its payload."""
    _, end = report_window(day, settings.time_zone, settings.reports.at)
    async with sessionmaker() as session:
        report = await generate_report(session, config_of(settings), kind, day, as_of or end + H)
    return report.to_dict()


def today_for(settings: Settings) -> date:
    return report_date_for(datetime.now(UTC), settings.time_zone, settings.reports.at)


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """The API on a migrated database; reading reports needs no Temporal."""
    async with api_client(settings) as http:
        yield http


# --- a report by date -----------------------------------------------------------------------


async def test_a_date_without_a_report_is_404_saying_when_reports_run(
    api: httpx.AsyncClient,
) -> None:
    for params in ({}, {"format": "md"}):
        response = await api.get(f"{BASE}/report/{DAY}", params=params)
        assert response.status_code == 404, response.text
        detail = response.json()["detail"]
        assert "no daily report for 2026-11-10" in detail
        assert "daily at 08:00" in detail
        assert "POST /api/v1/orchestrator/reports/2026-11-10/generate" in detail


@pytest.mark.parametrize("bad", ["2026-13-45", "yesterday", "2026-02-30", "20261110"])
async def test_a_malformed_date_is_422(api: httpx.AsyncClient, bad: str) -> None:
    response = await api.get(f"{BASE}/report/{bad}")
    assert response.status_code == 422, response.text
    assert "report_date" in response.json()["detail"]


async def test_a_stored_report_has_the_spec_keys_and_the_seed_figures(
    api: httpx.AsyncClient, sessionmaker, agent_sessionmaker, settings: Settings
) -> None:
    await seed(agent_sessionmaker)
    stored = await store(sessionmaker, settings, DAY)
    response = await api.get(f"{BASE}/report/{DAY}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == stored
    assert SPEC_KEYS | {"window"} <= set(body)
    assert body["date"] == "2026-11-10"
    assert body["window"] == {"start": START.isoformat(), "end": END.isoformat()}
    assert body["total_prospects"] == 6
    assert body["prospects_by_status"] == {
        "disqualified": 1,
        "identified": 1,
        "in_sequence": 1,
        "research_complete": 1,
        "scored": 2,
    }
    assert body["prospects_by_tier"] == {"A1": 2, "A2": 1, "B": 1, "D": 1}
    assert body["activity"] == {"added": 3, "scored": 2, "researched": 1, "emails_sent": 4}
    assert body["sequences"] == {"active": 2, "completed": 1, "response_rate": pytest.approx(0.2)}
    assert body["agents"] == {"runs": 3, "errors": 1}
    assert body["summary"] == SUMMARY


async def test_a_stored_report_as_markdown(
    api: httpx.AsyncClient, sessionmaker, agent_sessionmaker, settings: Settings
) -> None:
    await seed(agent_sessionmaker)
    await store(sessionmaker, settings, DAY)
    response = await api.get(f"{BASE}/report/{DAY}", params={"format": "md"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/markdown")
    text = response.text
    assert text.startswith("## Pipeline daily report, 2026-11-10\n")
    assert SUMMARY in text
    assert "\n### Funnel\n" in text
    assert "| identified → scored |" in text
    assert "- Agent runs: 3, errors: 1" in text


async def test_an_unknown_format_is_422(
    api: httpx.AsyncClient, sessionmaker, settings: Settings
) -> None:
    await store(sessionmaker, settings, DAY)
    response = await api.get(f"{BASE}/report/{DAY}", params={"format": "xml"})
    assert response.status_code == 422, response.text
    assert "format" in response.json()["detail"]


# --- today ----------------------------------------------------------------------------------


async def test_today_is_the_report_of_the_latest_report_time(
    api: httpx.AsyncClient, sessionmaker, settings: Settings
) -> None:
    today = today_for(settings)
    missing = await api.get(f"{BASE}/report/today")
    assert missing.status_code == 404, missing.text
    assert f"no daily report for {today.isoformat()}" in missing.json()["detail"]

    # an older report is not today's
    await store(sessionmaker, settings, today - D)
    assert (await api.get(f"{BASE}/report/today")).status_code == 404

    stored = await store(sessionmaker, settings, today, as_of=datetime.now(UTC))
    response = await api.get(f"{BASE}/report/today")
    assert response.status_code == 200, response.text
    assert response.json() == stored
    assert response.json()["date"] == today.isoformat()
    markdown = await api.get(f"{BASE}/report/today", params={"format": "md"})
    assert markdown.status_code == 200
    assert f"## Pipeline daily report, {today.isoformat()}" in markdown.text


# --- the list -------------------------------------------------------------------------------


async def test_the_list_is_newest_first_and_filters_by_kind(
    api: httpx.AsyncClient, sessionmaker, settings: Settings
) -> None:
    stored = [(DAY - 2 * D, "daily"), (DAY, "daily"), (DAY - D, "weekly")]
    for day, kind in stored:
        await store(sessionmaker, settings, day, kind)

    response = await api.get(f"{BASE}/reports")
    assert response.status_code == 200, response.text
    rows = response.json()
    assert [(r["kind"], r["report_date"]) for r in rows] == [
        ("daily", "2026-11-10"),
        ("weekly", "2026-11-09"),
        ("daily", "2026-11-08"),
    ]
    assert "payload" not in rows[0]
    weekly = rows[1]
    start, end = report_window(DAY - D, "UTC", days=7)
    assert datetime.fromisoformat(weekly["window_start"]) == start
    assert datetime.fromisoformat(weekly["window_end"]) == end
    assert datetime.fromisoformat(weekly["created_at"]) == end + H

    only_weekly = await api.get(f"{BASE}/reports", params={"kind": "weekly"})
    assert [(r["kind"], r["report_date"]) for r in only_weekly.json()] == [("weekly", "2026-11-09")]
    two = await api.get(f"{BASE}/reports", params={"limit": 2})
    assert [r["report_date"] for r in two.json()] == ["2026-11-10", "2026-11-09"]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 366}, {"kind": "monthly"}])
async def test_the_list_refuses_bad_parameters(
    api: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    response = await api.get(f"{BASE}/reports", params=params)
    assert response.status_code == 422, response.text
    assert next(iter(params)) in response.json()["detail"]


# --- weekly ---------------------------------------------------------------------------------


async def test_latest_weekly_is_404_until_one_is_stored_then_the_newest(
    api: httpx.AsyncClient, sessionmaker, agent_sessionmaker, settings: Settings
) -> None:
    await store(sessionmaker, settings, DAY, "daily")  # a daily report is not a weekly one
    missing = await api.get(f"{BASE}/reports/weekly/latest")
    assert missing.status_code == 404, missing.text
    assert missing.json()["detail"] == (
        "no weekly report yet; weekly reports are generated on Mondays at 08:00"
    )

    await seed(agent_sessionmaker)
    older = await store(sessionmaker, settings, DAY - 7 * D, "weekly")
    newer = await store(sessionmaker, settings, DAY, "weekly")
    await store(sessionmaker, settings, DAY + 3 * D, "daily")  # newer, but daily

    response = await api.get(f"{BASE}/reports/weekly/latest")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == newer != older
    assert (body["kind"], body["date"]) == ("weekly", "2026-11-10")
    assert body["window"] == {"start": (END - 7 * D).isoformat(), "end": END.isoformat()}
    assert set(body) >= SPEC_KEYS
    assert {"previous_window", "deltas", "backlog", "bottleneck"} <= set(body)
    # the 7 days hold the two older prospects and the email before the daily window too
    assert body["summary"] == (
        "Pipeline has 6 total prospects (2 A1, 1 A2). Added 5 new prospects this week. "
        "Sent 5 emails. Response rate is strong at 20%."
    )

    by_date = await api.get(f"{BASE}/reports/weekly/{DAY - 7 * D}")
    assert by_date.json() == older
    markdown = await api.get(f"{BASE}/reports/weekly/latest", params={"format": "md"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith("## Pipeline weekly report, 2026-11-10\n")


# --- generation through a report cycle ------------------------------------------------------


async def test_generate_runs_a_report_cycle_and_a_second_run_replaces_the_report(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings
) -> None:
    await seed(agent_sessionmaker)
    url = f"{BASE}/reports/{DAY}/generate"
    async with (
        build_worker(client, sessionmaker, worker_settings),
        api_client(worker_settings, client) as api,
    ):
        first = await api.post(url, params={"kind": "daily"})
        assert first.status_code == 201, first.text
        async with agent_sessionmaker() as session:
            session.add(_prospect("identified", "A1", START + 9 * H, 7))
            await session.commit()
        second = await api.post(url, params={"kind": "daily"})
        assert second.status_code == 201, second.text
        fetched = await api.get(f"{BASE}/report/{DAY}")

    one, two = first.json(), second.json()
    assert SPEC_KEYS | {"window"} <= set(one)
    assert (one["date"], one["kind"]) == ("2026-11-10", "daily")
    assert one["window"] == {"start": START.isoformat(), "end": END.isoformat()}
    assert one["activity"] == {"added": 3, "scored": 2, "researched": 1, "emails_sent": 4}
    assert one["summary"] == SUMMARY
    # the second generation sees the new prospect and replaces the first
    assert (two["activity"]["added"], two["total_prospects"]) == (4, 7)
    assert two["prospects_by_tier"]["A1"] == 3
    assert datetime.fromisoformat(two["generated_at"]) > datetime.fromisoformat(one["generated_at"])
    assert fetched.json() == two

    day = ReportRow.report_date == DAY.isoformat()
    assert await count(sessionmaker, ReportRow, ReportRow.kind == "daily", day) == 1
    async with sessionmaker() as session:
        events = list(
            await session.scalars(
                select(Event).where(Event.kind == REPORT_GENERATED).order_by(Event.created_at)
            )
        )
    assert [e.payload for e in events] == [
        {"date": "2026-11-10", "kind": "daily", "summary": one["summary"]},
        {"date": "2026-11-10", "kind": "daily", "summary": two["summary"]},
    ]


async def test_generating_a_future_date_is_422_and_stores_nothing(
    api: httpx.AsyncClient, sessionmaker, settings: Settings
) -> None:
    today = today_for(settings)
    future = today + D
    response = await api.post(f"{BASE}/reports/{future}/generate")
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert f"{future.isoformat()} is in the future" in detail
    assert f"the latest report date now is {today.isoformat()}" in detail
    assert await count(sessionmaker, ReportRow) == 0


@pytest.mark.parametrize(
    "params", [{"kind": "monthly"}, {"wait_seconds": 0}], ids=["kind", "wait_seconds"]
)
async def test_generate_refuses_bad_parameters(
    api: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    response = await api.post(f"{BASE}/reports/{DAY}/generate", params=params)
    assert response.status_code == 422, response.text
    assert next(iter(params)) in response.json()["detail"]


# --- known app bugs -------------------------------------------------------------------------


async def test_a_missing_weekly_report_points_at_weekly_generation(
    api: httpx.AsyncClient,
) -> None:
    response = await api.get(f"{BASE}/reports/weekly/2026-11-09")
    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    assert "weekly reports are generated on Mondays at 08:00" in detail
    assert "/reports/2026-11-09/generate?kind=weekly" in detail


async def test_generating_a_date_whose_window_cannot_exist_is_422(
    client: Client, engine: AsyncEngine, worker_settings: Settings
) -> None:
    async with api_client(worker_settings, client) as api:
        response = await api.post(f"{BASE}/reports/0001-01-01/generate", params={"wait_seconds": 2})
    assert response.status_code == 422, response.text
