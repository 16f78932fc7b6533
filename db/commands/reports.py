"""Daily and weekly pipeline reports, built from aggregate SQL and stored.

Every figure comes from a constant number of ``GROUP BY`` / ``COUNT`` / ``SUM(CASE ...)``
queries (eleven for a daily report, twelve for a weekly one, whatever the number of
prospects): the spec loads every prospect into Python to count them. Counts over a window use
``created_at >= start AND created_at < end``, so consecutive reports never count a row twice.

Pipeline counts (by status and tier), active sequences, open violations, open conflicts and
the weekly backlog are read as they are *now*: a backfilled report shows today's pipeline
beside the past window's activity. Status history is not kept in a form that can be counted
cheaply and honestly (an agent may move a prospect without writing a ``status_change``), so
the report does not pretend to. Agent health is judged at the window's end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from db.dialect import insert_for
from db.models import (
    Activity,
    AgentRun,
    Event,
    Handoff,
    OutreachSequence,
    Prospect,
    RecordLock,
    StateViolation,
)
from db.models import PipelineReport as ReportRow
from db.queries.handoffs import has_contact_email
from db.queries.health import compute_agent_health
from pipeline.health import HealthThresholds
from pipeline.reports import (
    FUNNEL_STATES,
    RESPONSE_RATE_DAYS,
    SCHEDULE_TIME,
    STATUS_CHANGE_TARGET_KEY,
    WEEK_DAYS,
    PipelineReport,
    ReportKind,
    WaitingGroup,
    WeeklyReport,
    WindowCounts,
    agent_backlog,
    bottleneck,
    funnel_change,
    funnel_entries,
    funnel_steps,
    report_from_dict,
    report_window,
    summary_sentence,
)
from pipeline.triggers import HANDOFF_TRIGGERS

SCORED, RESEARCHED = "score_change", "research_completed"
SENT, RECEIVED, STATUS_CHANGE = "email_sent", "email_received", "status_change"
COUNTED_TYPES = (SCORED, RESEARCHED, SENT, RECEIVED, STATUS_CHANGE)
ENTERED = "entered:"
"""Prefix of the tally keys that count ``status_change`` activities into a state."""
REPORT_GENERATED = "report_generated"


# --- aggregate queries ----------------------------------------------------------------------


def _sums_since(
    column: Any, since: Sequence[datetime], when: ColumnElement[bool] | None = None
) -> list[Any]:
    """One ``SUM(CASE ...)`` per cut point: rows with ``column >= cut`` (and ``when``)."""

    def hit(cut: datetime) -> ColumnElement[bool]:
        return column >= cut if when is None else and_(when, column >= cut)

    return [func.coalesce(func.sum(case((hit(cut), 1), else_=0)), 0) for cut in since]


async def _pipeline_counts(session: AsyncSession) -> list[tuple[str, str | None, int]]:
    """Live prospects by (status, tier): at most states x tiers rows."""
    query = (
        select(Prospect.status, Prospect.tier, func.count())
        .where(Prospect.deleted_at.is_(None))
        .group_by(Prospect.status, Prospect.tier)
    )
    return [(status, tier, n) for status, tier, n in (await session.execute(query)).all()]


async def _tallies(
    session: AsyncSession, since: Sequence[datetime], end: datetime
) -> list[Counter[str]]:
    """``result[i]`` counts what happened in ``[since[i], end)``: prospects added, activities
    by type, entries into each state, sequences completed, agent runs and failures. Four
    queries, one per table, each a single pass over an index range."""
    tallies = [Counter[str]() for _ in since]
    for key, values in await _activity_rows(session, since, end):
        _add(tallies, key, values)
    for keys, query in _scalar_tallies(since, end):
        row = (await session.execute(query)).one()
        for i, key in enumerate(keys):
            _add(tallies, key, row[i * len(since) : (i + 1) * len(since)])
    return tallies


def _add(tallies: Sequence[Counter[str]], key: str, values: Sequence[Any]) -> None:
    for tally, value in zip(tallies, values, strict=True):
        tally[key] += int(value)


def _scalar_tallies(since: Sequence[datetime], end: datetime) -> list[tuple[list[str], Any]]:
    """Single-row queries and the tally keys of their columns, one column per cut point."""
    lo = min(since)
    added = select(*_sums_since(Prospect.created_at, since)).where(
        Prospect.created_at >= lo, Prospect.created_at < end
    )
    done, ended = OutreachSequence.status == "completed", OutreachSequence.completed_at
    sequences = select(*_sums_since(ended, since, done)).where(done, ended >= lo, ended < end)
    failed, started = AgentRun.status == "failed", AgentRun.started_at
    runs = select(*_sums_since(started, since), *_sums_since(started, since, failed)).where(
        started >= lo, started < end
    )
    return [
        (["added"], added),
        (["sequences_completed"], sequences),
        (["agent_runs", "agent_errors"], runs),
    ]


async def _activity_rows(
    session: AsyncSession, since: Sequence[datetime], end: datetime
) -> list[tuple[str, list[int]]]:
    """Activities of the counted types by (type, state entered), one count per cut point."""
    target = case(
        (Activity.type == STATUS_CHANGE, Activity.details[STATUS_CHANGE_TARGET_KEY].as_string()),
        else_=None,
    )
    rows = (
        select(Activity.type.label("type"), target.label("target"), Activity.created_at.label("at"))
        .where(
            Activity.type.in_(COUNTED_TYPES),
            Activity.created_at >= min(since),
            Activity.created_at < end,
        )
        .subquery()
    )
    # grouped outside the subquery: PostgreSQL would see the JSON key bound twice otherwise
    query = select(rows.c.type, rows.c.target, *_sums_since(rows.c.at, since)).group_by(
        rows.c.type, rows.c.target
    )
    result = []
    for type_, target_state, *values in (await session.execute(query)).all():
        key = f"{ENTERED}{target_state}" if type_ == STATUS_CHANGE else type_
        result.append((key, [int(v) for v in values]))
    return result


async def _active_sequences(session: AsyncSession) -> int:
    query = select(func.count()).where(OutreachSequence.status == "active")
    return int((await session.execute(query)).scalar_one())


async def _grouped(session: AsyncSession, key: Any, *where: ColumnElement[bool]) -> dict[str, int]:
    query = select(key, func.count()).where(*where).group_by(key).order_by(key)
    return {name: int(n) for name, n in (await session.execute(query)).all()}


async def _open_conflicts(session: AsyncSession, end: datetime) -> int:
    """Leases past their expiry and still held: an agent died or hangs on the record."""
    query = select(func.count()).where(RecordLock.expires_at < end)
    return int((await session.execute(query)).scalar_one())


async def _waiting(session: AsyncSession) -> list[WaitingGroup]:
    """Live prospects in trigger states by (state, tier, has a contact with an email), the
    email test being the handoff finder's own."""
    rows = (
        select(Prospect.status, Prospect.tier, has_contact_email().label("has_email"))
        .where(Prospect.deleted_at.is_(None), Prospect.status.in_(list(HANDOFF_TRIGGERS)))
        .subquery()
    )
    query = select(rows.c.status, rows.c.tier, rows.c.has_email, func.count()).group_by(
        rows.c.status, rows.c.tier, rows.c.has_email
    )
    return [
        WaitingGroup(state=state, tier=tier, has_contact_email=bool(email), count=n)
        for state, tier, email, n in (await session.execute(query)).all()
    ]


# --- assembling -----------------------------------------------------------------------------


def _by_status_and_tier(
    groups: Sequence[tuple[str, str | None, int]],
) -> tuple[int, dict[str, int], dict[str, int]]:
    """Total, by status, by tier (prospects without a tier are in no tier, as in the spec)."""
    by_status: Counter[str] = Counter()
    by_tier: Counter[str] = Counter()
    for status, tier, n in groups:
        by_status[status] += n
        if tier:
            by_tier[tier] += n
    return sum(by_status.values()), dict(sorted(by_status.items())), dict(sorted(by_tier.items()))


def _window_counts(window: Counter[str], rate_basis: Counter[str]) -> WindowCounts:
    sent = rate_basis[SENT]
    return WindowCounts(
        added=window["added"],
        scored=window[SCORED],
        researched=window[RESEARCHED],
        emails_sent=window[SENT],
        sequences_completed=window["sequences_completed"],
        agent_runs=window["agent_runs"],
        agent_errors=window["agent_errors"],
        response_rate=rate_basis[RECEIVED] / sent if sent else 0.0,
    )


def _entries(window: Counter[str]) -> dict[str, int]:
    into = {state: window[f"{ENTERED}{state}"] for state in FUNNEL_STATES}
    return funnel_entries(window["added"], into)


async def _common(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    expected_agents: Mapping[str, int],
    thresholds: HealthThresholds,
) -> dict[str, Any]:
    """The fields both kinds share that do not depend on the window's length."""
    total, by_status, by_tier = _by_status_and_tier(await _pipeline_counts(session))
    return {
        "window_start": start,
        "window_end": end,
        "total_prospects": total,
        "prospects_by_status": by_status,
        "prospects_by_tier": by_tier,
        "active_sequences": await _active_sequences(session),
        "agent_health": await compute_agent_health(session, expected_agents, thresholds, end),
        "handoffs": await _grouped(
            session, Handoff.status, Handoff.updated_at >= start, Handoff.updated_at < end
        ),
        "open_violations": await _grouped(
            session, StateViolation.kind, StateViolation.resolved_at.is_(None)
        ),
        "open_conflicts": await _open_conflicts(session, end),
    }


async def build_daily_report(
    session: AsyncSession,
    *,
    report_date: date,
    tz: str,
    expected_agents: Mapping[str, int],
    thresholds: HealthThresholds,
    previous: PipelineReport | None,
    at: time = SCHEDULE_TIME,
    generated_at: datetime | None = None,
) -> PipelineReport:
    """The daily report for the window ending at ``at`` local time on ``report_date``.
    ``previous`` (the latest earlier daily report) gives the funnel's change."""
    start, end = report_window(report_date, tz, at)
    rate_start, _ = report_window(report_date, tz, at, days=RESPONSE_RATE_DAYS)
    window, week = await _tallies(session, [start, rate_start], end)
    common = await _common(session, start, end, expected_agents, thresholds)
    counts = _window_counts(window, week)
    funnel = funnel_steps(_entries(window))
    return PipelineReport(
        report_date=report_date,
        generated_at=generated_at or datetime.now(UTC),
        counts=counts,
        funnel=funnel,
        funnel_change=funnel_change(funnel, previous.funnel if previous else None),
        summary=_summary(common, counts, "today"),
        **common,
    )


async def build_weekly_report(
    session: AsyncSession,
    *,
    report_date: date,
    tz: str,
    expected_agents: Mapping[str, int],
    thresholds: HealthThresholds,
    at: time = SCHEDULE_TIME,
    generated_at: datetime | None = None,
) -> WeeklyReport:
    """The weekly report for the 7 local days ending at ``at`` on ``report_date``, against the
    7 days before (counted from the data, not from an earlier report), with the backlog of
    each agent and the bottleneck."""
    start, end = report_window(report_date, tz, at, days=WEEK_DAYS)
    previous_start, _ = report_window(report_date, tz, at, days=2 * WEEK_DAYS)
    window, both = await _tallies(session, [start, previous_start], end)
    before = both - window
    common = await _common(session, start, end, expected_agents, thresholds)
    counts = _window_counts(window, window)
    funnel = funnel_steps(_entries(window))
    backlog = agent_backlog(await _waiting(session), expected_agents)
    return WeeklyReport(
        report_date=report_date,
        generated_at=generated_at or datetime.now(UTC),
        counts=counts,
        previous_window_start=previous_start,
        previous_counts=_window_counts(before, before),
        funnel=funnel,
        funnel_change=funnel_change(funnel, funnel_steps(_entries(before))),
        backlog=backlog,
        bottleneck=bottleneck(backlog, expected_agents),
        summary=_summary(common, counts, "this week"),
        **common,
    )


def _summary(common: Mapping[str, Any], counts: WindowCounts, period: str) -> str:
    return summary_sentence(
        common["total_prospects"],
        counts.added,
        common["prospects_by_tier"],
        counts.emails_sent,
        counts.response_rate,
        period=period,
    )


# --- storage --------------------------------------------------------------------------------


async def store_report(session: AsyncSession, report: PipelineReport) -> None:
    """Upsert the report (one row per kind and date) and emit ``report_generated``; commits.

    A generation older than the stored one is ignored, so a retried activity that finishes
    late cannot put back a stale report; the event is written only when the report was."""
    statement = insert_for(session, ReportRow).values(
        kind=report.kind,
        report_date=report.report_date.isoformat(),
        window_start=report.window_start,
        window_end=report.window_end,
        payload=report.to_dict(),
        created_at=report.generated_at,
    )
    new = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=["kind", "report_date"],
        set_={
            "window_start": new.window_start,
            "window_end": new.window_end,
            "payload": new.payload,
            "created_at": new.created_at,
        },
        where=ReportRow.created_at <= new.created_at,
    )
    if (await session.execute(statement)).rowcount:
        await session.execute(_report_event(session, report))
    await session.commit()


def _report_event(session: AsyncSession, report: PipelineReport) -> Any:
    day = report.report_date.isoformat()
    return (
        insert_for(session, Event)
        .values(
            dedup_key=f"report:{report.kind}:{day}:{report.generated_at.isoformat()}",
            kind=REPORT_GENERATED,
            agent_name=None,
            payload={"date": day, "kind": report.kind, "summary": report.summary},
            created_at=report.generated_at,
        )
        .on_conflict_do_nothing(index_elements=["dedup_key"])
    )


async def load_report(
    session: AsyncSession, kind: ReportKind, report_date: date
) -> dict[str, Any] | None:
    """The stored payload (``to_dict`` shape) of one report, or ``None``."""
    query = select(ReportRow.payload).where(
        ReportRow.kind == kind, ReportRow.report_date == report_date.isoformat()
    )
    return (await session.execute(query)).scalar_one_or_none()


async def latest_report_before(
    session: AsyncSession, kind: ReportKind, report_date: date
) -> PipelineReport | None:
    """The most recent stored report of ``kind`` dated before ``report_date``."""
    query = (
        select(ReportRow.payload)
        .where(ReportRow.kind == kind, ReportRow.report_date < report_date.isoformat())
        .order_by(ReportRow.report_date.desc())
        .limit(1)
    )
    payload = (await session.execute(query)).scalar_one_or_none()
    return None if payload is None else report_from_dict(payload)


# --- the activity ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportConfig:
    expected_agents: Mapping[str, int]
    thresholds: HealthThresholds
    tz: str
    at: time = SCHEDULE_TIME


async def generate_report(
    session: AsyncSession,
    config: ReportConfig,
    kind: ReportKind,
    report_date: date,
    as_of: datetime,
) -> PipelineReport:
    """Build and store one report; what the activity and ``orchestrator report`` both do."""
    try:
        _, end = report_window(report_date, config.tz, config.at, days=7)
    except ValueError as exc:
        raise ApplicationError(str(exc), type="InvalidReportDate", non_retryable=True) from exc
    if end > as_of:
        raise ApplicationError(
            f"the {kind} report for {report_date} covers a window ending at "
            f"{end.isoformat()}, after {as_of.isoformat()}; it cannot be generated yet",
            type="ReportWindowOpen",
            non_retryable=True,
        )
    common: dict[str, Any] = {
        "report_date": report_date,
        "tz": config.tz,
        "expected_agents": config.expected_agents,
        "thresholds": config.thresholds,
        "at": config.at,
        "generated_at": as_of,
    }
    if kind == "weekly":
        report: PipelineReport = await build_weekly_report(session, **common)
    else:
        previous = await latest_report_before(session, "daily", report_date)
        report = await build_daily_report(session, previous=previous, **common)
    await store_report(session, report)
    return report
