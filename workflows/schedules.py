"""The Temporal Schedules that start cycles, created or updated idempotently.

Every schedule skips a run while the previous one is still going (overlap policy skip), and
fires in the configured time zone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from orchestrator.settings import Settings
from pipeline.modes import CycleMode
from workflows.cycle import CycleWorkflow
from workflows.search_attributes import cycle_attributes
from workflows.types import CycleInput

log = logging.getLogger(__name__)
HEALTH_CHECK_SCHEDULE_ID = "orchestrator-health-check"
HANDOFFS_SCHEDULE_ID = "orchestrator-handoffs"
CONFLICTS_SCHEDULE_ID = "orchestrator-conflicts"
VALIDATION_SCHEDULE_ID = "orchestrator-validation"
DAILY_REPORT_SCHEDULE_ID = "orchestrator-daily-report"
WEEKLY_REPORT_SCHEDULE_ID = "orchestrator-weekly-report"
HOUSEKEEPING_SCHEDULE_ID = "orchestrator-housekeeping"


@dataclass(frozen=True)
class ScheduledCycle:
    schedule_id: str
    mode: CycleMode
    cron: str
    report_kind: str = "daily"


def scheduled_cycles(settings: Settings) -> list[ScheduledCycle]:
    crons, reports = settings.schedules, settings.reports
    return [
        ScheduledCycle(HEALTH_CHECK_SCHEDULE_ID, CycleMode.MONITOR, crons.health_check),
        # reconciliation behind the change feed: catches what it missed (counted as caught)
        ScheduledCycle(HANDOFFS_SCHEDULE_ID, CycleMode.HANDOFFS, crons.handoffs),
        ScheduledCycle(CONFLICTS_SCHEDULE_ID, CycleMode.RESOLVE, crons.conflicts),
        ScheduledCycle(VALIDATION_SCHEDULE_ID, CycleMode.VALIDATE, crons.validation),
        ScheduledCycle(DAILY_REPORT_SCHEDULE_ID, CycleMode.REPORT, reports.daily_cron),
        ScheduledCycle(WEEKLY_REPORT_SCHEDULE_ID, CycleMode.REPORT, reports.weekly_cron, "weekly"),
        # retention deletes, daily off-peak (ORCH_RETENTION__SCHEDULE)
        ScheduledCycle(
            HOUSEKEEPING_SCHEDULE_ID, CycleMode.HOUSEKEEPING, settings.retention.schedule
        ),
    ]


def build_schedule(cycle: ScheduledCycle, settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            CycleWorkflow.run,
            CycleInput(mode=cycle.mode.value, report_kind=cycle.report_kind),
            id=cycle.schedule_id.removeprefix("orchestrator-"),
            task_queue=settings.temporal.task_queue,
            typed_search_attributes=cycle_attributes(cycle.mode.value),
            static_summary=f"scheduled {cycle.mode.value} cycle ({cycle.cron})",
        ),
        spec=ScheduleSpec(cron_expressions=[cycle.cron], time_zone_name=settings.time_zone),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def apply_schedules(client: Client, settings: Settings) -> list[str]:
    """Create each schedule, or bring an existing one up to date; returns the ids."""
    applied = []
    for cycle in scheduled_cycles(settings):
        schedule = build_schedule(cycle, settings)
        try:
            await client.create_schedule(cycle.schedule_id, schedule)
            log.info("schedule created: %s (%s)", cycle.schedule_id, cycle.cron)
        except ScheduleAlreadyRunningError:
            await client.get_schedule_handle(cycle.schedule_id).update(_replace_with(schedule))
            log.info("schedule updated: %s (%s)", cycle.schedule_id, cycle.cron)
        applied.append(cycle.schedule_id)
    return applied


def _replace_with(schedule: Schedule):
    def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=schedule)

    return update
