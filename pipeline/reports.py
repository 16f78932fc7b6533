"""Pipeline reports: what a daily or weekly report holds, and the pure rules that shape it
(report windows, the summary sentence, the funnel, the bottleneck).

No I/O: ``activities/reports.py`` reads the database and fills these models; workflows may
import this module to read a result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from itertools import pairwise
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel

from pipeline.health import AgentHealth
from pipeline.triggers import HANDOFF_TRIGGERS, HandoffTrigger

ReportKind = Literal["daily", "weekly"]
SCHEDULE_TIME = time(8, 0)
"""Local time at which a report's window ends (the spec's ``0 8 * * *``)."""
RESPONSE_RATE_DAYS = 7
WEEK_DAYS = 7
FUNNEL_STATES: tuple[str, ...] = (
    "identified",
    "scored",
    "research_complete",
    "in_sequence",
    "replied",
    "meeting_booked",
)
"""The design's main path. Side paths (needs_research, nurture, ...) are not funnel steps."""
STATUS_CHANGE_TARGET_KEY = "to"
"""Key of a ``status_change`` activity's details that names the state entered."""


# --- windows --------------------------------------------------------------------------------


def report_window(
    report_date: date, tz: str, at: time = SCHEDULE_TIME, days: int = 1
) -> tuple[datetime, datetime]:
    """``[start, end)`` in aware UTC: ``end`` is ``at`` local time on ``report_date`` in ``tz``,
    ``start`` the same local time ``days`` earlier. Windows follow the wall clock, so the day
    after a DST change is 23 or 25 hours long and the report still covers "08:00 to 08:00"."""
    if days < 1:
        raise ValueError(f"a report window spans at least one day, not {days}")
    if at.tzinfo is not None:
        raise ValueError("'at' is a local wall-clock time; give the zone as 'tz'")
    zone = ZoneInfo(tz)
    try:
        end = datetime.combine(report_date, at, tzinfo=zone)
        start = datetime.combine(report_date - timedelta(days=days), at, tzinfo=zone)
        return start.astimezone(UTC), end.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"no {days}-day report window ends on {report_date}") from None


def report_date_for(instant: datetime, tz: str, at: time = SCHEDULE_TIME) -> date:
    """The date of the latest ``at`` (local, in ``tz``) at or before ``instant``: the report a
    run at ``instant`` should produce. At 07:59 local that is yesterday's."""
    if instant.tzinfo is None:
        raise ValueError(f"naive datetime {instant!r}: pass an aware datetime")
    today = instant.astimezone(ZoneInfo(tz)).date()
    _, end = report_window(today, tz, at)
    return today if end <= instant else today - timedelta(days=1)


# --- summary --------------------------------------------------------------------------------


def summary_sentence(
    total: int,
    added: int,
    by_tier: Mapping[str, int],
    emails: int,
    response_rate: float,
    *,
    period: str = "today",
) -> str:
    """The spec's ``_generate_summary``, word for word: strong above 15%, plain above 5%, low
    otherwise, and nothing about the rate when no email went out and it is 5% or less.
    ``period`` lets the weekly report say "this week" instead of "today"."""
    parts = [
        f"Pipeline has {total} total prospects",
        f"({by_tier.get('A1', 0)} A1, {by_tier.get('A2', 0)} A2).",
        f"Added {added} new prospects {period}.",
        f"Sent {emails} emails.",
    ]
    if response_rate > 0.15:
        parts.append(f"Response rate is strong at {response_rate:.0%}.")
    elif response_rate > 0.05:
        parts.append(f"Response rate is {response_rate:.0%}.")
    elif emails > 0:
        parts.append(f"Response rate is low at {response_rate:.0%}.")
    return " ".join(parts)


# --- funnel ---------------------------------------------------------------------------------


class FunnelStep(BaseModel):
    from_state: str
    to_state: str
    entered_from: int
    entered_to: int
    conversion: float

    @property
    def key(self) -> str:
        return f"{self.from_state}->{self.to_state}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.from_state,
            "to": self.to_state,
            "entered_from": self.entered_from,
            "entered_to": self.entered_to,
            "conversion": self.conversion,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            from_state=data["from"],
            to_state=data["to"],
            entered_from=data["entered_from"],
            entered_to=data["entered_to"],
            conversion=data["conversion"],
        )


def funnel_entries(
    added: int, status_changes_into: Mapping[str, int], states: Sequence[str] = FUNNEL_STATES
) -> dict[str, int]:
    """Entries into each funnel state in a window. Prospects are born in the first state
    (no transition leads into ``identified``), so its entries are the prospects added; every
    other state's are the ``status_change`` activities into it."""
    entries = {state: status_changes_into.get(state, 0) for state in states}
    entries[states[0]] = added
    return entries


def funnel_steps(
    entries: Mapping[str, int], states: Sequence[str] = FUNNEL_STATES
) -> list[FunnelStep]:
    """Conversion of each consecutive pair: entries into the later state divided by entries
    into the earlier one, both counted in the same window (0 when nothing entered the earlier
    state). It is a flow ratio, not a cohort's fate: a prospect scored today may have been
    identified last week, so a step can exceed 1 when a backlog drains. It needs nothing but
    counts, which is what keeps the report's queries aggregate."""
    steps = []
    for earlier, later in pairwise(states):
        into_earlier, into_later = entries.get(earlier, 0), entries.get(later, 0)
        steps.append(
            FunnelStep(
                from_state=earlier,
                to_state=later,
                entered_from=into_earlier,
                entered_to=into_later,
                conversion=into_later / into_earlier if into_earlier else 0.0,
            )
        )
    return steps


def funnel_change(
    current: Sequence[FunnelStep], previous: Sequence[FunnelStep] | None
) -> dict[str, float | None]:
    """Each step's conversion minus the previous period's; ``None`` where there is nothing to
    compare with (no previous report, or a step it did not have)."""
    before = {step.key: step.conversion for step in previous or ()}
    return {
        step.key: step.conversion - before[step.key] if step.key in before else None
        for step in current
    }


# --- bottleneck -----------------------------------------------------------------------------


class WaitingGroup(BaseModel):
    """Live prospects in one trigger state, with what the trigger conditions look at."""

    state: str
    tier: str | None
    has_contact_email: bool
    count: int


class Bottleneck(BaseModel):
    agent: str
    backlog: int
    expected_per_run: int
    runs_to_clear: float


def agent_backlog(
    groups: Iterable[WaitingGroup],
    agents: Iterable[str],
    triggers: Mapping[str, HandoffTrigger] = HANDOFF_TRIGGERS,
) -> dict[str, int]:
    """Prospects waiting for each agent: those in a state whose handoff trigger targets it and
    admits them (the same rule the handoff finder applies). Agents no trigger targets (the
    prospector feeds the pipeline) have a backlog of 0."""
    backlog = dict.fromkeys(agents, 0)
    for group in groups:
        trigger = triggers.get(group.state)
        if trigger is None or trigger.next_agent not in backlog:
            continue
        if trigger.admits(tier=group.tier, has_contact_email=group.has_contact_email):
            backlog[trigger.next_agent] += group.count
    return backlog


def bottleneck(backlog: Mapping[str, int], expected: Mapping[str, int]) -> Bottleneck | None:
    """The agent the pipeline waits on most: the largest backlog measured in runs needed to
    clear it (backlog / expected records per run), so 40 prospects waiting for a researcher
    that handles 5 a run outweigh 60 waiting for hygiene at 20 a run. Ties go to the agent
    earliest in pipeline order (``expected``'s order), since upstream work starves everything
    after it. ``None`` when nobody has anything waiting. Health is deliberately not mixed in:
    the report shows it per agent, and a failing agent with nothing queued holds nobody up."""
    best: Bottleneck | None = None
    best_ratio = Fraction(0)
    for agent, per_run in expected.items():
        waiting = backlog.get(agent, 0)
        ratio = Fraction(waiting, per_run)
        if waiting > 0 and ratio > best_ratio:
            best_ratio = ratio
            best = Bottleneck(
                agent=agent,
                backlog=waiting,
                expected_per_run=per_run,
                runs_to_clear=float(ratio),
            )
    return best


# --- reports --------------------------------------------------------------------------------


class WindowCounts(BaseModel):
    """What happened in one report window."""

    added: int = 0
    scored: int = 0
    researched: int = 0
    emails_sent: int = 0
    sequences_completed: int = 0
    agent_runs: int = 0
    agent_errors: int = 0
    response_rate: float = 0.0
    """Replies / emails sent over the 7 days ending at the window's end."""

    def minus(self, other: WindowCounts) -> dict[str, float]:
        mine, theirs = self.model_dump(), other.model_dump()
        return {name: mine[name] - theirs[name] for name in mine}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


class PipelineReport(BaseModel):
    """The daily report: every field of the spec's ``PipelineReport`` plus what an operator
    needs next. ``to_dict`` gives the spec's shape, our additions under extra keys."""

    kind: ReportKind = "daily"
    report_date: date
    window_start: AwareDatetime
    window_end: AwareDatetime
    generated_at: AwareDatetime
    total_prospects: int
    prospects_by_status: dict[str, int]
    prospects_by_tier: dict[str, int]
    counts: WindowCounts
    active_sequences: int
    agent_health: list[AgentHealth]
    handoffs: dict[str, int]
    open_violations: dict[str, int]
    open_conflicts: int
    funnel: list[FunnelStep]
    funnel_change: dict[str, float | None]
    summary: str

    def to_dict(self) -> dict[str, Any]:
        c = self.counts
        return {
            "date": self.report_date.isoformat(),
            "total_prospects": self.total_prospects,
            "prospects_by_status": dict(self.prospects_by_status),
            "prospects_by_tier": dict(self.prospects_by_tier),
            "activity": {
                "added": c.added,
                "scored": c.scored,
                "researched": c.researched,
                "emails_sent": c.emails_sent,
            },
            "sequences": {
                "active": self.active_sequences,
                "completed": c.sequences_completed,
                "response_rate": c.response_rate,
            },
            "agents": {"runs": c.agent_runs, "errors": c.agent_errors},
            "summary": self.summary,
            "kind": self.kind,
            "generated_at": _iso(self.generated_at),
            "window": {"start": _iso(self.window_start), "end": _iso(self.window_end)},
            "agent_health": {h.agent_name: h.model_dump(mode="json") for h in self.agent_health},
            "handoffs": dict(self.handoffs),
            "open_violations": dict(self.open_violations),
            "open_conflicts": self.open_conflicts,
            "funnel": [step.to_dict() for step in self.funnel],
            "funnel_change": dict(self.funnel_change),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The inverse of ``to_dict``: a stored payload back into a report."""
        return cls.model_validate(cls._fields(data))

    @classmethod
    def _fields(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        activity, sequences, agents = data["activity"], data["sequences"], data["agents"]
        return {
            "kind": data["kind"],
            "report_date": data["date"],
            "window_start": data["window"]["start"],
            "window_end": data["window"]["end"],
            "generated_at": data["generated_at"],
            "total_prospects": data["total_prospects"],
            "prospects_by_status": data["prospects_by_status"],
            "prospects_by_tier": data["prospects_by_tier"],
            "counts": WindowCounts(
                **activity,
                sequences_completed=sequences["completed"],
                response_rate=sequences["response_rate"],
                agent_runs=agents["runs"],
                agent_errors=agents["errors"],
            ),
            "active_sequences": sequences["active"],
            "agent_health": list(data["agent_health"].values()),
            "handoffs": data["handoffs"],
            "open_violations": data["open_violations"],
            "open_conflicts": data["open_conflicts"],
            "funnel": [FunnelStep.from_dict(step) for step in data["funnel"]],
            "funnel_change": data["funnel_change"],
            "summary": data["summary"],
        }


class WeeklyReport(PipelineReport):
    """The daily report's fields over a 7-day window, plus the 7 days before it (counted from
    the data, so a first or backfilled weekly report has deltas too), and who the pipeline is
    waiting on."""

    kind: ReportKind = "weekly"
    previous_window_start: AwareDatetime
    previous_counts: WindowCounts
    backlog: dict[str, int]
    bottleneck: Bottleneck | None

    @property
    def deltas(self) -> dict[str, float]:
        """This week minus the week before, metric by metric."""
        return self.counts.minus(self.previous_counts)

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {
            "previous_window": {
                "start": _iso(self.previous_window_start),
                "end": _iso(self.window_start),
            },
            "previous": self.previous_counts.model_dump(),
            "deltas": self.deltas,
            "backlog": dict(self.backlog),
            "bottleneck": self.bottleneck.model_dump() if self.bottleneck else None,
        }

    @classmethod
    def _fields(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return super()._fields(data) | {
            "previous_window_start": data["previous_window"]["start"],
            "previous_counts": data["previous"],
            "backlog": data["backlog"],
            "bottleneck": data["bottleneck"],
        }


def report_from_dict(data: Mapping[str, Any]) -> PipelineReport:
    """A stored payload as the model of its kind."""
    model = WeeklyReport if data.get("kind") == "weekly" else PipelineReport
    return model.from_dict(data)
