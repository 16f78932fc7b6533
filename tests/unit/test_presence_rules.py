"""The rules as data: what inhibits what (pipeline/inhibition.py) and how an HTTP agent's
last answer is judged (pipeline/presence.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.inhibition import (
    AGENT_HEALTH,
    AGENT_NO_WORKER,
    CIRCUIT_OPEN,
    PAUSED,
    SOURCE_KINDS,
    STALLED_HANDOFF,
    inhibiting_controls,
    is_inhibitable,
    source_kinds,
)
from pipeline.presence import http_presence

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


def test_an_agents_trouble_holds_the_alerts_it_causes_and_nothing_else() -> None:
    assert source_kinds(STALLED_HANDOFF) == [AGENT_HEALTH, AGENT_NO_WORKER]
    assert source_kinds(AGENT_NO_WORKER) == [AGENT_HEALTH]
    assert inhibiting_controls(STALLED_HANDOFF) == {PAUSED, CIRCUIT_OPEN}
    assert not is_inhibitable(AGENT_HEALTH) and not is_inhibitable("watchdog")
    assert {AGENT_HEALTH, AGENT_NO_WORKER} == SOURCE_KINDS


def test_an_http_agent_is_present_while_its_last_answer_is_recent() -> None:
    age = timedelta(minutes=15)
    assert http_presence("r", NOW - timedelta(minutes=1), NOW, age).present is True
    stale = http_presence("r", NOW - timedelta(hours=1), NOW, age)
    assert (stale.present, stale.last_seen) == (False, NOW - timedelta(hours=1))
    never = http_presence("r", None, NOW, age)
    assert (never.present, never.detail) == (False, "its endpoint never answered")
