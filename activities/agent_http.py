"""The ``http`` transport: an agent reached by a signed JSON POST.

The agent answers 200 with its result, or 202 and completes later through the API's callback
(which signals the waiting handoff workflow). 4xx answers are permanent failures; 5xx and
network errors are retried by the activity's retry policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import httpx
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db.commands.presence import record_answer
from orchestrator.logs import log_context
from orchestrator.settings import AgentEndpoint
from orchestrator.signing import SIGNATURE_HEADER, sign
from pipeline.contract import AgentResult, AgentTask

CALLBACK_HEADER = "X-Orchestrator-Callback"


class HttpTriggerResult(BaseModel):
    accepted: bool
    """True when the agent answered 202 and will call back."""
    result: AgentResult | None = None


class HttpAgentActivities:
    def __init__(
        self,
        endpoints: Mapping[str, AgentEndpoint],
        http: httpx.AsyncClient,
        callback_base: str,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        answer_every: timedelta = timedelta(seconds=5),
    ) -> None:
        self._endpoints = dict(endpoints)
        self._http = http
        self._callback_base = callback_base.rstrip("/")
        self._sessionmaker, self._answer_every = sessionmaker, answer_every
        self._answered: dict[str, datetime] = {}
        """When this process last recorded each agent's answer (one write per period)."""

    @activity.defn(name="trigger_http_agent")
    async def trigger_http_agent(self, task: AgentTask) -> HttpTriggerResult:
        with log_context(prospect_id=task.prospect_id, agent=task.agent):
            return await self._trigger(task)

    async def _trigger(self, task: AgentTask) -> HttpTriggerResult:
        endpoint = self._endpoints.get(task.agent)
        if endpoint is None or endpoint.url is None:
            raise ApplicationError(
                f"agent {task.agent!r} has no HTTP endpoint configured", non_retryable=True
            )
        body = task.model_dump_json().encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": task.handoff_id,
            CALLBACK_HEADER: f"{self._callback_base}/api/v1/handoffs/{task.handoff_id}/complete",
        }
        if endpoint.secret is not None:
            headers[SIGNATURE_HEADER] = sign(body, endpoint.secret.get_secret_value())
        response = await self._http.post(endpoint.url, content=body, headers=headers)
        activity.logger.info("agent answered HTTP %d", response.status_code)
        await self._record_answer(task.agent, response.status_code)
        return _interpret(task, response)

    async def _record_answer(self, agent: str, status_code: int) -> None:
        """The endpoint is there (whatever it said): its presence, at most one write per
        ``answer_every`` from this process. Best effort: the answer matters more."""
        now = datetime.now(UTC)
        last = self._answered.get(agent)
        if self._sessionmaker is None or (last is not None and now - last < self._answer_every):
            return
        self._answered[agent] = now
        try:
            async with self._sessionmaker() as session:
                await record_answer(session, agent, status_code, now)
                await session.commit()
        except Exception:  # any database failure: presence is shown a little stale
            activity.logger.warning("could not record %s's answer", agent, exc_info=True)


def _interpret(task: AgentTask, response: httpx.Response) -> HttpTriggerResult:
    if response.status_code == 202:
        return HttpTriggerResult(accepted=True)
    if 400 <= response.status_code < 500:
        raise ApplicationError(
            f"agent {task.agent!r} refused the task: HTTP {response.status_code} "
            f"{response.text[:300]}",
            type="AgentRefused",
            non_retryable=True,
        )
    if response.status_code >= 500 or response.status_code != 200:
        raise ApplicationError(f"agent {task.agent!r} answered HTTP {response.status_code}")
    try:
        return HttpTriggerResult(
            accepted=False, result=AgentResult.model_validate_json(response.content)
        )
    except ValidationError as exc:
        raise ApplicationError(
            f"agent {task.agent!r} answered an invalid result: {exc}",
            type="InvalidAgentResult",
            non_retryable=True,
        ) from exc
