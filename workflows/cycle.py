"""The orchestration cycle: what the spec's ``run_cycle`` does, as durable steps.

Each step is an activity with a timeout and bounded retries; the workflow decides only what
runs, in what order, and what the summary says.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.conflicts import ConflictActivities, RecordRestartsInput, ResolveInput
    from activities.findings import FindingsActivities
    from activities.handoffs import FindPendingInput, HandoffActivities
    from activities.health import ComputeHealthInput, HealthActivities
    from activities.reports import GenerateReportInput, ReportActivities, ReportResult
    from activities.retention import HousekeepingInput, HousekeepingPass, RetentionActivities
    from activities.upkeep import AfterCycle, AfterCycleInput, UpkeepActivities
    from activities.validation import (
        CloseValidationInput,
        ValidateRangeInput,
        ValidationActivities,
    )
    from db.commands.conflicts import Conflict, ResolveSummary
    from db.commands.findings import RecordHealthInput
    from pipeline.handoffs import PendingHandoff
    from pipeline.metrics import CYCLE_DURATION
    from pipeline.modes import (
        FULL_ORDER,
        CycleMode,
        UnsupportedModeError,
        parse_mode,
    )
    from workflows.sweep import start_child, start_page, started_page
    from workflows.types import (
        CycleInput,
        CycleProgress,
        CycleSummary,
        HandoffSweepSummary,
        HousekeepingSummary,
        MonitorSummary,
        ValidationSummary,
    )

DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=8,
)
DB_TIMEOUT = timedelta(seconds=60)
RESTARTS_IN_WORKFLOW = "resolve-restarts-in-workflow"
"""Before it, the resolve activity started orphaned claims' handoffs itself."""
HOUSEKEEPING_STEP = "housekeeping-step"
"""The housekeeping mode's step: cycles recorded before it never ran one."""
T = TypeVar("T")


@workflow.defn(name="orchestrator-cycle")
class CycleWorkflow:
    def __init__(self) -> None:
        self._progress = CycleProgress(mode="", step="starting")

    @workflow.run
    async def run(self, input: CycleInput) -> CycleSummary:
        try:
            mode = parse_mode(input.mode)
        except UnsupportedModeError as exc:
            raise ApplicationError(str(exc), type="UnsupportedMode", non_retryable=True) from exc
        summary = input.carry or CycleSummary(mode=mode.value, started_at=workflow.now())
        self._progress = CycleProgress(
            mode=mode.value, step="starting", steps_done=list(summary.steps_done)
        )
        for step in FULL_ORDER if mode is CycleMode.FULL else (mode,):
            if step.value in summary.steps_done:
                continue  # done before this run continued as new
            try:
                await self._step(step.value, self._run_step(step, input, summary))
            except ActivityError as err:
                if mode is not CycleMode.FULL:
                    raise
                # a full cycle keeps going: one failing part must not cost the others
                summary.errors[step.value] = _cause(err)
                workflow.logger.warning("cycle step %s failed: %s", step.value, _cause(err))
            summary.steps_done.append(step.value)
        summary.upkeep = await self._after(summary)
        summary.finished_at = workflow.now()
        _record_duration(summary.mode, summary.finished_at - summary.started_at)
        self._progress.step = "done"
        return summary

    async def _run_step(self, step: CycleMode, input: CycleInput, summary: CycleSummary) -> None:
        if step is CycleMode.MONITOR:
            summary.health = await self._monitor()
        elif step is CycleMode.HANDOFFS:
            summary.handoffs = await self._handoffs(input, summary)
        elif step is CycleMode.REPORT:
            summary.report = await self._report(input)
        elif step is CycleMode.RESOLVE:
            summary.conflicts = await self._resolve()
        elif step is CycleMode.VALIDATE:
            summary.validation = await self._validate(input, summary)
        elif step is CycleMode.HOUSEKEEPING and workflow.patched(HOUSEKEEPING_STEP):
            summary.housekeeping = await self._housekeeping(input, summary)

    @workflow.query(name="progress")
    def progress(self) -> CycleProgress:
        return self._progress

    async def _step(self, name: str, work: Awaitable[T]) -> T:
        self._progress.step = name
        result = await work
        self._progress.steps_done.append(name)
        return result

    async def _handoffs(self, input: CycleInput, summary: CycleSummary) -> HandoffSweepSummary:
        """Page through pending prospects; continue as new before the history or the
        pending-children limit grows too large, carrying the cursor and the counts. With
        ``max_in_flight`` handoffs open, a handoff sweep waits for room; a full cycle stops
        here, so its report and checks are not held up behind a backlog."""
        sweep = summary.handoffs or HandoffSweepSummary()
        summary.handoffs = sweep
        wait = summary.mode == CycleMode.HANDOFFS.value
        cursor, started, unbegun = input.handoff_cursor, 0, list(input.handoff_unbegun)
        while True:
            page = await workflow.execute_activity_method(
                HandoffActivities.find_pending_handoffs,
                FindPendingInput(after_id=cursor, unbegun=unbegun),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=DB_RETRY,
            )
            unbegun = list(page.unbegun)
            if page.saturated and not wait:
                sweep.held_back = True
                return sweep
            if page.saturated:
                sweep.waited += 1
                self._progress.detail = (
                    f"waiting for room: {page.in_flight} of {page.max_in_flight} handoffs open"
                )
                await workflow.sleep(page.saturated_wait)
            else:
                started_now = len(await start_page(page, sweep, reconcile=not input.released))
                started += started_now
                unbegun += started_page(page, cursor, started_now)
                self._progress.detail = f"{sweep.pending} pending, {sweep.started} started"
                if page.next_cursor is None:
                    return sweep
                cursor = page.next_cursor
            if (
                started >= page.max_children_per_run
                or workflow.info().is_continue_as_new_suggested()
            ):
                sweep.continued_as_new += 1
                await workflow.wait_condition(workflow.all_handlers_finished)
                carried = {"carry": summary, "handoff_cursor": cursor, "handoff_unbegun": unbegun}
                workflow.continue_as_new(input.model_copy(update=carried))

    async def _resolve(self) -> ResolveSummary:
        """Conflicts are resolved by an activity; the open claims nobody works on come back
        to be started here (activities never start workflows), and are audited after."""
        as_of = workflow.now()
        resolved = await workflow.execute_activity_method(
            ConflictActivities.resolve_conflicts,
            ResolveInput(as_of=as_of),
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=DB_RETRY,
        )
        if not resolved.restart or not workflow.patched(RESTARTS_IN_WORKFLOW):
            return resolved
        assert resolved.restart_policy is not None
        restarts = RecordRestartsInput(as_of=as_of)
        for pending in resolved.restart:
            outcome = await start_child(
                pending, resolved.restart_policy, retry=True, why="restarted"
            )
            if outcome == "started":
                restarts.restarted.append(pending)
            else:
                restarts.refused.append(pending)
                resolved.unresolved.append(_not_restarted(pending))
        resolved.resolved += len(restarts.restarted)
        await workflow.execute_activity_method(
            ConflictActivities.record_restarts,
            restarts,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        return resolved

    async def _validate(self, input: CycleInput, summary: CycleSummary) -> ValidationSummary:
        """Range by range over prospect ids, all judged at one instant; continue as new when
        the history grows, then close what this sweep did not see again."""
        result = summary.validation or ValidationSummary()
        summary.validation = result
        as_of = input.validation_as_of or workflow.now()
        bounds = await workflow.execute_activity_method(
            ValidationActivities.prospect_id_bounds,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        low = input.validation_cursor or bounds.low
        while low is not None and bounds.high is not None and low <= bounds.high:
            found = await workflow.execute_activity_method(
                ValidationActivities.validate_range,
                ValidateRangeInput(low=low, high=low + bounds.range_size, as_of=as_of),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=DB_RETRY,
            )
            for kind, n in found.items():
                result.found[kind] = result.found.get(kind, 0) + n
            result.ranges += 1
            low += bounds.range_size
            self._progress.detail = f"validated prospects below id {low}"
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    input.model_copy(
                        update={
                            "carry": summary,
                            "validation_cursor": low,
                            "validation_as_of": as_of,
                        }
                    )
                )
        closed = await workflow.execute_activity_method(
            ValidationActivities.close_validation,
            CloseValidationInput(as_of=as_of),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        result.resolved, result.open_total = closed.resolved, closed.open_total
        result.open_by_kind, result.alert = closed.open_by_kind, closed.alert
        return result

    async def _housekeeping(self, input: CycleInput, summary: CycleSummary) -> HousekeepingSummary:
        """Bounded passes of retention deletes until no table is left; continue as new when
        the history grows, carrying the instant the windows are measured from."""
        result = summary.housekeeping or HousekeepingSummary()
        summary.housekeeping = result
        as_of = input.housekeeping_as_of or workflow.now()
        tables = input.housekeeping_tables
        while True:
            done = await workflow.execute_activity_method(
                RetentionActivities.prune_retained_rows,
                HousekeepingInput(as_of=as_of, tables=tables),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=DB_RETRY,
            )
            _add_pass(result, done)
            self._progress.detail = f"{sum(result.removed.values())} rows removed"
            if not done.remaining:
                return result
            tables = done.remaining
            if workflow.info().is_continue_as_new_suggested():
                result.continued_as_new += 1
                await workflow.wait_condition(workflow.all_handlers_finished)
                carried = {
                    "carry": summary,
                    "housekeeping_as_of": as_of,
                    "housekeeping_tables": tables,
                }
                workflow.continue_as_new(input.model_copy(update=carried))

    async def _after(self, summary: CycleSummary) -> AfterCycle | None:
        """Heartbeats, the watchdog and notification delivery: never fails the cycle."""
        completed = [s for s in summary.steps_done if s not in summary.errors]
        try:
            return await workflow.execute_activity_method(
                UpkeepActivities.after_cycle,
                AfterCycleInput(
                    as_of=workflow.now(),
                    completed=completed,
                    caught_by_sweep=summary.handoffs.caught_by_sweep if summary.handoffs else 0,
                ),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as err:
            workflow.logger.warning("after-cycle upkeep failed: %s", _cause(err))
            return None

    async def _report(self, input: CycleInput) -> ReportResult:
        return await workflow.execute_activity_method(
            ReportActivities.generate_report,
            GenerateReportInput(
                kind=input.report_kind, report_date=input.report_date, as_of=workflow.now()
            ),
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=DB_RETRY,
        )

    async def _monitor(self) -> MonitorSummary:
        snapshot = await workflow.execute_activity_method(
            HealthActivities.compute_agent_health,
            ComputeHealthInput(as_of=workflow.now()),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        findings = await workflow.execute_activity_method(
            FindingsActivities.record_health_findings,
            RecordHealthInput(
                cycle_id=workflow.info().run_id, as_of=snapshot.as_of, agents=snapshot.agents
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        return MonitorSummary(
            agents_checked=len(snapshot.agents),
            healthy=sum(1 for h in snapshot.agents if h.is_healthy),
            alerts_created=findings.alerts_created,
            alerts_updated=findings.alerts_updated,
            alerts_resolved=findings.alerts_resolved,
            circuits_opened=findings.circuits_opened,
            statuses={h.agent_name: h.status for h in snapshot.agents},
        )


def _add_pass(result: HousekeepingSummary, done: HousekeepingPass) -> None:
    for table, n in done.removed.items():
        result.removed[table] = result.removed.get(table, 0) + n
    result.passes += 1
    result.batches += done.batches


def _not_restarted(pending: PendingHandoff) -> Conflict:
    return Conflict(
        kind="orphaned_claim",
        prospect_id=pending.prospect_id,
        detail=f"{pending.id} is open but another handoff of the prospect is running",
    )


def _cause(err: ActivityError) -> str:
    """The innermost message: what actually went wrong in the activity."""
    cause: BaseException = err
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return str(cause) or type(cause).__name__


def _record_duration(mode: str, took: timedelta) -> None:
    """The SDK's workflow meter records nothing while replaying, so each cycle counts once,
    from its first start to its end across continue-as-new runs."""
    histogram = workflow.metric_meter().create_histogram_timedelta(
        CYCLE_DURATION, "One orchestration cycle, start to end"
    )
    histogram.record(took, {"mode": mode})
