"""What a benchmark run produces: figures (ours against the baseline or the ceiling, with the
goal) and agreement checks (the correctness oracle), printed as a table and saved as JSON."""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Goal:
    text: str
    max_ours: float | None = None
    """Ours must be at most this (seconds, bytes...)."""
    max_ratio: float | None = None
    min_ratio: float | None = None
    """Bounds on ours / other."""

    def met(self, ours: float | None, ratio: float | None) -> bool | None:
        checks: list[bool] = []
        if self.max_ours is not None and ours is not None:
            checks.append(ours <= self.max_ours)
        if self.max_ratio is not None and ratio is not None:
            checks.append(ratio <= self.max_ratio)
        if self.min_ratio is not None and ratio is not None:
            checks.append(ratio >= self.min_ratio)
        return all(checks) if checks else None


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    ours: float | None
    other: float | None = None
    other_kind: str = "baseline"
    goal: str = ""
    met: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.other:
            return None
        return self.ours / self.other

    @classmethod
    def make(
        cls,
        key: str,
        label: str,
        unit: str,
        ours: float | None,
        other: float | None = None,
        goal: Goal | None = None,
        **kw: Any,
    ) -> Figure:
        fig = cls(key, label, unit, ours, other, **kw)
        if goal is not None:
            fig.goal, fig.met = goal.text, goal.met(ours, fig.ratio)
        return fig

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Measured:
    median: float
    samples: list[float]
    peak_bytes: int | None = None


async def measure(
    fn: Callable[[], Awaitable[Any]], repeat: int, *, warmup: bool = True, memory: bool = True
) -> tuple[Measured, Any]:
    """Median wall time of ``repeat`` calls (after one warm-up call), then one more call under
    ``tracemalloc`` for the peak of Python allocations. Returns the last call's result too."""
    result = None
    if warmup:
        result = await fn()
    samples = []
    for _ in range(max(repeat, 1)):
        began = time.perf_counter()
        result = await fn()
        samples.append(time.perf_counter() - began)
    peak = None
    if memory:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            await fn()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return Measured(statistics.median(samples), samples, peak), result


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"
    if unit == "bytes":
        return f"{value / 1e6:,.2f} MB" if value >= 1e5 else f"{value / 1e3:,.1f} kB"
    if unit == "x":
        return f"{value:,.2f}x"
    return f"{value:,.1f} {unit}"


def fmt_ratio(fig: Figure) -> str:
    ratio = fig.ratio
    if ratio is None:
        return "—"
    if fig.unit in ("s", "bytes") and 0 < ratio < 1:
        word = "faster" if fig.unit == "s" else "less"
        return f"{ratio:.4f} ({1 / ratio:,.1f}x {word})"
    return f"{ratio:.2f}"


def table(figures: list[Figure]) -> str:
    rows = [("figure", "ours", "baseline / ceiling", "ratio ours/other", "goal", "met")]
    for f in figures:
        other = fmt_value(f.other, f.unit)
        if f.other is not None and f.other_kind != "baseline":
            other += f" ({f.other_kind})"
        met = "—" if f.met is None else "yes" if f.met else "NO"
        rows.append((f.label, fmt_value(f.ours, f.unit), other, fmt_ratio(f), f.goal, met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
