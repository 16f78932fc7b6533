"""Pure report rules: the summary sentence, report windows across DST, the funnel, the
bottleneck, and the stored shape of a report. No server, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from pipeline.health import DEFAULT_EXPECTED_RECORDS, AgentHealth, HealthStatus
from pipeline.reports import (
    Bottleneck,
    FunnelStep,
    PipelineReport,
    WaitingGroup,
    WeeklyReport,
    WindowCounts,
    agent_backlog,
    bottleneck,
    funnel_change,
    funnel_entries,
    funnel_steps,
    report_date_for,
    report_from_dict,
    report_window,
    summary_sentence,
)

H = timedelta(hours=1)
TIERS = {"A1": 7, "A2": 12, "B": 30}
HEAD = "Pipeline has 120 total prospects (7 A1, 12 A2). Added 9 new prospects today."


# --- summary --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("emails", "rate", "tail"),
    [
        (40, 0.20, " Response rate is strong at 20%."),
        (40, 0.1500001, " Response rate is strong at 15%."),
        (20, 3 / 20, " Response rate is 15%."),  # exactly 15% is not strong
        (40, 0.10, " Response rate is 10%."),
        (40, 0.0500001, " Response rate is 5%."),
        (20, 1 / 20, " Response rate is low at 5%."),  # exactly 5% is low
        (40, 0.0, " Response rate is low at 0%."),
        (0, 1 / 20, ""),  # no email today and 5%: nothing said about the rate
        (0, 0.0, ""),
        (0, 0.06, " Response rate is 6%."),  # the 7-day rate speaks even on a quiet day
        (0, 0.30, " Response rate is strong at 30%."),
    ],
    ids=[
        "20pct",
        "just-over-15",
        "exactly-15",
        "10pct",
        "just-over-5",
        "exactly-5",
        "zero",
        "no-email-5pct",
        "no-email-zero",
        "no-email-6pct",
        "no-email-30pct",
    ],
)
def test_summary_follows_the_spec_at_each_boundary(emails: int, rate: float, tail: str) -> None:
    assert summary_sentence(120, 9, TIERS, emails, rate) == f"{HEAD} Sent {emails} emails.{tail}"


def test_summary_counts_missing_tiers_as_zero_and_names_the_period() -> None:
    text = summary_sentence(3, 1, {"B": 3}, 0, 0.0, period="this week")
    assert text == (
        "Pipeline has 3 total prospects (0 A1, 0 A2). Added 1 new prospects this week. "
        "Sent 0 emails."
    )


# --- windows --------------------------------------------------------------------------------


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tz", "day", "start", "end"),
    [
        ("UTC", date(2026, 11, 20), utc(2026, 11, 19, 8), utc(2026, 11, 20, 8)),
        ("Europe/Paris", date(2026, 11, 20), utc(2026, 11, 19, 7), utc(2026, 11, 20, 7)),
        # DST starts in Paris on 29 March 2026: 08:00 CET to 08:00 CEST is 23 hours
        ("Europe/Paris", date(2026, 3, 29), utc(2026, 3, 28, 7), utc(2026, 3, 29, 6)),
        ("Europe/Paris", date(2026, 3, 30), utc(2026, 3, 29, 6), utc(2026, 3, 30, 6)),
        # and ends on 25 October: 25 hours
        ("Europe/Paris", date(2026, 10, 25), utc(2026, 10, 24, 6), utc(2026, 10, 25, 7)),
        ("America/New_York", date(2026, 3, 8), utc(2026, 3, 7, 13), utc(2026, 3, 8, 12)),
        ("America/New_York", date(2026, 11, 1), utc(2026, 10, 31, 12), utc(2026, 11, 1, 13)),
    ],
    ids=[
        "utc",
        "paris",
        "paris-dst-start",
        "paris-day-after",
        "paris-dst-end",
        "ny-dst-start",
        "ny-dst-end",
    ],
)
def test_daily_window_ends_at_eight_local(
    tz: str, day: date, start: datetime, end: datetime
) -> None:
    assert report_window(day, tz) == (start, end)
    got_start, got_end = report_window(day, tz)
    assert got_start.tzinfo is UTC and got_end.tzinfo is UTC


def test_window_lengths_around_dst_are_23_and_25_hours() -> None:
    lengths = {
        day: (lambda w: w[1] - w[0])(report_window(date(2026, 10, day), "Europe/Paris"))
        for day in (24, 25, 26)
    }
    assert lengths == {24: 24 * H, 25: 25 * H, 26: 24 * H}
    start, end = report_window(date(2026, 3, 29), "Europe/Paris")
    assert end - start == 23 * H


def test_weekly_window_spans_seven_local_days_across_dst() -> None:
    start, end = report_window(date(2026, 3, 30), "Europe/Paris", days=7)
    assert (start, end) == (utc(2026, 3, 23, 7), utc(2026, 3, 30, 6))
    assert end - start == 7 * 24 * H - H


def test_consecutive_windows_tile_without_gap_or_overlap() -> None:
    """Every instant belongs to exactly one daily report, DST or not."""
    for tz in ("Europe/Paris", "America/New_York", "UTC", "Australia/Lord_Howe"):
        day = date(2026, 1, 1)
        while day < date(2027, 1, 1):
            _, end = report_window(day, tz)
            next_start, _ = report_window(day + timedelta(days=1), tz)
            assert end == next_start, (tz, day)
            day += timedelta(days=1)


def test_window_honours_another_schedule_time() -> None:
    assert report_window(date(2026, 11, 20), "UTC", at=time(6, 30)) == (
        utc(2026, 11, 19, 6, 30),
        utc(2026, 11, 20, 6, 30),
    )


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (utc(2026, 11, 20, 6, 59), date(2026, 11, 19)),  # 07:59 in Paris
        (utc(2026, 11, 20, 7, 0), date(2026, 11, 20)),  # 08:00 sharp
        (utc(2026, 11, 20, 22, 30), date(2026, 11, 20)),  # 23:30 in Paris
        (utc(2026, 11, 20, 23, 30), date(2026, 11, 20)),  # 00:30 on the 21st, before 08:00
        (utc(2026, 3, 29, 6, 0), date(2026, 3, 29)),  # 08:00 CEST on the DST day
        (utc(2026, 3, 29, 5, 59), date(2026, 3, 28)),
    ],
)
def test_report_date_is_that_of_the_latest_eight_oclock(instant: datetime, expected: date) -> None:
    assert report_date_for(instant, "Europe/Paris") == expected


def test_bad_window_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one day"):
        report_window(date(2026, 1, 1), "UTC", days=0)
    with pytest.raises(ValueError, match="wall-clock"):
        report_window(date(2026, 1, 1), "UTC", at=time(8, tzinfo=UTC))
    with pytest.raises(ValueError, match="naive"):
        report_date_for(datetime(2026, 1, 1, 9), "UTC")


# --- funnel ---------------------------------------------------------------------------------


def test_funnel_conversion_is_entries_into_later_over_earlier() -> None:
    entries = funnel_entries(
        10,
        {
            "identified": 99,
            "scored": 8,
            "research_complete": 4,
            "in_sequence": 2,
            "meeting_booked": 1,
            "nurture": 5,
        },
    )
    assert entries == {
        "identified": 10,  # prospects added, not status changes (none lead into identified)
        "scored": 8,
        "research_complete": 4,
        "in_sequence": 2,
        "replied": 0,
        "meeting_booked": 1,
    }
    steps = funnel_steps(entries)
    assert [(s.key, s.entered_from, s.entered_to, s.conversion) for s in steps] == [
        ("identified->scored", 10, 8, 0.8),
        ("scored->research_complete", 8, 4, 0.5),
        ("research_complete->in_sequence", 4, 2, 0.5),
        ("in_sequence->replied", 2, 0, 0.0),
        ("replied->meeting_booked", 0, 1, 0.0),  # nothing entered the earlier state
    ]


def test_funnel_step_can_exceed_one_when_a_backlog_drains() -> None:
    steps = funnel_steps(funnel_entries(2, {"scored": 6}))
    assert steps[0].conversion == 3.0


def test_funnel_change_is_the_difference_per_step() -> None:
    now = funnel_steps(funnel_entries(10, {"scored": 8, "research_complete": 2}))
    before = funnel_steps(funnel_entries(10, {"scored": 5, "research_complete": 4}))
    change = funnel_change(now, before)
    assert change["identified->scored"] == pytest.approx(0.3)
    assert change["scored->research_complete"] == pytest.approx(0.25 - 0.8)
    assert change["in_sequence->replied"] == 0.0
    assert funnel_change(now, None) == dict.fromkeys((s.key for s in now), None)
    assert funnel_change(now, before[:1])["scored->research_complete"] is None


# --- bottleneck -----------------------------------------------------------------------------


def group(state: str, n: int, tier: str | None = None, email: bool = False) -> WaitingGroup:
    return WaitingGroup(state=state, tier=tier, has_contact_email=email, count=n)


def test_backlog_counts_prospects_the_triggers_admit() -> None:
    groups = [
        group("identified", 30),
        group("needs_scoring", 2, "C"),
        group("scored", 5, "A1"),
        group("scored", 7, "B"),  # researcher takes only A1 and A2
        group("needs_research", 10),
        group("research_complete", 4, "A2", email=True),
        group("research_complete", 3, "A2"),  # no contact with an email
        group("research_complete", 6, "C", email=True),  # tier too low for outreach
        group("ready_for_outreach", 6),
        group("in_sequence", 50, "A1", email=True),  # no trigger
    ]
    assert agent_backlog(groups, DEFAULT_EXPECTED_RECORDS) == {
        "prospector": 0,
        "hygiene": 32,
        "researcher": 15,
        "outreach": 10,
    }


def test_bottleneck_is_the_largest_backlog_in_runs_to_clear() -> None:
    backlog = {"prospector": 0, "hygiene": 60, "researcher": 15, "outreach": 10}
    # hygiene 60/20 = 3 runs, researcher 15/5 = 3 runs: the tie goes upstream
    assert bottleneck(backlog, DEFAULT_EXPECTED_RECORDS) == Bottleneck(
        agent="hygiene", backlog=60, expected_per_run=20, runs_to_clear=3.0
    )
    backlog["researcher"] = 16  # 3.2 runs beats a bigger raw backlog
    got = bottleneck(backlog, DEFAULT_EXPECTED_RECORDS)
    assert got is not None
    assert (got.agent, got.runs_to_clear) == ("researcher", 3.2)


def test_no_bottleneck_when_nothing_waits() -> None:
    assert bottleneck(dict.fromkeys(DEFAULT_EXPECTED_RECORDS, 0), DEFAULT_EXPECTED_RECORDS) is None
    assert bottleneck({}, DEFAULT_EXPECTED_RECORDS) is None


# --- stored shape ---------------------------------------------------------------------------

END = utc(2026, 11, 20, 7)


def health(name: str) -> AgentHealth:
    return AgentHealth(
        agent_name=name,
        status=HealthStatus.DEGRADED,
        reasons=["error rate 20% in the window"],
        last_successful_run=END - H,
        last_run_duration_seconds=12.5,
        avg_run_duration_seconds=10.0,
        runs_last_24h=5,
        errors_last_24h=1,
        error_rate=0.2,
        avg_records_per_run=18.0,
        expected_records_per_run=20,
        last_failure_at=None,
        last_error=None,
        checked_at=END,
    )


def daily_fields() -> dict:
    funnel = funnel_steps(funnel_entries(4, {"scored": 3}))
    return {
        "report_date": date(2026, 11, 20),
        "window_start": END - 24 * H,
        "window_end": END,
        "generated_at": END + H,
        "total_prospects": 12,
        "prospects_by_status": {"identified": 4, "scored": 8},
        "prospects_by_tier": {"A1": 2, "B": 5},
        "counts": WindowCounts(
            added=4,
            scored=3,
            researched=2,
            emails_sent=9,
            sequences_completed=1,
            agent_runs=6,
            agent_errors=1,
            response_rate=0.25,
        ),
        "active_sequences": 3,
        "agent_health": [health("hygiene")],
        "handoffs": {"completed": 2},
        "open_violations": {"stuck": 1},
        "open_conflicts": 1,
        "funnel": funnel,
        "funnel_change": funnel_change(funnel, None),
        "summary": "text",
    }


def test_to_dict_has_the_spec_shape_and_our_additions() -> None:
    data = PipelineReport(**daily_fields()).to_dict()
    assert {k: data[k] for k in ("date", "activity", "sequences", "agents")} == {
        "date": "2026-11-20",
        "activity": {"added": 4, "scored": 3, "researched": 2, "emails_sent": 9},
        "sequences": {"active": 3, "completed": 1, "response_rate": 0.25},
        "agents": {"runs": 6, "errors": 1},
    }
    assert data["window"] == {
        "start": "2026-11-19T07:00:00+00:00",
        "end": "2026-11-20T07:00:00+00:00",
    }
    assert data["agent_health"]["hygiene"]["status"] == "degraded"
    assert data["funnel"][0] == {
        "from": "identified",
        "to": "scored",
        "entered_from": 4,
        "entered_to": 3,
        "conversion": 0.75,
    }
    assert set(data) >= {
        "total_prospects",
        "prospects_by_status",
        "prospects_by_tier",
        "summary",
        "handoffs",
        "open_violations",
        "open_conflicts",
        "funnel_change",
        "kind",
        "generated_at",
    }


def test_reports_round_trip_through_their_stored_shape() -> None:
    daily = PipelineReport(**daily_fields())
    assert report_from_dict(daily.to_dict()) == daily
    weekly = WeeklyReport(
        **daily_fields(),
        previous_window_start=END - 48 * H,
        previous_counts=WindowCounts(added=1, emails_sent=12, response_rate=0.5),
        backlog={"hygiene": 4, "researcher": 0},
        bottleneck=Bottleneck(agent="hygiene", backlog=4, expected_per_run=20, runs_to_clear=0.2),
    )
    data = weekly.to_dict()
    assert data["kind"] == "weekly"
    assert data["deltas"]["added"] == 3 and data["deltas"]["emails_sent"] == -3
    assert data["deltas"]["response_rate"] == -0.25
    assert data["previous_window"]["end"] == data["window"]["start"]
    assert report_from_dict(data) == weekly
    assert isinstance(FunnelStep.from_dict(data["funnel"][1]), FunnelStep)
