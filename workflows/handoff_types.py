"""Inputs and outcomes of the handoff workflow. They live outside the workflow's module so the
sandbox imports them once per process (passed through) instead of rebuilding each pydantic
model for every workflow instance, which profiling showed to be a real share of a worker's
CPU at a thousand handoffs."""

from __future__ import annotations

from pydantic import BaseModel

from pipeline.contract import AgentResult
from pipeline.handoffs import HandoffPolicy, HandoffStatus, PendingHandoff


class HandoffInput(BaseModel):
    pending: PendingHandoff
    policy: HandoffPolicy = HandoffPolicy()
    retry: bool = False
    """An operator's retry of a failed or cancelled handoff: it may take the ledger row over."""
    chain: list[str] = []


class CompleteInput(BaseModel):
    """An HTTP agent's late answer, delivered through the API's callback."""

    handoff_id: str
    result: AgentResult


class HandoffOutcome(BaseModel):
    status: HandoffStatus
    result: AgentResult | None = None
    detail: str | None = None
