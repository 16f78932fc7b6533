"""Names and buckets of the metrics we record through the Temporal SDK's meter, so the
workflows, the activities and the exporter's configuration agree on them."""

from __future__ import annotations

HANDOFF_LATENCY = "orchestrator_handoff_latency_seconds"
"""From a prospect entering a state to its next agent being triggered."""
HANDOFF_OUTCOMES = "orchestrator_handoff_outcomes"
"""Handoffs closed, by agent and outcome (completed, failed, stalled, ...)."""
CYCLE_DURATION = "orchestrator_cycle_duration_seconds"
"""One cycle run, start to end, by mode."""
HANDOFFS_STARTED = "orchestrator_handoffs_started"
"""Handoff workflows started, by who found them (``by``: feed or sweep)."""
FEED_POLLS = "orchestrator_feed_polls"
"""Reads of ``prospects`` by the change feed."""
FEED_LAG = "orchestrator_feed_lag_seconds"
"""At the feed's last poll: how long the oldest state entry it found had waited (served by
the API's ``/metrics`` from the feed's ``state`` query)."""
CAUGHT_BY_SWEEP = "orchestrator_feed_caught_by_sweep"
"""Handoffs the sweep started that the feed had not (0 in normal operation)."""

BUCKETS: dict[str, list[float]] = {
    HANDOFF_LATENCY: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
    CYCLE_DURATION: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
}
