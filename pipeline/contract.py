"""The agent contract: what the orchestrator sends an agent and what it expects back.

Agent teams import these models (or mirror them in another SDK language: they are plain
JSON). ``handoff_id`` is the idempotency key: an agent that sees the same id twice must not
do the work twice.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

PROCESS_PROSPECT = "process_prospect"
"""The activity name an agent serves on task queue ``agent-<name>``."""


def agent_task_queue(agent: str) -> str:
    return f"agent-{agent}"


class AgentTask(BaseModel):
    handoff_id: str
    prospect_id: int
    from_state: str
    agent: str
    attempt: int = Field(1, ge=1)


class ResultStatus(StrEnum):
    COMPLETED = "completed"
    SKIPPED = "skipped"
    FAILED = "failed"


class AgentResult(BaseModel):
    status: ResultStatus
    records_processed: int = Field(0, ge=0)
    new_status: str | None = None
    """The prospect's state after the agent's work, as the agent saw it."""
    detail: str | None = Field(None, max_length=4000)
