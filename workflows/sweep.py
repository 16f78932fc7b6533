"""Starting handoff children for one page of pending prospects, a batch at a time.

A duplicate start is Temporal telling us the prospect's handoff is already open: counted as
``already_running``, never run twice.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.handoffs import PendingPage
    from pipeline.handoffs import HandoffPolicy, PendingHandoff, StartedPage, handoff_workflow_id
    from pipeline.metrics import CAUGHT_BY_SWEEP, HANDOFFS_STARTED
    from workflows.handoff import HandoffInput, HandoffWorkflow
    from workflows.search_attributes import handoff_attributes
    from workflows.types import HandoffSweepSummary

Finder = Literal["feed", "sweep"]


async def start_page(
    page: PendingPage, summary: HandoffSweepSummary, by: Finder = "sweep", reconcile: bool = True
) -> list[PendingHandoff]:
    """Start a handoff per pending prospect of the page; returns those started. A sweep
    that ``reconcile``s counts what it starts that the feed had passed."""
    summary.pages += 1
    summary.pending += len(page.items)
    runnable = [p for p in page.items if p.id not in page.deferred]
    summary.deferred += len(page.items) - len(runnable)
    started: list[PendingHandoff] = []
    for i in range(0, len(runnable), page.start_batch):
        batch = runnable[i : i + page.start_batch]
        outcomes = await asyncio.gather(*(_start(p, page) for p in batch))
        started += [p for p, outcome in zip(batch, outcomes, strict=True) if outcome == "started"]
        summary.already_running += outcomes.count("already_running")
        summary.failed += outcomes.count("failed")
    summary.started += len(started)
    _count_started(len(started), by)
    if by == "sweep" and reconcile:
        summary.caught_by_sweep += _count_caught(page, started)
    return started


def _count_caught(page: PendingPage, started: list[PendingHandoff]) -> int:
    """Started by the sweep for entries the feed had passed (older than its overlap window
    when the page was found): what the feed missed."""
    if page.feed_overlap is None or page.found_at is None:
        return 0
    passed = page.found_at - page.feed_overlap
    caught = sum(1 for p in started if p.state_entered_at < passed)
    if caught:
        workflow.logger.warning("the sweep handed off %d entries the feed had not", caught)
        counter = workflow.metric_meter().create_counter(
            CAUGHT_BY_SWEEP, "Handoffs the sweep started that the feed had not"
        )
        counter.add(caught)
    return caught


def _count_started(n: int, by: Finder) -> None:
    if n:
        counter = workflow.metric_meter().create_counter(
            HANDOFFS_STARTED, "Handoff workflows started, by who found them"
        )
        counter.add(n, {"by": by})


def started_page(page: PendingPage, after_id: int | None, started: int) -> list[StartedPage]:
    """What the next finder call must count as in flight until these handoffs begin."""
    if not started or page.found_at is None:
        return []
    through = max(p.prospect_id for p in page.items)
    return [
        StartedPage(after_id=after_id, through_id=through, started=started, since=page.found_at)
    ]


async def _start(pending: PendingHandoff, page: PendingPage) -> str:
    return await start_child(pending, page.policy)


async def start_child(
    pending: PendingHandoff, policy: HandoffPolicy, *, retry: bool = False, why: str = ""
) -> str:
    """Start ``pending``'s handoff as an abandoned child: ``started``, ``already_running``
    (the prospect has one open: Temporal refuses a second) or ``failed``."""
    summary = f"{pending.from_state} → {pending.to_agent}, prospect {pending.prospect_id}"
    try:
        await workflow.start_child_workflow(
            HandoffWorkflow.run,
            HandoffInput(pending=pending, policy=policy, retry=retry),
            id=handoff_workflow_id(pending.prospect_id),
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=handoff_attributes(pending.prospect_id, pending.to_agent),
            static_summary=f"{why}: {summary}" if why else summary,
        )
    except WorkflowAlreadyStartedError:
        return "already_running"
    except Exception as exc:  # a start refused for another reason is counted, not fatal
        workflow.logger.warning("could not start handoff for %s: %s", pending.id, exc)
        return "failed"
    return "started"
