"""Daily and weekly reports over a seeded database, on SQLite and PostgreSQL.

Every expected figure is computed here, in Python, from the seed lists (never by running the
report's SQL again), so a wrong filter, boundary or join in the queries shows up.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.reports import GenerateReportInput, ReportActivities
from db.commands.reports import (
    ReportConfig,
    build_daily_report,
    build_weekly_report,
    latest_report_before,
    load_report,
    store_report,
)
from db.models import (
    Activity,
    AgentRun,
    Contact,
    Event,
    Handoff,
    OutreachSequence,
    Prospect,
    RecordLock,
    StateViolation,
)
from db.models import PipelineReport as ReportRow
from pipeline.health import DEFAULT_EXPECTED_RECORDS, HealthThresholds
from pipeline.reports import PipelineReport, WeeklyReport

TZ = "Europe/Paris"
DAY = date(2026, 11, 20)
H, D, S = timedelta(hours=1), timedelta(days=1), timedelta(seconds=1)
US = timedelta(microseconds=1)
END = datetime(2026, 11, 20, 7, tzinfo=UTC)  # 08:00 in Paris (CET, UTC+1)
START = END - D
WEEK = END - 7 * D
PREV_WEEK = END - 14 * D
THRESHOLDS = HealthThresholds()
AGENTS = DEFAULT_EXPECTED_RECORDS
FUNNEL = ["identified", "scored", "research_complete", "in_sequence", "replied", "meeting_booked"]


# --- the seed, as plain data ----------------------------------------------------------------


@dataclass(frozen=True)
class P:
    status: str
    tier: str | None
    created: datetime
    deleted: datetime | None = None
    emails: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class A:
    type: str
    at: datetime
    to: str | None = None


@dataclass
class Seed:
    prospects: list[P] = field(default_factory=list)
    activities: list[A] = field(default_factory=list)
    sequences: list[tuple[str, datetime | None]] = field(default_factory=list)
    runs: list[tuple[str, str, datetime]] = field(default_factory=list)
    handoffs: list[tuple[str, datetime]] = field(default_factory=list)
    violations: list[tuple[str, datetime | None]] = field(default_factory=list)
    lock_expiries: list[datetime] = field(default_factory=list)


def dataset() -> Seed:
    """Rows in every state and tier, inside, outside and exactly on the window's edges."""
    prospects = [
        P("identified", None, START),  # on the start: inside
        P("identified", "C", END - US),  # just before the end: inside
        P("needs_scoring", "D", START - H),
        P("scored", "A1", START - 2 * D, emails=("a@a1.test",)),
        P("scored", "B", START + 2 * H),
        P("needs_research", "A2", START - 3 * D, emails=(None,)),
        P("research_complete", "A1", START - 5 * D, emails=("ceo@x.test", None)),
        P("research_complete", "B", START - 5 * D, emails=("",)),  # no usable email
        P("research_complete", "C", START - 5 * D, emails=("c@x.test",)),  # tier too low
        P("research_complete", "A2", START - 9 * D, emails=("n/a", "@")),  # not addresses
        P("ready_for_outreach", "A2", START - 4 * D, emails=("y@x.test",)),
        P("in_sequence", "A1", START - 10 * D, emails=("z@x.test",)),
        P("replied", "A2", START - 10 * D),
        P("meeting_booked", "A1", START - 20 * D),
        P("nurture", None, START - 20 * D),
        P("disqualified", "D", START + 5 * H),
        P("scored", "A1", START + H, deleted=START + 2 * H),  # added, then deleted
        P("identified", None, END),  # on the end: the next window's
        P("closed_lost", "B", START - 8 * D),
        P("scored", "A2", START - D),
        P("needs_scoring", None, START - 6 * D),
        P("needs_research", "B", PREV_WEEK + H, deleted=WEEK),
    ]
    activities = [
        A("score_change", START),
        A("score_change", START + 3 * H),
        A("score_change", END),
        A("score_change", START - S),
        A("score_change", START - 2 * D),
        A("score_change", WEEK - D),
        A("research_completed", START + 4 * H),
        A("research_completed", START - 6 * D),
        *[A("email_sent", START + k * H) for k in (1, 2, 3, 5)],
        *[A("email_sent", START - 3 * D) for _ in range(6)],
        A("email_sent", WEEK),  # the first instant of the 7 days: counted
        A("email_sent", WEEK - S),  # just before: not counted
        *[A("email_sent", PREV_WEEK + D) for _ in range(3)],
        A("email_received", START + 6 * H),
        A("email_received", START - 2 * D),
        A("email_received", WEEK),
        A("email_received", PREV_WEEK + 2 * D),
        *[A("status_change", START + k * H, "scored") for k in (1, 2, 3)],
        *[A("status_change", START + k * H, "research_complete") for k in (4, 5)],
        A("status_change", START + 6 * H, "in_sequence"),
        A("status_change", START + 7 * H, "replied"),
        A("status_change", START + 8 * H, "identified"),  # not a real move; ignored
        A("status_change", START + 9 * H, "needs_research"),  # off the main path
        A("status_change", START + 10 * H, None),  # details without a target
        A("status_change", END, "meeting_booked"),
        *[A("status_change", START - k * H, "scored") for k in (1, 30)],
        A("status_change", START - 2 * D, "research_complete"),
        A("status_change", START - 3 * D, "in_sequence"),
        A("status_change", PREV_WEEK + D, "scored"),
        A("status_change", PREV_WEEK + D, "research_complete"),
        A("note", START + H),
    ]
    return Seed(
        prospects=prospects,
        activities=activities,
        sequences=[
            ("active", None),
            ("active", None),
            ("active", None),
            ("completed", START + H),
            ("completed", END - US),
            ("completed", END),
            ("completed", START - S),
            ("completed", WEEK + D),
            ("completed", PREV_WEEK + D),
            ("stopped", START + 2 * H),
        ],
        runs=[
            ("hygiene", "completed", START + H),
            ("hygiene", "failed", START + 2 * H),
            ("hygiene", "completed", START),
            ("hygiene", "completed", END),
            ("hygiene", "failed", START - S),
            ("hygiene", "running", START + 10 * H),
            ("researcher", "failed", START + 3 * H),
            ("outreach", "completed", START + 4 * H),
            ("outreach", "failed", WEEK + D),
            ("researcher", "completed", PREV_WEEK + D),
        ],
        handoffs=[
            ("completed", START + H),
            ("completed", START + 2 * H),
            ("failed", START + 3 * H),
            ("stalled", START + 4 * H),
            ("completed", END),
            ("pending", START - H),
        ],
        violations=[
            ("invalid_transition", None),
            ("invalid_transition", None),
            ("stuck", None),
            ("stuck", START),
        ],
        lock_expiries=[END - H, END - S, END, END + H],
    )


async def write(sessionmaker: async_sessionmaker[AsyncSession], seed: Seed) -> None:
    """The seed as rows, written the way the agents (and the orchestrator) would."""
    async with sessionmaker() as session:
        rows = [_prospect(p, i) for i, p in enumerate(seed.prospects)]
        session.add_all(rows)
        await session.flush()
        ids = [row.id for row in rows]
        session.add_all(_children(seed, ids))
        await session.commit()


def _prospect(p: P, i: int) -> Prospect:
    return Prospect(
        company_name=f"Company {i}",
        domain=f"c{i}.test",
        status=p.status,
        tier=p.tier,
        score=None,
        status_changed_at=p.created,
        created_at=p.created,
        updated_at=p.created,
        deleted_at=p.deleted,
    )


def _children(seed: Seed, ids: Sequence[int]) -> list[object]:

    def pick(i: int) -> int:
        return ids[i % len(ids)]

    rows: list[object] = [
        Contact(prospect_id=pid, name="n", email=email, title=None)
        for pid, p in zip(ids, seed.prospects, strict=True)
        for email in p.emails
    ]
    rows += [
        Activity(
            prospect_id=pick(i),
            type=a.type,
            created_at=a.at,
            details={"from": "x", "to": a.to} if a.type == "status_change" else None,
        )
        for i, a in enumerate(seed.activities)
    ]
    rows += [
        OutreachSequence(
            prospect_id=pick(i), status=status, started_at=PREV_WEEK, completed_at=done
        )
        for i, (status, done) in enumerate(seed.sequences)
    ]
    rows += [
        AgentRun(
            agent_name=agent,
            status=status,
            started_at=at,
            completed_at=None if status == "running" else at + 2 * S,
            records_processed=15 if status == "completed" else None,
            error="boom" if status == "failed" else None,
        )
        for agent, status, at in seed.runs
    ]
    rows += [
        Handoff(
            id=f"h{i}",
            prospect_id=pick(i),
            from_state="scored",
            state_entered_at=at - H,
            to_agent="researcher",
            status=status,
            created_at=at - H,
            updated_at=at,
        )
        for i, (status, at) in enumerate(seed.handoffs)
    ]
    rows += [
        StateViolation(
            prospect_id=pick(i),
            kind=kind,
            state="scored",
            first_seen=PREV_WEEK,
            last_seen=PREV_WEEK,
            resolved_at=resolved,
        )
        for i, (kind, resolved) in enumerate(seed.violations)
    ]
    rows += [
        RecordLock(
            prospect_id=pick(i),
            agent_name="hygiene",
            run_id=None,
            acquired_at=expiry - H,
            expires_at=expiry,
        )
        for i, expiry in enumerate(seed.lock_expiries)
    ]
    return rows


# --- expectations, computed from the seed ---------------------------------------------------


def between(lo: datetime, hi: datetime) -> Callable[[datetime | None], bool]:
    return lambda t: t is not None and lo <= t < hi


def activity_count(seed: Seed, type_: str, inside: Callable[[datetime | None], bool]) -> int:
    return sum(1 for a in seed.activities if a.type == type_ and inside(a.at))


def expected_window(seed: Seed, lo: datetime, hi: datetime, rate_lo: datetime) -> dict:
    inside, rate = between(lo, hi), between(rate_lo, hi)
    sent_7d = activity_count(seed, "email_sent", rate)
    replies_7d = activity_count(seed, "email_received", rate)
    return {
        "added": sum(1 for p in seed.prospects if inside(p.created)),
        "scored": activity_count(seed, "score_change", inside),
        "researched": activity_count(seed, "research_completed", inside),
        "emails_sent": activity_count(seed, "email_sent", inside),
        "sequences_completed": sum(1 for s, t in seed.sequences if s == "completed" and inside(t)),
        "agent_runs": sum(1 for _, _, t in seed.runs if inside(t)),
        "agent_errors": sum(1 for _, s, t in seed.runs if s == "failed" and inside(t)),
        "response_rate": replies_7d / sent_7d if sent_7d else 0.0,
    }


def expected_funnel(seed: Seed, lo: datetime, hi: datetime) -> list[dict]:
    inside = between(lo, hi)
    entered = Counter(a.to for a in seed.activities if a.type == "status_change" and inside(a.at))
    entered["identified"] = sum(1 for p in seed.prospects if inside(p.created))
    return [
        {
            "from": a,
            "to": b,
            "entered_from": entered[a],
            "entered_to": entered[b],
            "conversion": entered[b] / entered[a] if entered[a] else 0.0,
        }
        for a, b in pairwise(FUNNEL)
    ]


def live(seed: Seed) -> list[P]:
    return [p for p in seed.prospects if p.deleted is None]


def expected_backlog(seed: Seed) -> dict[str, int]:
    """The trigger conditions of DESIGN.md, written out by hand."""
    backlog = dict.fromkeys(AGENTS, 0)
    for p in live(seed):
        has_email = any(e and re.search(".@.", e) for e in p.emails)
        if p.status in ("identified", "needs_scoring"):
            backlog["hygiene"] += 1
        elif p.status == "needs_research" or (p.status == "scored" and p.tier in ("A1", "A2")):
            backlog["researcher"] += 1
        elif p.status == "ready_for_outreach" or (
            p.status == "research_complete" and p.tier in ("A1", "A2", "B") and has_email
        ):
            backlog["outreach"] += 1
    return backlog


def pipeline_figures(seed: Seed) -> dict[str, Any]:
    alive = live(seed)
    return {
        "total_prospects": len(alive),
        "prospects_by_status": dict(Counter(p.status for p in alive)),
        "prospects_by_tier": dict(Counter(p.tier for p in alive if p.tier)),
    }


# --- helpers --------------------------------------------------------------------------------


async def daily(
    sessionmaker: async_sessionmaker[AsyncSession],
    day: date = DAY,
    previous: PipelineReport | None = None,
) -> PipelineReport:
    async with sessionmaker() as session:
        return await build_daily_report(
            session,
            report_date=day,
            tz=TZ,
            expected_agents=AGENTS,
            thresholds=THRESHOLDS,
            previous=previous,
            generated_at=END + H,
        )


async def weekly(sessionmaker: async_sessionmaker[AsyncSession]) -> WeeklyReport:
    async with sessionmaker() as session:
        return await build_weekly_report(
            session,
            report_date=DAY,
            tz=TZ,
            expected_agents=AGENTS,
            thresholds=THRESHOLDS,
            generated_at=END + H,
        )


def emails_at(times: Sequence[datetime]) -> Seed:
    return Seed(
        prospects=[P("identified", None, PREV_WEEK)],
        activities=[A("email_sent", t) for t in times],
    )


def activities_for(sessionmaker: async_sessionmaker[AsyncSession], tz: str = TZ) -> Any:
    acts = ReportActivities(sessionmaker, ReportConfig(AGENTS, THRESHOLDS, tz))
    env = ActivityEnvironment()

    async def generate(**kwargs: Any) -> Any:
        return await env.run(acts.generate_report, GenerateReportInput(**kwargs))

    return generate


async def scalar(sessionmaker: async_sessionmaker[AsyncSession], query: Any) -> Any:
    async with sessionmaker() as session:
        return (await session.execute(query)).scalar_one()


# --- the daily report -----------------------------------------------------------------------


async def test_daily_report_figures_match_the_seed(sessionmaker, agent_sessionmaker) -> None:
    seed = dataset()
    await write(agent_sessionmaker, seed)
    data = (await daily(sessionmaker)).to_dict()

    figures = expected_window(seed, START, END, WEEK)
    assert figures == {  # the seed's edges are what this test is about: spell them out
        "added": 5,
        "scored": 2,
        "researched": 1,
        "emails_sent": 4,
        "sequences_completed": 2,
        "agent_runs": 6,
        "agent_errors": 2,
        "response_rate": 3 / 11,
    }
    assert {k: data[k] for k in pipeline_figures(seed)} == pipeline_figures(seed)
    assert data["date"] == "2026-11-20"
    assert data["window"] == {"start": START.isoformat(), "end": END.isoformat()}
    assert data["activity"] == {
        k: figures[k] for k in ("added", "scored", "researched", "emails_sent")
    }
    assert data["sequences"] == {
        "active": sum(1 for s, _ in seed.sequences if s == "active"),
        "completed": figures["sequences_completed"],
        "response_rate": pytest.approx(figures["response_rate"]),
    }
    assert data["agents"] == {"runs": figures["agent_runs"], "errors": figures["agent_errors"]}
    assert data["handoffs"] == dict(Counter(s for s, t in seed.handoffs if START <= t < END))
    assert data["open_violations"] == dict(Counter(k for k, r in seed.violations if r is None))
    assert data["open_conflicts"] == sum(1 for t in seed.lock_expiries if t < END)
    assert data["funnel"] == expected_funnel(seed, START, END)
    assert set(data["funnel_change"].values()) == {None}
    by_tier = pipeline_figures(seed)["prospects_by_tier"]
    assert data["summary"] == (
        f"Pipeline has {len(live(seed))} total prospects ({by_tier['A1']} A1, {by_tier['A2']} "
        "A2). Added 5 new prospects today. Sent 4 emails. Response rate is strong at 27%."
    )


async def test_daily_report_judges_agent_health_at_the_window_end(
    sessionmaker, agent_sessionmaker
) -> None:
    seed = dataset()
    await write(agent_sessionmaker, seed)
    report = await daily(sessionmaker)
    assert [h.agent_name for h in report.agent_health] == list(AGENTS)
    assert {h.checked_at for h in report.agent_health} == {END}
    hygiene = report.agent_health[1]
    # health's own window is the 24 hours up to and including its instant
    runs = [(s, t) for a, s, t in seed.runs if a == "hygiene" and END - D <= t <= END]
    assert hygiene.runs_last_24h == len(runs)
    assert hygiene.errors_last_24h == sum(1 for s, _ in runs if s == "failed")


async def test_empty_database_gives_a_zero_report(sessionmaker) -> None:
    report = await daily(sessionmaker)
    assert report.total_prospects == 0 and report.counts.response_rate == 0.0
    assert report.summary == (
        "Pipeline has 0 total prospects (0 A1, 0 A2). Added 0 new prospects today. Sent 0 emails."
    )
    assert all(step.conversion == 0.0 for step in report.funnel)


async def test_previous_report_gives_the_funnel_change(sessionmaker, agent_sessionmaker) -> None:
    seed = dataset()
    await write(agent_sessionmaker, seed)
    yesterday = await daily(sessionmaker, DAY - timedelta(days=1))
    today = await daily(sessionmaker, previous=yesterday)
    before = {f"{s['from']}->{s['to']}": s for s in expected_funnel(seed, START - D, START)}
    now = {f"{s['from']}->{s['to']}": s for s in expected_funnel(seed, START, END)}
    assert before["identified->scored"]["entered_to"] == 1  # the seed moves between days
    assert today.funnel_change == {
        key: pytest.approx(now[key]["conversion"] - before[key]["conversion"]) for key in now
    }


# --- the weekly report ----------------------------------------------------------------------


async def test_weekly_report_deltas_backlog_and_bottleneck(
    sessionmaker, agent_sessionmaker
) -> None:
    seed = dataset()
    await write(agent_sessionmaker, seed)
    report = await weekly(sessionmaker)
    data = report.to_dict()

    this_week = expected_window(seed, WEEK, END, WEEK)
    last_week = expected_window(seed, PREV_WEEK, WEEK, PREV_WEEK)
    assert (this_week["emails_sent"], last_week["emails_sent"]) == (11, 4)
    assert data["window"] == {"start": WEEK.isoformat(), "end": END.isoformat()}
    assert data["previous_window"] == {"start": PREV_WEEK.isoformat(), "end": WEEK.isoformat()}
    assert report.counts.model_dump() == pytest.approx(this_week)
    assert data["previous"] == pytest.approx(last_week)
    assert data["deltas"] == pytest.approx({k: this_week[k] - last_week[k] for k in this_week})
    assert data["funnel"] == expected_funnel(seed, WEEK, END)
    previous_funnel = expected_funnel(seed, PREV_WEEK, WEEK)
    assert list(data["funnel_change"].values()) == pytest.approx(
        [
            a["conversion"] - b["conversion"]
            for a, b in zip(data["funnel"], previous_funnel, strict=True)
        ]
    )
    backlog = expected_backlog(seed)
    assert backlog == {"prospector": 0, "hygiene": 5, "researcher": 3, "outreach": 2}
    assert data["backlog"] == backlog
    assert data["bottleneck"] == {
        "agent": "researcher",
        "backlog": 3,
        "expected_per_run": 5,
        "runs_to_clear": 0.6,
    }
    tiers = pipeline_figures(seed)["prospects_by_tier"]
    assert (tiers["A1"], tiers["A2"], this_week["added"]) == (4, 5, 14)
    assert data["summary"] == (
        f"Pipeline has {len(live(seed))} total prospects (4 A1, 5 A2). "
        "Added 14 new prospects this week. Sent 11 emails. Response rate is strong at 27%."
    )


# --- storage --------------------------------------------------------------------------------


async def test_generating_the_same_day_again_replaces_the_report(
    sessionmaker, agent_sessionmaker
) -> None:
    seed = dataset()
    await write(agent_sessionmaker, seed)
    generate = activities_for(sessionmaker)
    first = await generate(kind="daily", as_of=END + H)
    await write(agent_sessionmaker, Seed(prospects=[P("identified", "A1", START + 3 * H)]))
    second = await generate(kind="daily", as_of=END + 2 * H)

    assert first.report_date == second.report_date == DAY
    assert (second.window_start, second.window_end) == (START, END)
    assert await scalar(sessionmaker, select(func.count()).select_from(ReportRow)) == 1
    async with sessionmaker() as session:
        stored = await load_report(session, "daily", DAY)
        events = (await session.scalars(select(Event).order_by(Event.created_at))).all()
    assert stored is not None
    assert stored["activity"]["added"] == expected_window(seed, START, END, WEEK)["added"] + 1
    assert stored["generated_at"] == (END + 2 * H).isoformat()
    assert stored["summary"] == second.summary != first.summary
    assert [(e.kind, e.payload) for e in events] == [
        ("report_generated", {"date": "2026-11-20", "kind": "daily", "summary": first.summary}),
        ("report_generated", {"date": "2026-11-20", "kind": "daily", "summary": second.summary}),
    ]
    assert events[1].dedup_key == f"report:daily:2026-11-20:{(END + 2 * H).isoformat()}"


async def test_a_retried_generation_writes_one_row_and_one_event(sessionmaker) -> None:
    generate = activities_for(sessionmaker)
    for _ in range(2):
        await generate(kind="daily", as_of=END + H)
    assert await scalar(sessionmaker, select(func.count()).select_from(ReportRow)) == 1
    assert await scalar(sessionmaker, select(func.count()).select_from(Event)) == 1


async def test_a_stale_generation_does_not_replace_a_newer_one(sessionmaker) -> None:
    newer = (await daily(sessionmaker)).model_copy(update={"generated_at": END + 3 * H})
    older = newer.model_copy(update={"generated_at": END + H, "summary": "stale"})
    async with sessionmaker() as session:
        await store_report(session, newer)
        await store_report(session, older)
        stored = await load_report(session, "daily", DAY)
    assert stored == newer.to_dict()
    assert await scalar(sessionmaker, select(func.count()).select_from(Event)) == 1


async def test_daily_and_weekly_of_the_same_date_are_separate(
    sessionmaker, agent_sessionmaker
) -> None:
    await write(agent_sessionmaker, dataset())
    generate = activities_for(sessionmaker)
    await generate(kind="daily", report_date=DAY, as_of=END + H)
    weekly_result = await generate(kind="weekly", report_date=DAY, as_of=END + H)
    assert weekly_result.window_start == WEEK
    async with sessionmaker() as session:
        assert (await load_report(session, "weekly", DAY))["kind"] == "weekly"
        assert await load_report(session, "weekly", DAY - timedelta(days=1)) is None
        latest = await latest_report_before(session, "weekly", DAY + timedelta(days=7))
    assert isinstance(latest, WeeklyReport)
    assert latest.bottleneck is not None and latest.bottleneck.agent == "researcher"


async def test_generated_report_uses_the_previous_stored_one(
    sessionmaker, agent_sessionmaker
) -> None:
    seed = dataset()
    await write(agent_sessionmaker, seed)
    generate = activities_for(sessionmaker)
    await generate(kind="daily", report_date=DAY - timedelta(days=1), as_of=END + H)
    await generate(kind="daily", as_of=END + H)
    async with sessionmaker() as session:
        stored = await load_report(session, "daily", DAY)
        previous = await latest_report_before(session, "daily", DAY)
    assert previous is not None and previous.report_date == DAY - timedelta(days=1)
    assert stored is not None
    assert stored["funnel_change"]["identified->scored"] == pytest.approx(
        expected_funnel(seed, START, END)[0]["conversion"]
        - expected_funnel(seed, START - D, START)[0]["conversion"]
    )


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [(END - 60 * S, DAY - timedelta(days=1)), (END, DAY), (END + 20 * H, DAY)],
    ids=["07:59-local", "08:00-local", "next-night"],
)
async def test_report_date_defaults_to_the_latest_eight_oclock(
    sessionmaker, as_of: datetime, expected: date
) -> None:
    result = await activities_for(sessionmaker)(kind="daily", as_of=as_of)
    assert result.report_date == expected


async def test_a_window_that_has_not_ended_cannot_be_reported(sessionmaker) -> None:
    with pytest.raises(ApplicationError, match="cannot be generated yet") as caught:
        await activities_for(sessionmaker)(kind="daily", report_date=DAY, as_of=END - S)
    assert caught.value.non_retryable


# --- backfill across DST --------------------------------------------------------------------


async def test_backfill_windows_follow_local_time_across_dst(
    sessionmaker, agent_sessionmaker
) -> None:
    """Paris leaves summer time on 25 October 2026 at 03:00 local (01:00 UTC)."""
    paris = [
        (date(2026, 10, 24), datetime(2026, 10, 23, 6, tzinfo=UTC), 24),
        (date(2026, 10, 25), datetime(2026, 10, 24, 6, tzinfo=UTC), 25),
        (date(2026, 10, 26), datetime(2026, 10, 25, 7, tzinfo=UTC), 24),
    ]
    # 08:30 local on the 24th (06:30 UTC): a fixed 24 h window ending at 07:00 UTC would miss it
    sent = [datetime(2026, 10, 24, 6, 30, tzinfo=UTC), datetime(2026, 10, 25, 6, 30, tzinfo=UTC)]
    sent += [datetime(2026, 10, 25, 7, tzinfo=UTC)]  # 08:00 CET on the 25th: the next report's
    await write(agent_sessionmaker, emails_at(sent))
    generate = activities_for(sessionmaker)
    for day, _, _ in paris:
        await generate(kind="daily", report_date=day, as_of=END)
    async with sessionmaker() as session:
        stored = [await load_report(session, "daily", day) for day, _, _ in paris]
    for (_, start, hours), report in zip(paris, stored, strict=True):
        assert report is not None
        window = {k: datetime.fromisoformat(v) for k, v in report["window"].items()}
        assert window["start"] == start
        assert window["end"] - window["start"] == timedelta(hours=hours)
        expected = sum(1 for t in sent if window["start"] <= t < window["end"])
        assert report["activity"]["emails_sent"] == expected
    assert [r["activity"]["emails_sent"] for r in stored if r] == [0, 2, 1]


async def test_backfill_on_the_short_day_when_summer_time_starts(
    sessionmaker, agent_sessionmaker
) -> None:
    # 07:30 CET on 28 March belongs to that day's report; 08:30 CEST on the 29th to the 30th's
    sent = [datetime(2026, 3, 28, 6, 30, tzinfo=UTC), datetime(2026, 3, 29, 6, 30, tzinfo=UTC)]
    await write(agent_sessionmaker, emails_at(sent))
    generate = activities_for(sessionmaker)
    counts = {}
    for day in (date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30)):
        result = await generate(kind="daily", report_date=day, as_of=END)
        assert result.window_end.hour == (7 if day.day == 28 else 6)
        async with sessionmaker() as session:
            counts[day.day] = (await load_report(session, "daily", day))["activity"]["emails_sent"]
    assert counts == {28: 1, 29: 0, 30: 1}


# --- cost -----------------------------------------------------------------------------------


def many(n: int) -> Seed:
    statuses = ["identified", "scored", "research_complete", "in_sequence", "nurture"]
    tiers = ["A1", "A2", "B", "C", None]
    return Seed(
        prospects=[
            P(statuses[i % 5], tiers[i % 5 - 1], START + (i % 20) * H, emails=("e@x.test",))
            for i in range(n)
        ],
        activities=[A("status_change", START + (i % 20) * H, statuses[i % 5]) for i in range(n)],
    )


async def test_query_count_does_not_grow_with_the_number_of_prospects(
    engine: AsyncEngine, sessionmaker, agent_sessionmaker
) -> None:
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    async def queries_for(n: int) -> tuple[int, int]:
        await write(agent_sessionmaker, many(n))
        found = []
        for build in (daily, weekly):
            statements.clear()
            event.listen(engine.sync_engine, "before_cursor_execute", count)
            try:
                report = await build(sessionmaker)
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", count)
            assert report.total_prospects >= n
            found.append(len(statements))
        return found[0], found[1]

    small, large = await queries_for(50), await queries_for(2000)
    assert small == large == (11, 12)
