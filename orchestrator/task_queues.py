"""Who polls an agent's task queue: Temporal's DescribeTaskQueue, cached per process.

A worker's poll is a long poll: an idle one asks again about once a minute, and the server
lists a poller with the time of its latest poll for minutes after it went away. So a queue is
*served* when some poller asked within ``poller_fresh`` (a little over the long poll), and one
whose workers stopped reads as absent about a minute later. Answers are cached for
``cache_seconds`` so the handoff's begin step and the API can ask on every call: one
DescribeTaskQueue per queue per few seconds, whatever the load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueuePollers:
    queue: str
    served: bool | None
    """``None`` when Temporal could not be asked."""
    pollers: int = 0
    """Pollers that asked within ``poller_fresh``."""
    last_poll: datetime | None = None
    error: str | None = None


class TaskQueuePresence:
    """Per-process cache of who polls which activity task queue."""

    def __init__(
        self,
        client: Client,
        *,
        cache_seconds: float = 5.0,
        poller_fresh: timedelta = timedelta(seconds=75),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl, self._fresh, self._clock = cache_seconds, poller_fresh, clock
        self._cache: dict[str, tuple[float, QueuePollers]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._refreshing: dict[str, asyncio.Task[QueuePollers]] = {}
        self.lookups = 0
        """DescribeTaskQueue calls made (the cache's misses)."""

    @property
    def cache_seconds(self) -> float:
        return self._ttl

    async def pollers(self, queue: str, *, stale_ok: bool = False) -> QueuePollers:
        """Who polls ``queue``, at most ``cache_seconds`` old; concurrent callers of one
        queue share one lookup. With ``stale_ok`` (the handoff's begin step, which must not
        wait on Temporal) an older answer is returned at once and refreshed in the
        background; only a queue never looked at is waited for."""
        cached = self._cached(queue)
        if cached is not None:
            return cached
        stale = self._cache.get(queue)
        if stale_ok and stale is not None:
            self._refresh_soon(queue)
            return stale[1]
        return await self._refresh(queue)

    async def _refresh(self, queue: str) -> QueuePollers:
        async with self._locks.setdefault(queue, asyncio.Lock()):
            cached = self._cached(queue)
            if cached is None:
                cached = await self._describe(queue)
                self._cache[queue] = (self._clock() + self._ttl, cached)
            return cached

    def _refresh_soon(self, queue: str) -> None:
        if queue in self._refreshing:
            return
        task = asyncio.get_running_loop().create_task(self._refresh(queue))
        self._refreshing[queue] = task
        task.add_done_callback(lambda _: self._refreshing.pop(queue, None))

    def _cached(self, queue: str) -> QueuePollers | None:
        entry = self._cache.get(queue)
        return entry[1] if entry is not None and entry[0] > self._clock() else None

    async def _describe(self, queue: str) -> QueuePollers:
        self.lookups += 1
        request = DescribeTaskQueueRequest(
            namespace=self._client.namespace,
            task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
        try:
            answer = await self._client.workflow_service.describe_task_queue(
                request, timeout=timedelta(seconds=5)
            )
        except (RPCError, RuntimeError) as exc:  # unreachable: say so, never raise
            log.warning("cannot describe task queue %s: %s", queue, exc)
            return QueuePollers(queue=queue, served=None, error=str(exc)[:300])
        now = datetime.now(UTC)
        polls = [p.last_access_time.ToDatetime(UTC) for p in answer.pollers]
        recent = [t for t in polls if now - t <= self._fresh]
        last = max(polls, default=None)
        return QueuePollers(queue=queue, served=bool(recent), pollers=len(recent), last_poll=last)
