"""Running the long-lived parts (worker, API, dev server) in one asyncio process, and
stopping all of them cleanly on SIGINT, SIGTERM or SIGHUP; a second one stops at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)
T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Ctrl-C, a service manager's stop, and the terminal closing (SIGHUP reaches the whole
foreground process group): each asks for the same orderly stop."""


API_DRAIN_SECONDS = 1


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: the process-wide stop event decides."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def api_server(app: FastAPI, host: str, port: int) -> ApiServer:
    """``log_config=None``: uvicorn's loggers reach the root handler, so its lines take the
    process's log format (JSON lines) instead of uvicorn's own text. On stop, requests still
    open (an event stream never ends by itself) get :data:`API_DRAIN_SECONDS`."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        log_config=None,
        timeout_graceful_shutdown=API_DRAIN_SECONDS,
    )
    return ApiServer(config)


def stop_on_signals(stop: asyncio.Event, at_once: Callable[[], None] | None = None) -> None:
    """The first of :data:`STOP_SIGNALS` sets ``stop``; a second one, any of them, calls
    ``at_once`` (kill what must not outlive us) and exits the process there and then."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, _request_stop, loop, stop, sig, at_once)


def _request_stop(
    loop: asyncio.AbstractEventLoop,
    stop: asyncio.Event,
    sig: signal.Signals,
    at_once: Callable[[], None] | None,
) -> None:
    log.info("received %s, stopping (again to stop at once)", sig.name)
    stop.set()
    # a plain handler now: it runs even while the event loop is stuck in a shutdown step
    for each in STOP_SIGNALS:
        loop.remove_signal_handler(each)
        signal.signal(each, _exit_now(at_once))


def _exit_now(at_once: Callable[[], None] | None) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        log.warning("received %s again, stopping at once", signal.Signals(signum).name)
        if at_once is not None:
            at_once()
        os._exit(128 + signum)

    return handler


def run_then_leave(work: Coroutine[Any, Any, T], leftovers_within: float = 1.0) -> T:
    """``asyncio.run(work)``, except that tasks still running after ``work`` (activities a
    cancelled worker never got to cancel, say) get ``leftovers_within`` seconds to end once
    cancelled, not for ever: ``asyncio.run`` waits on every one, and a task that swallows
    its cancellation would hold the process after everything it served has stopped. If any
    is still there, the process exits at once, streams flushed."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(work)
    finally:
        left = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=leftovers_within))
        if stuck := [task for task in left if not task.done()]:
            log.debug("%d tasks outlived the stop; exiting without them", len(stuck))
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1 if sys.exc_info()[0] else 0)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def serve_api_until(server: ApiServer, stop: asyncio.Event) -> None:
    task = asyncio.create_task(server.serve())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopper.cancel()
    await task


@dataclass(frozen=True)
class Service:
    """A long-lived part that runs until its own ``stop`` event is set."""

    name: str
    run: Callable[[asyncio.Event], Awaitable[object]]
    grace: float
    """How long its own stop may take before it is cancelled."""


async def run_stopping_in_order(
    services: Sequence[Service], stop: asyncio.Event, within: float
) -> None:
    """Run ``services`` side by side until ``stop`` is set or one of them ends; then stop
    them one at a time, in the order given, each within its grace and all within
    ``within`` seconds.

    The order is the point: what produces work (the simulated agents) stops before what
    does it (the worker), and that before what shows it (the API), so nothing is left
    half-done waiting on a part already gone. A part that overstays its grace is cancelled,
    so a stop never waits on a lock or a slow peer. The first failure is raised."""
    events = [asyncio.Event() for _ in services]
    tasks = [asyncio.ensure_future(s.run(e)) for s, e in zip(services, events, strict=True)]
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        stopper.cancel()
        deadline = asyncio.get_running_loop().time() + within
        for service, event, task in zip(services, events, tasks, strict=True):
            event.set()
            await _finish(service, task, deadline)
    for task in tasks:
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            raise error


CANCEL_GRACE = 0.5
"""How long a cancelled part gets to unwind before the stop goes on without it."""


async def _finish(service: Service, task: asyncio.Future[object], deadline: float) -> None:
    """Wait for ``task`` to end by itself (its grace, not past ``deadline``), then cancel
    it and wait :data:`CANCEL_GRACE` for the cancellation to land, no longer."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    # at least a moment each: the API answers what it accepted even when others overran
    grace = max(min(service.grace, deadline - began), CANCEL_GRACE)
    done, _ = await asyncio.wait([task], timeout=grace)
    if done:
        log.debug("%s stopped in %.2f s", service.name, loop.time() - began)
        return
    log.warning("%s did not stop within %.1f s; cancelling it", service.name, grace)
    task.cancel()
    await asyncio.wait([task], timeout=CANCEL_GRACE)
