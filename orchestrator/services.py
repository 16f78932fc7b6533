"""Running the long-lived parts (worker, API, dev server) in one asyncio process, and
stopping all of them cleanly on SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Generator

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: the process-wide stop event decides."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def api_server(app: FastAPI, host: str, port: int) -> ApiServer:
    """``log_config=None``: uvicorn's loggers reach the root handler, so its lines take the
    process's log format (JSON lines) instead of uvicorn's own text."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="on", log_config=None
    )
    return ApiServer(config)


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _request_stop, stop, sig)


def _request_stop(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("received %s, stopping", sig.name)
    stop.set()


async def serve_api_until(server: ApiServer, stop: asyncio.Event) -> None:
    task = asyncio.create_task(server.serve())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopper.cancel()
    await task


async def run_until_first_ends(*work: Awaitable[None], stop: asyncio.Event) -> None:
    """Run services side by side; when one ends (or fails), stop the others and wait for them.
    The first failure is raised, so a worker that dies does not leave a healthy-looking API."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
