"""The cockpit's own calls: who the caller is (so the page offers actions only to an
operator), and retrying every handoff a filter matches as one audited action."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import AwareDatetime, BaseModel, Field
from temporalio.client import Client

from api.deps import SessionDep, SettingsDep, TemporalDep, temporal_client
from api.routes.findings import agent_states
from api.schemas import NO_NUL, errors
from db.commands.bulk import record_bulk_action
from db.commands.controls import blocked_agents
from db.models import Handoff
from db.queries.handoffs import pending_from_row
from db.queries.ledger import handoff_page
from orchestrator.settings import Role, Settings
from pipeline.handoffs import HandoffPolicy, HandoffStatus
from workflows.starters import RetryOutcome, refused, retry_handoff

router = APIRouter(prefix="/api/v1", tags=["cockpit"], responses=errors(401, 422))
BULK_LIMIT = 500


class Me(BaseModel):
    name: str
    role: Role
    can_act: bool
    """Operators may act (run, retry, cancel, pause, acknowledge); viewers only read."""


@router.get("/me", response_model=Me)
async def who_am_i(*, request: Request) -> Me:
    """The caller's key name and role."""
    key = request.state.api_key
    return Me(name=key.name, role=key.role, can_act=key.role is Role.OPERATOR)


class BulkRetryIn(BaseModel):
    status: Literal["failed", "cancelled", "blocked"] = "failed"
    agent: str | None = Field(None, max_length=64, pattern=NO_NUL)
    since: AwareDatetime | None = None
    """Only handoffs whose status last changed at or after this time."""
    limit: int = Field(BULK_LIMIT, ge=1, le=BULK_LIMIT)


class BulkRetryOut(BaseModel):
    matched: int
    started: int
    """Handoffs run again or, when blocked, signalled to try their lease again."""
    not_started: int
    reasons: dict[str, int]
    """Why the rest did not start, with how many each: ``not_retryable``,
    ``handoff_open``, ``agent_held``, ``prospect_retried`` (each outcome says more)."""
    outcomes: list[RetryOutcome]
    more: bool
    """More handoffs may match than ``limit``: run it again for the rest."""
    audit_id: int


@router.post(
    "/handoffs/retry",
    response_model=BulkRetryOut,
    status_code=202,
    responses=errors(403, 503),
)
async def bulk_retry(
    *,
    body: BulkRetryIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> BulkRetryOut:
    """Retry every handoff the filter matches (newest first, at most ``limit``), each as a
    single retry would, audited as one action; says how many started and why the rest
    did not. Only the newest match of each prospect is retried."""
    if body.agent is not None:
        agent_states(settings, body.agent)  # a 422 for an unknown agent
    rows = await handoff_page(
        session, limit=body.limit, status=body.status, agent=body.agent, since=body.since
    )
    client = await temporal_client(temporal)
    held = await blocked_agents(session)
    policy = settings.handoffs.policy(settings.agent_endpoints)
    outcomes: list[RetryOutcome] = []
    seen: set[int] = set()
    for row in rows:
        outcomes.append(await _retry(client, row, seen, held, policy, settings))
    reasons = Counter(o.refusal or "refused" for o in outcomes if o.action == "refused")
    started = len(outcomes) - sum(reasons.values())
    details = {
        "filter": body.model_dump(mode="json"),
        "by": request.state.api_key.name,
        "matched": len(rows),
        "started": started,
        "reasons": dict(reasons),
    }
    audit_id = await record_bulk_action(
        session, "handoffs_bulk_retry", datetime.now(UTC), agent=body.agent, details=details
    )
    return BulkRetryOut(
        matched=len(rows),
        started=started,
        not_started=sum(reasons.values()),
        reasons=dict(reasons),
        outcomes=outcomes,
        more=len(rows) == body.limit,
        audit_id=audit_id,
    )


async def _retry(
    client: Client,
    row: Handoff,
    seen: set[int],
    held: set[str],
    policy: HandoffPolicy,
    settings: Settings,
) -> RetryOutcome:
    """One match: skipped when its prospect was retried already or its agent is held."""
    if row.prospect_id in seen:
        why = f"a newer handoff of prospect {row.prospect_id} was retried"
        return refused(row.id, "prospect_retried", why)
    seen.add(row.prospect_id)
    if row.to_agent in held:
        why = f"{row.to_agent} takes no handoffs now (paused, or its circuit is open)"
        return refused(row.id, "agent_held", why)
    return await retry_handoff(
        client,
        pending_from_row(row),
        HandoffStatus(row.status),
        policy=policy,
        task_queue=settings.temporal.task_queue,
    )
