"""``orchestrator worker`` with a record of its Python heap, for figure 6.

Resident memory alone cannot tell a leak from the allocator keeping its high-water mark after
a burst of workflows in memory. The number of objects the collector tracks can, and so can
what the C allocator has in use (every Python object, under the image's ``PYTHONMALLOC=malloc``;
otherwise the blocks in Python's own arenas count them): they fall back when the burst is
over, and a leak makes them climb with every handoff. All are cheap to read, so the worker
runs at its normal speed (tracemalloc would slow it several times and change what is
measured).

Run as ``python -m bench.heap_worker FILE``: one JSON line per sample is appended to FILE.
"""

from __future__ import annotations

import ctypes
import gc
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from cli.app import app
from orchestrator.allocator import c_library, find_mallctl

EVERY = 5.0
"""Seconds between samples."""
TYPES_EVERY = 12
"""Every so many samples, also the most numerous object types (walks every object)."""
TOP_TYPES = 15


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo2() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    function = getattr(c_library(), "mallinfo2", None)
    if function is not None:
        function.restype = _MallInfo2
    return function


MALLINFO2 = _mallinfo2()


MALLCTL = find_mallctl()


def _call_mallctl(name: str, old: ctypes._SimpleCData, new: ctypes._SimpleCData | None) -> None:
    assert MALLCTL is not None
    size = ctypes.c_size_t(ctypes.sizeof(old))
    new_pointer, new_size = (
        (ctypes.byref(new), ctypes.sizeof(new)) if new is not None else (None, 0)
    )
    failed = MALLCTL(name.encode(), ctypes.byref(old), ctypes.byref(size), new_pointer, new_size)
    if failed:
        raise OSError(failed, f"mallctl({name!r}) failed")


def _jemalloc_heap() -> dict[str, int]:
    """Bytes allocated, and resident beyond them (free pages not yet returned, plus
    jemalloc's own metadata; glibc's figure counts free bytes, resident or not). The
    statistics are a snapshot, refreshed by advancing the epoch."""
    epoch = ctypes.c_uint64(1)
    _call_mallctl("epoch", epoch, epoch)
    allocated, resident = ctypes.c_size_t(0), ctypes.c_size_t(0)
    _call_mallctl("stats.allocated", allocated, None)
    _call_mallctl("stats.resident", resident, None)
    return {"in_use": allocated.value, "kept_free": resident.value - allocated.value}


def native_heap() -> dict[str, int]:
    """What the C allocator holds (the Temporal core, the database drivers and Python's large
    objects allocate there; Python's small objects too with ``PYTHONMALLOC=malloc``, else
    they come from its own arenas): bytes in use, and bytes free but kept. Kept memory
    growing while in-use stays level is the allocator's high-water mark, not a leak. Read
    from jemalloc where it is preloaded, else from glibc; empty where the C library has no
    ``mallinfo2``."""
    if MALLCTL is not None:
        return _jemalloc_heap()
    if MALLINFO2 is None:
        return {}
    info = MALLINFO2()
    return {"in_use": info.uordblks + info.hblkhd, "kept_free": info.fordblks}


def heap_sample(with_types: bool) -> dict[str, object]:
    """The Python heap now: live allocator blocks and objects the collector tracks."""
    objects = gc.get_objects()
    sample: dict[str, object] = {
        "at": time.time(),
        "blocks": sys.getallocatedblocks(),
        "objects": len(objects),
        "malloc": native_heap(),
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


TAIL = 16 * 1024
"""Bytes read from the end of the record for its latest sample (a line is under 2 KiB)."""


def latest_sample(path: Path) -> dict[str, object] | None:
    """The last complete sample a worker wrote, read from the end of the file so that
    polling it stays cheap however long the run; None before the first."""
    if not path.exists():
        return None
    with path.open("rb") as record:
        record.seek(max(record.seek(0, 2) - TAIL, 0))
        lines = record.read().decode().splitlines()
    for line in reversed(lines):
        try:
            return dict(json.loads(line))
        except json.JSONDecodeError:
            continue  # being written, or cut by the seek
    return None


def main(path: Path) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=_record, args=(path, stop), name="heap-sampler", daemon=True)
    thread.start()
    try:
        app(["worker"])  # the production command, settings and all
    finally:
        stop.set()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
