"""Handoff metrics recorded through the worker's Temporal meter (served by the SDK Runtime's
Prometheus exporter). Outside an activity (tests calling the functions directly) they do
nothing."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import activity

from pipeline.handoffs import HandoffStatus, PendingHandoff
from pipeline.metrics import HANDOFF_LATENCY, HANDOFF_OUTCOMES


def record_trigger_latency(pending: PendingHandoff, now: datetime) -> None:
    if activity.in_activity():
        histogram = activity.metric_meter().create_histogram_timedelta(
            HANDOFF_LATENCY, "From entering a state to the next agent being triggered"
        )
        waited = max(now - pending.state_entered_at, timedelta(0))
        histogram.record(waited, {"agent": pending.to_agent})


def count_outcome(pending: PendingHandoff, status: HandoffStatus) -> None:
    if activity.in_activity():
        counter = activity.metric_meter().create_counter(HANDOFF_OUTCOMES, "Handoffs closed")
        counter.add(1, {"agent": pending.to_agent, "outcome": status.value})
