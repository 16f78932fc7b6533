"""A stored report as Markdown, for pasting into chat. Works on the stored payload (the
``to_dict`` shape), so any stored report renders, whatever version wrote it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def to_markdown(report: Mapping[str, Any]) -> str:
    kind = report.get("kind", "daily")
    window = report.get("window", {})
    activity, sequences, agents = report["activity"], report["sequences"], report["agents"]
    lines = [
        f"## Pipeline {kind} report, {report['date']}",
        "",
        report["summary"],
        "",
        f"Window: {window.get('start', '?')} → {window.get('end', '?')}",
        "",
        f"- Prospects: **{report['total_prospects']}**; added {activity['added']}, "
        f"scored {activity['scored']}, researched {activity['researched']}, "
        f"emails sent {activity['emails_sent']}",
        f"- Sequences: {sequences['active']} active, {sequences['completed']} completed; "
        f"response rate {_pct(sequences['response_rate'])}",
        f"- Agent runs: {agents['runs']}, errors: {agents['errors']}",
    ]
    if bottleneck := report.get("bottleneck"):
        lines.append(f"- Bottleneck: **{bottleneck['agent']}** ({bottleneck['backlog']} waiting)")
    lines += ["", "### By status", ""]
    lines += _table(("status", "prospects"), sorted(report["prospects_by_status"].items()))
    if health := report.get("agent_health"):
        lines += ["", "### Agents", ""]
        rows = [
            (name, h["status"], _pct(h["error_rate"]), h["runs_last_24h"])
            for name, h in health.items()
        ]
        lines += _table(("agent", "status", "error rate", "runs 24h"), rows)
    if funnel := report.get("funnel"):
        lines += ["", "### Funnel", ""]
        change = report.get("funnel_change", {})
        rows = [
            (
                f"{s['from']} → {s['to']}",
                _pct(s["conversion"]),
                _signed(change.get(f"{s['from']}->{s['to']}")),
            )
            for s in funnel
        ]
        lines += _table(("step", "conversion", "change"), rows)
    return "\n".join(lines) + "\n"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.0f} pts"
