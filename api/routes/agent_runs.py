"""Run ingestion: agents that cannot reach the database report their runs here. Input is
checked before anything is stored; a bad report is refused whole, with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, HTTPException, Path, Query
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from api.deps import IngestSessionDep, SettingsDep, TemporalDep
from api.feed import nudge_feed_quietly
from api.schemas import MAX_ID, NO_NUL, errors
from db.commands.agent_runs import finish_run, record_run, run_by_id
from db.queries.ledger import runs_of

router = APIRouter(prefix="/api/v1/agents", tags=["agent runs"], responses=errors(401, 404, 422))
AgentPath = Annotated[str, Path(max_length=64)]
CLOCK_SKEW = timedelta(minutes=5)


class RunIn(BaseModel):
    status: Literal["running", "completed", "failed"]
    started_at: AwareDatetime
    completed_at: AwareDatetime | None = None
    records_processed: int | None = Field(None, ge=0, le=10_000_000)
    error: str | None = Field(None, max_length=4000, pattern=NO_NUL)
    handoff_id: str | None = Field(None, max_length=128, pattern=NO_NUL)

    @model_validator(mode="after")
    def _consistent(self) -> RunIn:
        finished = self.status != "running"
        if finished and self.completed_at is None:
            raise ValueError(f"a {self.status} run needs completed_at")
        if not finished and self.completed_at is not None:
            raise ValueError("a running run has no completed_at yet")
        if self.completed_at is not None and self.completed_at < self.started_at:
            raise ValueError("completed_at is before started_at")
        if self.status == "running" and self.records_processed is not None:
            raise ValueError("records_processed is reported when the run ends")
        return self


class RunUpdate(BaseModel):
    status: Literal["completed", "failed"]
    completed_at: AwareDatetime
    records_processed: int | None = Field(None, ge=0, le=10_000_000)
    error: str | None = Field(None, max_length=4000, pattern=NO_NUL)


class RunOut(BaseModel):
    id: int
    agent_name: str
    status: str
    started_at: datetime
    completed_at: datetime | None
    records_processed: int | None
    error: str | None
    handoff_id: str | None


def _known(settings: SettingsDep, name: str) -> None:
    if name not in settings.agents:
        raise HTTPException(
            404, detail=f"unknown agent {name!r}; configured agents: {', '.join(settings.agents)}"
        )


def _not_future(moment: datetime, field: str) -> None:
    if moment > datetime.now(UTC) + CLOCK_SKEW:
        raise HTTPException(422, detail=f"{field} is in the future: {moment.isoformat()}")


@router.post("/{name}/runs", response_model=RunOut, status_code=201, responses=errors(400, 403))
async def report_run(
    *,
    name: AgentPath,
    body: RunIn,
    session: IngestSessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    background: BackgroundTasks,
) -> RunOut:
    """Record one run of an agent (finished, or running and finished later with PATCH). A
    finished run outside a handoff wakes the change feed: it may have moved prospects."""
    _known(settings, name)
    _not_future(body.started_at, "started_at")
    if body.completed_at is not None:
        _not_future(body.completed_at, "completed_at")
    row = await record_run(session, name, body.model_dump())
    if body.status != "running" and body.handoff_id is None:
        background.add_task(nudge_feed_quietly, temporal, settings)
    return RunOut.model_validate(row, from_attributes=True)


@router.patch("/{name}/runs/{run_id}", response_model=RunOut, responses=errors(400, 403, 409))
async def finish_reported_run(
    *,
    name: AgentPath,
    run_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: RunUpdate,
    session: IngestSessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    background: BackgroundTasks,
) -> RunOut:
    """Finish a run reported as running (outside a handoff, it wakes the change feed)."""
    _known(settings, name)
    row = await run_by_id(session, run_id)
    if row is None or row.agent_name != name:
        raise HTTPException(404, detail=f"agent {name!r} has no run {run_id}")
    if row.status != "running":
        raise HTTPException(409, detail=f"run {run_id} already ended ({row.status})")
    if body.completed_at < row.started_at:
        raise HTTPException(422, detail="completed_at is before the run's started_at")
    _not_future(body.completed_at, "completed_at")
    await finish_run(
        session,
        row,
        status=body.status,
        completed_at=body.completed_at,
        records_processed=body.records_processed,
        error=body.error,
    )
    if row.handoff_id is None:
        background.add_task(nudge_feed_quietly, temporal, settings)
    return RunOut.model_validate(row, from_attributes=True)


@router.get("/{name}/runs", response_model=list[RunOut])
async def list_runs(
    *,
    name: AgentPath,
    session: IngestSessionDep,
    settings: SettingsDep,
    handoff_id: Annotated[str | None, Query(max_length=128, pattern=NO_NUL)] = None,
    status: Literal["running", "completed", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[RunOut]:
    """An agent's latest runs, optionally for one handoff or in one status."""
    _known(settings, name)
    runs = await runs_of(session, name, limit=limit, handoff_id=handoff_id, status=status)
    return [RunOut.model_validate(r, from_attributes=True) for r in runs]
