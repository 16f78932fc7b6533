"""``orchestrator worker`` with a record of its Python heap, for figure 6.

Resident memory alone cannot tell a leak from the allocator keeping its high-water mark after
a burst of workflows in memory. The number of blocks Python has allocated and the number of
objects the collector tracks can: they fall back when the burst is over, and a leak makes them
climb with every handoff. Both are cheap to read, so the worker runs at its normal speed
(tracemalloc would slow it several times and change what is measured).

Run as ``python -m bench.heap_worker FILE``: one JSON line per sample is appended to FILE.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from orchestrator.cli import _settings
from orchestrator.runners import run_worker_process

EVERY = 5.0
"""Seconds between samples."""
TYPES_EVERY = 12
"""Every so many samples, also the most numerous object types (walks every object)."""
TOP_TYPES = 15


def heap_sample(with_types: bool) -> dict[str, object]:
    """The Python heap now: live allocator blocks and objects the collector tracks."""
    objects = gc.get_objects()
    sample: dict[str, object] = {
        "at": time.time(),
        "blocks": sys.getallocatedblocks(),
        "objects": len(objects),
    }
    if with_types:
        counts = Counter(type(o).__name__ for o in objects)
        sample["types"] = dict(counts.most_common(TOP_TYPES))
    del objects
    return sample


def _record(path: Path, stop: threading.Event) -> None:
    taken = 0
    with path.open("a") as out:
        while True:  # the first sample at once, so even a short sweep has one
            out.write(json.dumps(heap_sample(taken % TYPES_EVERY == 0)) + "\n")
            out.flush()
            taken += 1
            if stop.wait(EVERY):
                return


def read_samples(path: Path) -> list[dict[str, object]]:
    """The samples a worker wrote so far (a line being written is skipped)."""
    if not path.exists():
        return []
    samples = []
    for line in path.read_text().splitlines():
        try:
            samples.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return samples


def main(path: Path) -> None:
    settings = _settings()
    stop = threading.Event()
    thread = threading.Thread(target=_record, args=(path, stop), name="heap-sampler", daemon=True)
    thread.start()
    try:
        asyncio.run(run_worker_process(settings))
    finally:
        stop.set()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
