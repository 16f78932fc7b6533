"""The cockpit's reads through ASGI on both databases: violations, conflicts (what resolve
would find, checked against what a real resolve then finds), prospects found by text, state,
tier and being stuck, and who the caller is; each filter, page and refusal."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.conflicts import ConflictActivities, ResolveInput
from db.models import AgentRun, RecordLock, StateViolation
from orchestrator.settings import Settings
from pipeline.handoffs import HandoffPolicy
from tests.helpers.api import VIEWER_KEY, api_client
from tests.helpers.factories import add, ledger_entry, prospect

NOW = datetime.now(UTC)


def violation(pid: int, kind: str, state: str, *, ago: int, resolved: bool = False) -> Any:
    seen = NOW - timedelta(minutes=ago)
    return StateViolation(
        prospect_id=pid,
        kind=kind,
        state=state,
        detail=f"{kind} planted",
        first_seen=seen - timedelta(hours=1),
        last_seen=seen,
        resolved_at=seen if resolved else None,
    )


async def get(api: httpx.AsyncClient, path: str, **params: object) -> dict[str, Any]:
    response = await api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def refused(api: httpx.AsyncClient, path: str, field: str, **params: object) -> None:
    response = await api.get(path, params=params)
    assert response.status_code == 422, (params, response.text)
    assert field in response.json()["detail"], response.text


# --- violations -----------------------------------------------------------------------------


async def test_violations_filtered_paged_and_bad_filters_refused(
    agent_sessionmaker, settings: Settings
) -> None:
    await add(
        agent_sessionmaker,
        *prospect("identified", pid=1),
        *prospect("scored", pid=2),
        *prospect("research_complete", pid=3),
        violation(1, "stuck", "identified", ago=1),
        violation(2, "scored_without_tier", "scored", ago=2),
        violation(3, "stuck", "research_complete", ago=3),
        violation(3, "dropped_handoff", "research_complete", ago=4, resolved=True),
    )
    path = "/api/v1/violations"
    async with api_client(settings) as api:
        body = await get(api, path)
        assert [(v["prospect_id"], v["kind"]) for v in body["items"]] == [
            (1, "stuck"),
            (2, "scored_without_tier"),
            (3, "stuck"),
        ]
        assert body["next_cursor"] is None and body["items"][0]["detail"] == "stuck planted"
        assert [v["prospect_id"] for v in (await get(api, path, kind="stuck"))["items"]] == [1, 3]
        assert [v["prospect_id"] for v in (await get(api, path, state="scored"))["items"]] == [2]
        # hygiene is handed identified and needs_scoring; outreach research_complete
        assert [v["prospect_id"] for v in (await get(api, path, agent="hygiene"))["items"]] == [1]
        outreach = await get(api, path, agent="outreach")
        assert [v["prospect_id"] for v in outreach["items"]] == [3]
        assert [v["prospect_id"] for v in (await get(api, path, prospect_id=3))["items"]] == [3]
        resolved = (await get(api, path, status="resolved"))["items"]
        assert [(v["kind"], v["resolved_at"] is not None) for v in resolved] == [
            ("dropped_handoff", True)
        ]
        first = await get(api, path, limit=2)
        assert [v["prospect_id"] for v in first["items"]] == [1, 2]
        rest = await get(api, path, limit=2, cursor=first["next_cursor"])
        assert [v["prospect_id"] for v in rest["items"]] == [3] and rest["next_cursor"] is None

        await refused(api, path, "kind", kind="bogus")
        await refused(api, path, "status", status="closed")
        await refused(api, path, "unknown agent 'nobody'", agent="nobody")
        await refused(api, path, "limit", limit=0)
        await refused(api, path, "prospect_id", prospect_id=0)
        await refused(api, path, "cursor", cursor="garbage")
        await refused(api, path, "cursor", cursor=f"{NOW.isoformat()}|x")
        await refused(api, path, "cursor", cursor="2026-01-01T00:00:00|1")  # no zone


# --- prospects ------------------------------------------------------------------------------


async def test_prospects_found_by_text_state_tier_and_stuck_and_who_asks(
    agent_sessionmaker, settings: Settings
) -> None:
    rows = [
        *prospect("identified", pid=11, entered=NOW - timedelta(minutes=1)),
        *prospect("scored", tier="A1", pid=12, entered=NOW - timedelta(minutes=2)),
        *prospect("scored", tier="B", pid=13, email=None, entered=NOW - timedelta(minutes=3)),
        *prospect("in_sequence", pid=14, entered=NOW - timedelta(minutes=4)),
        *prospect("identified", pid=15, deleted=True),
    ]
    names = {11: ("Globex 100%", "globex.example"), 12: ("Initech", "initech.io")}
    for row in rows:
        if getattr(row, "id", None) in names:
            row.company_name, row.domain = names[row.id]
    failed_entry = rows[2].status_changed_at  # 12's current entry: its handoff failed
    await add(
        agent_sessionmaker,
        *rows,
        ledger_entry(12, "scored", status="failed", agent="researcher", entered=failed_entry),
        ledger_entry(14, "research_complete", status="stalled", agent="outreach"),
        violation(11, "stuck", "identified", ago=1),
        violation(13, "scored_without_tier", "scored", ago=1),
    )
    path = "/api/v1/prospects"
    async with api_client(settings) as api:

        async def found(**params: object) -> list[int]:
            return [p["id"] for p in (await get(api, path, **params))["items"]]

        assert await found() == [11, 12, 13, 14]  # latest state change first, deleted left out
        body = await get(api, path, status="scored")
        assert [(p["id"], p["tier"], p["has_contact_email"]) for p in body["items"]] == [
            (12, "A1", True),
            (13, "B", False),
        ]
        assert await found(tier="B") == [13]
        assert await found(q="GLOBEX") == [11]
        assert await found(q="initech.io") == [12]
        assert await found(q="acme") == [13, 14]
        assert await found(q="100%") == [11]
        assert await found(q="_") == []  # wildcards are taken literally
        # stuck: a stuck violation, a failed handoff of the current entry, a stalled handoff
        assert await found(stuck="true") == [11, 12, 14]
        assert await found(stuck="true", status="scored") == [12]
        first = await get(api, path, limit=3)
        rest = await get(api, path, limit=3, cursor=first["next_cursor"])
        assert [p["id"] for p in rest["items"]] == [14] and rest["next_cursor"] is None

        await refused(api, path, "stuck", stuck="maybe")
        await refused(api, path, "q", q="")
        await refused(api, path, "limit", limit=501)
        await refused(api, path, "cursor", cursor="1|2")

        missing = await api.get(f"{path}/999")
        assert missing.status_code == 404 and "999" in missing.json()["detail"]
        await refused(api, f"{path}/0", "prospect_id")
        await who_am_i(api, settings)


async def who_am_i(operator: httpx.AsyncClient, settings: Settings) -> None:
    """``/me`` tells the page whether to offer actions; a viewer acting is refused."""
    assert await get(operator, "/api/v1/me") == {
        "name": "test-operator",
        "role": "operator",
        "can_act": True,
    }
    async with api_client(settings, key=VIEWER_KEY) as api:
        assert await get(api, "/api/v1/me") == {
            "name": "test-viewer",
            "role": "viewer",
            "can_act": False,
        }
        bulk = await api.post("/api/v1/handoffs/retry", json={"agent": "hygiene"})
        assert bulk.status_code == 403 and "operator" in bulk.json()["detail"]


# --- conflicts ------------------------------------------------------------------------------


def kinds(items: list[dict[str, Any]]) -> Counter[str]:
    return Counter(c["kind"] for c in items)


async def test_conflicts_are_what_resolve_finds_then_what_it_did(
    client: Client, agent_sessionmaker, sessionmaker, settings: Settings
) -> None:
    p = 8100  # handoff workflow ids are per prospect, on a server the session shares
    hour = timedelta(hours=1)
    done = ledger_entry(p + 2, "identified", status="completed", ago=timedelta(minutes=30))
    blocked = ledger_entry(p + 3, "identified", status="blocked", ago=timedelta(minutes=20))
    twins = [
        ledger_entry(p + 4, "identified", status="running", entered=NOW - timedelta(minutes=9)),
        ledger_entry(p + 4, "scored", status="running", entered=NOW - timedelta(minutes=1)),
    ]
    await add(
        agent_sessionmaker,
        *[row for pid in range(p + 1, p + 5) for row in prospect("identified", pid=pid)],
        RecordLock(
            prospect_id=p + 1,
            agent_name="hygiene",
            run_id="gone",
            acquired_at=NOW - 2 * hour,
            expires_at=NOW - hour,
        ),
        RecordLock(
            prospect_id=p + 2,
            agent_name="hygiene",
            run_id=done.id,
            acquired_at=NOW - hour,
            expires_at=NOW + hour,
        ),
        RecordLock(
            prospect_id=p + 3,
            agent_name="researcher",
            run_id="theirs",
            acquired_at=NOW - hour,
            expires_at=NOW + 24 * hour,
        ),
        *[
            AgentRun(agent_name="outreach", status="running", started_at=NOW, handoff_id="h-5")
            for _ in range(2)
        ],
        done,
        blocked,
        *twins,
    )
    path = "/api/v1/conflicts"
    async with api_client(settings, client) as api:
        found = (await get(api, path))["items"]
        assert kinds(found) == {
            "expired_lease": 1,
            "orphaned_lease": 1,
            "contention": 1,
            "duplicate_claim": 1,
            "duplicate_run": 1,
            "orphaned_claim": 1,
        }
        by_kind = {c["kind"]: c for c in found}
        contention = by_kind["contention"]
        assert (contention["prospect_id"], contention["holder"], contention["waiters"]) == (
            p + 3,
            "researcher",
            [blocked.id],
        )
        assert by_kind["duplicate_claim"]["handoff_ids"] == [t.id for t in twins]
        assert twins[1].id in by_kind["duplicate_claim"]["resolution"]
        assert by_kind["orphaned_claim"]["handoff_ids"] == [blocked.id]
        assert [c["kind"] for c in (await get(api, path, kind="duplicate_run"))["items"]] == [
            "duplicate_run"
        ]

        # a real resolve finds exactly these (a duplicate claim counts its extra rows)
        activities = ConflictActivities(
            sessionmaker, client, settings.conflicts, policy=HandoffPolicy()
        )
        summary = await ActivityEnvironment().run(
            activities.resolve_conflicts, ResolveInput(as_of=datetime.now(UTC))
        )
        expected = Counter({c["kind"]: 0 for c in found})
        for c in found:
            expected[c["kind"]] += (
                len(c["handoff_ids"]) - 1 if c["kind"] == "duplicate_claim" else 1
            )
        assert summary.by_kind == dict(expected)

        left = kinds((await get(api, path))["items"])
        assert left == {"contention": 1, "duplicate_run": 1, "orphaned_claim": 1}
        resolved = await get(api, path, status="resolved")
        assert resolved["status"] == "resolved"
        assert kinds(resolved["items"]) == {
            "expired_lease": 1,
            "orphaned_lease": 1,
            "duplicate_claim": 1,
        }
        one = (await get(api, path, status="resolved", kind="expired_lease"))["items"]
        assert [(c["prospect_id"], c["status"]) for c in one] == [(p + 1, "resolved")]
        assert "released" in one[0]["resolution"]
        await refused(api, path, "kind", kind="bogus")
        await refused(api, path, "status", status="closed")
