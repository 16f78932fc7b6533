"""Pure rules of the pipeline: health thresholds, prospect states, handoff triggers, modes.

No server, no database: every test here calls plain functions on plain values.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.health import (
    AgentHealth,
    HealthMetrics,
    HealthStatus,
    HealthThresholds,
    determine_status,
    grade_error_rate,
    grade_records,
    grade_success_age,
    overall_status,
)
from pipeline.modes import CycleMode, UnsupportedModeError, parse_mode
from pipeline.states import KNOWN_STATES, TERMINAL_STATES, TRANSITIONS, is_allowed, is_known
from pipeline.triggers import HANDOFF_TRIGGERS

H = HealthStatus.HEALTHY
D = HealthStatus.DEGRADED
F = HealthStatus.FAILING
U = HealthStatus.UNKNOWN

THRESHOLDS = HealthThresholds()

# Independent of pipeline.health's own severity table, so a wrong ordering there shows up here.
RANK = {H: 0, D: 1, F: 2}

# Which words a reason must contain to name the dimension that was graded down.
ERROR_RATE = "error rate"
SUCCESS_AGE = "since last success"
RECORDS = "records per run"


def metrics(**overrides: object) -> HealthMetrics:
    """An agent that is healthy on every dimension, with some fields changed."""
    values: dict[str, object] = {
        "ever_ran": True,
        "runs_in_window": 100,
        "errors_in_window": 0,
        "successes_in_window": 100,
        "avg_records_per_success": 10.0,
        "expected_records_per_run": 10,
        "time_since_success": timedelta(hours=1),
    }
    values.update(overrides)
    return HealthMetrics(**values)


# --------------------------------------------------------------------------------------------
# determine_status: boundaries of the threshold table
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected", "dimension"),
    [
        pytest.param({}, H, None, id="all-healthy"),
        # Error rate: healthy < 10% <= degraded <= 30% < failing.
        pytest.param(
            {"errors_in_window": 99, "runs_in_window": 1000, "successes_in_window": 901},
            H,
            None,
            id="error-rate-just-under-10pct-is-healthy",
        ),
        pytest.param(
            {"errors_in_window": 10, "successes_in_window": 90},
            D,
            ERROR_RATE,
            id="error-rate-exactly-10pct-is-degraded",
        ),
        pytest.param(
            {"errors_in_window": 1, "runs_in_window": 10, "successes_in_window": 9},
            D,
            ERROR_RATE,
            id="error-rate-1-of-10-is-degraded",
        ),
        pytest.param(
            {"errors_in_window": 30, "successes_in_window": 70},
            D,
            ERROR_RATE,
            id="error-rate-exactly-30pct-is-degraded",
        ),
        pytest.param(
            {"errors_in_window": 3, "runs_in_window": 10, "successes_in_window": 7},
            D,
            ERROR_RATE,
            id="error-rate-3-of-10-is-degraded",
        ),
        pytest.param(
            {"errors_in_window": 301, "runs_in_window": 1000, "successes_in_window": 699},
            F,
            ERROR_RATE,
            id="error-rate-just-over-30pct-is-failing",
        ),
        # Time since last success: healthy < 6 h <= degraded <= 24 h < failing.
        pytest.param(
            {"time_since_success": timedelta(hours=6) - timedelta(seconds=1)},
            H,
            None,
            id="success-age-just-under-6h-is-healthy",
        ),
        pytest.param(
            {"time_since_success": timedelta(hours=6)},
            D,
            SUCCESS_AGE,
            id="success-age-exactly-6h-is-degraded",
        ),
        pytest.param(
            {"time_since_success": timedelta(hours=24)},
            D,
            SUCCESS_AGE,
            id="success-age-exactly-24h-is-degraded",
        ),
        pytest.param(
            {"time_since_success": timedelta(hours=24, seconds=1)},
            F,
            SUCCESS_AGE,
            id="success-age-just-over-24h-is-failing",
        ),
        # Records per run (expected 10): healthy > 5 >= degraded >= 2 > failing.
        pytest.param(
            {"avg_records_per_success": 5.01},
            H,
            None,
            id="records-just-above-50pct-is-healthy",
        ),
        pytest.param(
            {"avg_records_per_success": 5.0},
            D,
            RECORDS,
            id="records-exactly-50pct-is-degraded",
        ),
        pytest.param(
            {"avg_records_per_success": 2.0},
            D,
            RECORDS,
            id="records-exactly-20pct-is-degraded",
        ),
        pytest.param(
            {"avg_records_per_success": 1.99},
            F,
            RECORDS,
            id="records-just-under-20pct-is-failing",
        ),
        pytest.param(
            {"avg_records_per_success": 0.0},
            F,
            RECORDS,
            id="records-zero-is-failing",
        ),
        # Whole-agent situations.
        pytest.param(
            {
                "runs_in_window": 0,
                "errors_in_window": 0,
                "successes_in_window": 0,
                "avg_records_per_success": 0.0,
                "time_since_success": timedelta(hours=30),
            },
            F,
            SUCCESS_AGE,
            id="stopped-agent-last-success-30h-ago-is-failing-not-unknown",
        ),
        pytest.param(
            {
                "runs_in_window": 5,
                "errors_in_window": 5,
                "successes_in_window": 0,
                "avg_records_per_success": 0.0,
                "time_since_success": timedelta(hours=2),
            },
            F,
            ERROR_RATE,
            id="all-runs-failing-is-failing",
        ),
    ],
)
def test_determine_status_at_threshold_boundaries(
    overrides: dict[str, object], expected: HealthStatus, dimension: str | None
) -> None:
    verdict = determine_status(metrics(**overrides), THRESHOLDS)

    assert verdict.status is expected
    if expected is H:
        assert verdict.reasons == []
    else:
        assert verdict.reasons, "a non-healthy verdict must say why"
        assert any(dimension in reason for reason in verdict.reasons), verdict.reasons


@pytest.mark.parametrize(
    "expected_records",
    [1, 2, 5, 10, 20, 25, 50, 100],
)
def test_records_exactly_at_either_ratio_is_degraded_for_exact_products(
    expected_records: int,
) -> None:
    for ratio in (0.5, 0.2):
        avg = expected_records * ratio
        verdict = determine_status(
            metrics(avg_records_per_success=avg, expected_records_per_run=expected_records),
            THRESHOLDS,
        )
        assert verdict.status is D, (expected_records, ratio, verdict)


def test_records_exactly_20pct_of_three_expected_is_degraded() -> None:
    three_records_over_five_runs = 3 / 5
    verdict = determine_status(
        metrics(avg_records_per_success=three_records_over_five_runs, expected_records_per_run=3),
        THRESHOLDS,
    )
    assert verdict.status is D


def test_agent_that_never_ran_is_unknown() -> None:
    verdict = determine_status(
        metrics(
            ever_ran=False,
            runs_in_window=0,
            errors_in_window=0,
            successes_in_window=0,
            avg_records_per_success=0.0,
            time_since_success=None,
        ),
        THRESHOLDS,
    )

    assert verdict.status is U
    assert verdict.reasons
    assert any("never run" in reason for reason in verdict.reasons)


def test_records_are_not_graded_when_the_window_has_no_successes() -> None:
    # Zero records would be failing if graded; with no success in the window they are not,
    # so a short outage with few errors and a recent success stays degraded only by errors.
    verdict = determine_status(
        metrics(
            runs_in_window=10,
            errors_in_window=1,
            successes_in_window=0,
            avg_records_per_success=0.0,
            time_since_success=timedelta(hours=1),
        ),
        THRESHOLDS,
    )

    assert verdict.status is D
    assert not any(RECORDS in reason for reason in verdict.reasons)


def test_no_runs_in_window_and_recent_success_is_healthy() -> None:
    verdict = determine_status(
        metrics(
            runs_in_window=0,
            errors_in_window=0,
            successes_in_window=0,
            avg_records_per_success=0.0,
            time_since_success=timedelta(hours=2),
        ),
        THRESHOLDS,
    )

    assert verdict.status is H


def test_reasons_name_every_dimension_sharing_the_worst_grade() -> None:
    verdict = determine_status(
        metrics(
            errors_in_window=50,
            successes_in_window=50,
            time_since_success=timedelta(hours=48),
            avg_records_per_success=7.0,
        ),
        THRESHOLDS,
    )

    assert verdict.status is F
    assert any(ERROR_RATE in reason for reason in verdict.reasons)
    assert any(SUCCESS_AGE in reason for reason in verdict.reasons)
    assert not any(RECORDS in reason for reason in verdict.reasons)


# --------------------------------------------------------------------------------------------
# determine_status: properties
# --------------------------------------------------------------------------------------------


@st.composite
def ran_metrics(draw: st.DrawFn) -> HealthMetrics:
    """Metrics of an agent that has run at least once, with consistent counts."""
    runs = draw(st.integers(min_value=0, max_value=200))
    errors = draw(st.integers(min_value=0, max_value=runs))
    successes = draw(st.integers(min_value=0, max_value=runs - errors))
    expected = draw(st.integers(min_value=1, max_value=100))
    avg = draw(st.floats(min_value=0, max_value=300, allow_nan=False, allow_infinity=False))
    age_seconds = draw(st.integers(min_value=0, max_value=72 * 3600))
    return HealthMetrics(
        ever_ran=True,
        runs_in_window=runs,
        errors_in_window=errors,
        successes_in_window=successes,
        avg_records_per_success=avg,
        expected_records_per_run=expected,
        time_since_success=timedelta(seconds=age_seconds),
    )


any_metrics = st.one_of(
    ran_metrics(),
    st.builds(
        HealthMetrics,
        ever_ran=st.booleans(),
        runs_in_window=st.integers(min_value=0, max_value=50),
        errors_in_window=st.integers(min_value=0, max_value=50),
        successes_in_window=st.integers(min_value=0, max_value=50),
        avg_records_per_success=st.floats(min_value=0, max_value=100),
        expected_records_per_run=st.integers(min_value=1, max_value=50),
        time_since_success=st.none() | st.timedeltas(timedelta(0), timedelta(days=5)),
    ),
)


@settings(max_examples=200, deadline=None)
@given(ran_metrics())
def test_status_is_the_worst_of_the_graded_dimensions(m: HealthMetrics) -> None:
    grades = [
        grade_error_rate(m.error_rate, THRESHOLDS),
        grade_success_age(m.time_since_success, THRESHOLDS),
    ]
    if m.successes_in_window > 0:
        grades.append(
            grade_records(m.avg_records_per_success, m.expected_records_per_run, THRESHOLDS)
        )
    expected = max(grades, key=RANK.__getitem__)

    verdict = determine_status(m, THRESHOLDS)

    assert verdict.status is expected
    assert bool(verdict.reasons) == (expected is not H)


@settings(max_examples=200, deadline=None)
@given(ran_metrics(), st.integers(min_value=1, max_value=200))
def test_more_errors_never_improve_the_status(m: HealthMetrics, extra: int) -> None:
    if m.runs_in_window == 0:
        return
    # More errors on the same number of runs: the extra errors replace successes or
    # unfinished runs, and never exceed the number of runs.
    errors = min(m.errors_in_window + extra, m.runs_in_window)
    successes = min(m.successes_in_window, m.runs_in_window - errors)
    worse = m.model_copy(update={"errors_in_window": errors, "successes_in_window": successes})
    # Keep records out of it unless both sides grade them the same way.
    if (m.successes_in_window > 0) != (successes > 0):
        m = m.model_copy(update={"avg_records_per_success": 1e6})
        worse = worse.model_copy(update={"avg_records_per_success": 1e6})

    before = determine_status(m, THRESHOLDS).status
    after = determine_status(worse, THRESHOLDS).status

    assert RANK[after] >= RANK[before]


@settings(max_examples=200, deadline=None)
@given(ran_metrics(), st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)))
def test_longer_time_since_success_never_improves_the_status(
    m: HealthMetrics, extra: timedelta
) -> None:
    assert m.time_since_success is not None
    worse = m.model_copy(update={"time_since_success": m.time_since_success + extra})

    before = determine_status(m, THRESHOLDS).status
    after = determine_status(worse, THRESHOLDS).status

    assert RANK[after] >= RANK[before]


@settings(max_examples=200, deadline=None)
@given(ran_metrics(), st.floats(min_value=0, max_value=1))
def test_fewer_records_never_improve_the_status(m: HealthMetrics, factor: float) -> None:
    worse = m.model_copy(update={"avg_records_per_success": m.avg_records_per_success * factor})

    before = determine_status(m, THRESHOLDS).status
    after = determine_status(worse, THRESHOLDS).status

    assert RANK[after] >= RANK[before]


@settings(max_examples=200, deadline=None)
@given(any_metrics)
def test_status_is_unknown_exactly_when_the_agent_never_ran(m: HealthMetrics) -> None:
    verdict = determine_status(m, THRESHOLDS)

    assert (verdict.status is U) == (not m.ever_ran)


# --------------------------------------------------------------------------------------------
# AgentHealth and overall_status
# --------------------------------------------------------------------------------------------


def agent_health(
    status: HealthStatus,
    *,
    name: str = "prospector",
    last_successful_run: datetime | None = None,
) -> AgentHealth:
    now = datetime(2025, 1, 1, 12, tzinfo=UTC)
    return AgentHealth(
        agent_name=name,
        status=status,
        reasons=[] if status is H else ["something"],
        last_successful_run=last_successful_run,
        last_run_duration_seconds=1.0,
        avg_run_duration_seconds=1.0,
        runs_last_24h=0,
        errors_last_24h=0,
        error_rate=0.0,
        avg_records_per_run=0.0,
        expected_records_per_run=10,
        last_failure_at=None,
        last_error=None,
        checked_at=now,
    )


@pytest.mark.parametrize(
    ("status", "healthy", "unhealthy"),
    [
        pytest.param(H, True, False, id="healthy"),
        pytest.param(D, False, True, id="degraded"),
        pytest.param(F, False, True, id="failing"),
        pytest.param(U, False, False, id="unknown"),
    ],
)
def test_is_healthy_works_without_a_last_successful_run(
    status: HealthStatus, healthy: bool, unhealthy: bool
) -> None:
    health = agent_health(status, last_successful_run=None)

    assert health.is_healthy is healthy
    assert health.is_unhealthy is unhealthy


def test_is_healthy_follows_status_when_last_success_is_known() -> None:
    recent = datetime(2025, 1, 1, 11, tzinfo=UTC)

    assert agent_health(H, last_successful_run=recent).is_healthy is True
    assert agent_health(F, last_successful_run=recent).is_healthy is False


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        pytest.param([U], U, id="one-unknown"),
        pytest.param([U, U, U], U, id="all-unknown"),
        pytest.param([H, H], H, id="all-healthy"),
        pytest.param([H, D, H], D, id="degraded-wins-over-healthy"),
        pytest.param([D, F, H], F, id="failing-wins-over-degraded"),
        pytest.param([F, U], F, id="failing-wins-over-unknown"),
        pytest.param([U, D], D, id="degraded-wins-over-unknown"),
        pytest.param([H, U], H, id="healthy-then-unknown-is-healthy"),
        pytest.param([U, H], H, id="unknown-then-healthy-is-healthy"),
    ],
)
def test_overall_status_is_the_worst_agent_and_unknown_only_when_all_are(
    statuses: list[HealthStatus], expected: HealthStatus
) -> None:
    healths = [agent_health(s, name=f"agent-{i}") for i, s in enumerate(statuses)]

    assert overall_status(healths) is expected


# --------------------------------------------------------------------------------------------
# HealthThresholds validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(
            {"error_rate_degraded": 0.4, "error_rate_failing": 0.3}, id="error-rate-inverted"
        ),
        pytest.param(
            {
                "success_age_degraded": timedelta(hours=25),
                "success_age_failing": timedelta(hours=24),
            },
            id="success-age-inverted",
        ),
        pytest.param(
            {"records_healthy_ratio": 0.1, "records_failing_ratio": 0.2}, id="records-inverted"
        ),
        pytest.param({"error_rate_failing": 1.5}, id="error-rate-above-one"),
        pytest.param({"error_rate_degraded": -0.1}, id="error-rate-negative"),
    ],
)
def test_thresholds_reject_inverted_or_out_of_range_values(overrides: dict[str, object]) -> None:
    # pydantic's ValidationError is a ValueError subclass; require exactly that type.
    with pytest.raises(ValidationError):
        HealthThresholds(**overrides)


def test_thresholds_accept_equal_degraded_and_failing_lines() -> None:
    t = HealthThresholds(error_rate_degraded=0.2, error_rate_failing=0.2)

    assert t.error_rate_degraded == t.error_rate_failing == 0.2


def test_default_thresholds_match_the_spec_table() -> None:
    assert THRESHOLDS.error_rate_degraded == 0.10
    assert THRESHOLDS.error_rate_failing == 0.30
    assert THRESHOLDS.success_age_degraded == timedelta(hours=6)
    assert THRESHOLDS.success_age_failing == timedelta(hours=24)
    assert THRESHOLDS.records_healthy_ratio == 0.5
    assert THRESHOLDS.records_failing_ratio == 0.2


# --------------------------------------------------------------------------------------------
# Prospect states
# --------------------------------------------------------------------------------------------


def test_every_transition_target_is_a_known_state() -> None:
    for source, targets in TRANSITIONS.items():
        unknown = targets - KNOWN_STATES
        assert not unknown, f"{source} -> {sorted(unknown)}"


def test_terminal_states_are_exactly_booked_lost_and_disqualified() -> None:
    terminal = set(TERMINAL_STATES)
    assert terminal == {"meeting_booked", "closed_lost", "disqualified"}
    for state in terminal:
        assert not any(is_allowed(state, target) for target in KNOWN_STATES)


def test_identified_cannot_skip_scoring_to_research_complete() -> None:
    assert is_allowed("identified", "research_complete") is False


def test_identified_can_move_to_scored() -> None:
    assert is_allowed("identified", "scored") is True


@pytest.mark.parametrize(
    ("from_state", "to_state"),
    [
        pytest.param("bogus", "scored", id="unknown-source"),
        pytest.param("identified", "bogus", id="unknown-target"),
        pytest.param("bogus", "bogus", id="both-unknown"),
        pytest.param("", "identified", id="empty-source"),
        pytest.param("Identified", "scored", id="case-differs"),
    ],
)
def test_unknown_states_are_not_allowed(from_state: str, to_state: str) -> None:
    assert is_allowed(from_state, to_state) is False


def test_unknown_state_is_not_allowed_from_any_known_state() -> None:
    assert is_known("bogus") is False
    assert not any(is_allowed(state, "bogus") for state in KNOWN_STATES)
    assert not any(is_allowed("bogus", state) for state in KNOWN_STATES)


# --------------------------------------------------------------------------------------------
# Handoff triggers
# --------------------------------------------------------------------------------------------


def test_every_trigger_state_is_a_known_non_terminal_state() -> None:
    for state, trigger in HANDOFF_TRIGGERS.items():
        assert trigger.state == state
        assert is_known(state)
        assert state not in TERMINAL_STATES


@pytest.mark.parametrize(
    ("state", "tier", "has_email", "admitted"),
    [
        pytest.param("scored", "C", True, False, id="scored-tier-C-not-admitted"),
        pytest.param("scored", "B", True, False, id="scored-tier-B-not-admitted"),
        pytest.param("scored", None, True, False, id="scored-no-tier-not-admitted"),
        pytest.param("scored", "A1", False, True, id="scored-A1-admitted"),
        pytest.param("scored", "A2", False, True, id="scored-A2-admitted"),
        pytest.param(
            "research_complete", "B", False, False, id="research-complete-B-no-email-not-admitted"
        ),
        pytest.param(
            "research_complete", "B", True, True, id="research-complete-B-with-email-admitted"
        ),
        pytest.param(
            "research_complete", "A1", True, True, id="research-complete-A1-with-email-admitted"
        ),
        pytest.param("research_complete", "D", True, False, id="research-complete-D-not-admitted"),
        pytest.param("research_complete", "C", True, False, id="research-complete-C-not-admitted"),
        pytest.param("identified", None, False, True, id="identified-no-tier-no-email"),
        pytest.param("identified", "D", False, True, id="identified-tier-D"),
        pytest.param("identified", "A1", True, True, id="identified-A1-with-email"),
    ],
)
def test_handoff_trigger_admits(
    state: str, tier: str | None, has_email: bool, admitted: bool
) -> None:
    assert HANDOFF_TRIGGERS[state].admits(tier=tier, has_contact_email=has_email) is admitted


def test_handoff_triggers_route_to_the_spec_agents() -> None:
    assert {s: t.next_agent for s, t in HANDOFF_TRIGGERS.items()} == {
        "identified": "hygiene",
        "needs_scoring": "hygiene",
        "scored": "researcher",
        "needs_research": "researcher",
        "research_complete": "outreach",
        "ready_for_outreach": "outreach",
    }


# --------------------------------------------------------------------------------------------
# Cycle modes
# --------------------------------------------------------------------------------------------


def test_parse_mode_accepts_monitor() -> None:
    assert parse_mode("monitor") is CycleMode.MONITOR


@pytest.mark.parametrize("mode", [m.value for m in CycleMode])
def test_every_mode_parses(mode: str) -> None:
    assert parse_mode(mode).value == mode


def test_unknown_mode_lists_the_known_modes() -> None:
    with pytest.raises(UnsupportedModeError) as excinfo:
        parse_mode("bogus")

    message = str(excinfo.value)
    assert "bogus" in message
    assert "unknown mode" in message
    for mode in CycleMode:
        assert mode.value in message


def test_unsupported_mode_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_mode("bogus")
