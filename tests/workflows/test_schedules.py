"""Schedules are created once and updated in place, with the policy the design asks for."""

from __future__ import annotations

import uuid

from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleOverlapPolicy

from orchestrator.settings import ScheduleSettings, Settings, TemporalSettings
from workflows.schedules import apply_schedules, scheduled_cycles


def unique_settings(cron: str = "*/15 * * * *", tz: str = "UTC") -> Settings:
    return Settings(
        temporal=TemporalSettings(task_queue=f"sched-{uuid.uuid4().hex[:8]}"),
        schedules=ScheduleSettings(health_check=cron),
        time_zone=tz,
    )


async def test_apply_creates_the_health_schedule_then_updates_it_in_place(client: Client) -> None:
    settings = unique_settings()
    schedule_ids = [c.schedule_id for c in scheduled_cycles(settings)]
    try:
        assert await apply_schedules(client, settings) == schedule_ids
        first = await client.get_schedule_handle("orchestrator-health-check").describe()
        changed = unique_settings(cron="*/10 * * * *", tz="Europe/Paris")
        assert await apply_schedules(client, changed) == schedule_ids
        second = await client.get_schedule_handle("orchestrator-health-check").describe()
    finally:
        for schedule_id in schedule_ids:
            await client.get_schedule_handle(schedule_id).delete()

    spec = first.schedule.spec
    # the server stores a cron as a calendar: every 15th minute, second 0
    assert [r.step for r in spec.calendars[0].minute] == [15]
    assert spec.time_zone_name == "UTC"
    assert first.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
    action = first.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "orchestrator-cycle"
    assert action.task_queue == settings.temporal.task_queue
    assert second.schedule.spec.time_zone_name == "Europe/Paris"
    assert second.schedule.action.task_queue == changed.temporal.task_queue  # type: ignore[union-attr]
    assert [r.step for r in second.schedule.spec.calendars[0].minute] == [10]


async def test_schedules_list_has_one_entry_per_id_after_repeated_applies(client: Client) -> None:
    settings = unique_settings()
    try:
        for _ in range(3):
            await apply_schedules(client, settings)
        ids = [s.id async for s in await client.list_schedules()]
    finally:
        for cycle in scheduled_cycles(settings):
            await client.get_schedule_handle(cycle.schedule_id).delete()
    for cycle in scheduled_cycles(settings):
        assert ids.count(cycle.schedule_id) == 1
