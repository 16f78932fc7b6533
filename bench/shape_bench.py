"""What each part of a handoff's Temporal shape costs: ``python -m bench.shape_bench``.

The throughput figures divide by the ceiling, an empty workflow with one activity started
by a client. A handoff is more than that on the server: it is started as a sweep's or the
feed's child, tags its status twice, sets a stall timer and records two local activities.
This runs the ceiling's workflow with those parts added, no database and no agent work, on
one dev server, in rounds so each variant meets the same machine, and prints each against
the ceiling measured in the same rounds."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.shapes import (
    AGENT_QUEUE,
    TASK_QUEUE,
    ParentWorkflow,
    ShapeWorkflow,
    Starter,
    StarterWorkflow,
    agent,
    step,
)
from bench.temporal_bench import start_server

HANDOFF = ["step", "tag", "stall"]


StartedBy = Literal["client", "child", "activity"]


@dataclass(frozen=True)
class Variant:
    name: str
    parts: list[str]
    started_by: StartedBy = "client"
    """The benchmark's client; a parent's children; or a parent's activity, by the client."""


VARIANTS = (
    Variant("ceiling", []),
    Variant("+ two local activities", ["step"]),
    Variant("+ two status upserts", ["tag"]),
    Variant("+ a stall timer", ["stall"]),
    Variant("started as a child", [], "child"),
    Variant("all of a handoff's parts", HANDOFF),
    Variant("all, started as a child", HANDOFF, "child"),
    Variant("all, started by an activity", HANDOFF, "activity"),
)


async def completed_per_second(client: Client, variant: Variant, n: int, batch: int) -> float:
    """Start ``n`` and wait for all to complete; completions a second."""
    prefix = f"shape-{uuid.uuid4().hex[:8]}"
    began = time.perf_counter()
    if variant.started_by == "client":
        room = asyncio.Semaphore(batch * 10)

        async def one(i: int) -> None:
            async with room:
                await client.execute_workflow(
                    ShapeWorkflow.run, variant.parts, id=f"{prefix}-{i}", task_queue=TASK_QUEUE
                )

        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - began)
    parent = ParentWorkflow if variant.started_by == "child" else StarterWorkflow
    await client.execute_workflow(
        parent.run, args=[prefix, n, batch, variant.parts], id=prefix, task_queue=TASK_QUEUE
    )
    if variant.started_by == "activity":  # its parent does not wait for what it started
        shapes = (client.get_workflow_handle(f"{prefix}-{i}").result() for i in range(n))
        await asyncio.gather(*shapes)
    return n / (time.perf_counter() - began)


async def measure(n: int, rounds: int, batch: int) -> dict[str, list[float]]:
    env = await start_server()
    rates: dict[str, list[float]] = {v.name: [] for v in VARIANTS}
    try:
        async with (
            Worker(
                env.client,
                task_queue=TASK_QUEUE,
                workflows=[ShapeWorkflow, ParentWorkflow, StarterWorkflow],
                activities=[step, Starter(env.client).start],
                # as the worker runs the handoff: outside the sandbox
                workflow_runner=UnsandboxedWorkflowRunner(),
            ),
            Worker(env.client, task_queue=AGENT_QUEUE, activities=[agent]),
        ):
            await completed_per_second(env.client, VARIANTS[0], min(n, 50), batch)  # warm-up
            for round_ in range(rounds):
                turn = round_ % len(VARIANTS)  # each round in another order: the server
                for variant in VARIANTS[turn:] + VARIANTS[:turn]:  # slows as it fills
                    rate = await completed_per_second(env.client, variant, n, batch)
                    rates[variant.name].append(rate)
                    print(f"  round {round_ + 1}: {variant.name:<30} {rate:6.1f}/s", flush=True)
    finally:
        await env.shutdown()
    return rates


def report(rates: dict[str, list[float]]) -> None:
    ceiling = statistics.mean(rates["ceiling"])
    print(f"\n{'shape':<30} {'mean':>9} {'of the ceiling':>15}")
    for name, values in rates.items():
        mean = statistics.mean(values)
        print(f"{name:<30} {mean:7.1f}/s {mean / ceiling:15.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="workflows per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100, help="children started at once")
    args = parser.parse_args()
    report(asyncio.run(measure(args.n, args.rounds, args.batch)))


if __name__ == "__main__":
    main()
