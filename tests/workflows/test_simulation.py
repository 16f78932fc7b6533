"""Scenario files, and the simulated pipeline end to end: the four simulated agents (built on
the agent SDK) next to the real orchestrator worker, on a real Temporal server and real
databases, until every prospect has gone as far as the trigger rules take it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError

from db.models import (
    Activity,
    AgentControl,
    AgentRun,
    Contact,
    Handoff,
    OrchestratorAction,
    Prospect,
)
from db.queries.handoffs import pending_counts
from db.queries.health import compute_agent_health
from orchestrator.settings import Settings
from pipeline.handoffs import OPEN_STATUSES
from pipeline.health import HealthStatus
from pipeline.states import is_allowed
from simulation.agents import SimulatedAgents
from simulation.runner import run_simulation
from simulation.scenario import (
    FAILING_RATE,
    SIMULATED_AGENTS,
    Behaviour,
    Phase,
    Prospecting,
    Scenario,
    build_scenario,
    load_scenario,
    simulated_expectations,
)
from tests.helpers.factories import count
from tests.helpers.handoffs import wait_until, with_handoffs
from worker import build_worker
from workflows.starters import ensure_feed

Sessions = async_sessionmaker[AsyncSession]

YAML_SCENARIO = """\
seed: 7
speed: 2.5                 # >1 compresses latencies and the prospector's cadence
prospector: {every_seconds: 10, batch: 5, email_rate: 0.85}
agents:
  researcher: {latency: 0.3, failure_rate: 0.05}
phases:                    # minutes since the simulation started
  - {agent: researcher, from_minute: 2, to_minute: 5, failure_rate: 0.5}
reply_rate: 0.2            # share of prospects in sequence that reply later
"""


# --- scenario files -------------------------------------------------------------------------


def test_a_yaml_scenario_is_read(tmp_path: Path) -> None:
    for suffix in (".yaml", ".yml"):
        path = tmp_path / f"scenario{suffix}"
        path.write_text(YAML_SCENARIO)
        scenario = load_scenario(path)
        assert (scenario.seed, scenario.speed, scenario.reply_rate) == (7, 2.5, 0.2)
        assert scenario.prospector == Prospecting(every_seconds=10, batch=5, email_rate=0.85)
        assert scenario.agents == {"researcher": Behaviour(latency=0.3, failure_rate=0.05)}
        assert scenario.phases == [
            Phase(agent="researcher", from_minute=2, to_minute=5, failure_rate=0.5)
        ]


def test_a_json_scenario_is_read(tmp_path: Path) -> None:
    path = tmp_path / "scenario.json"
    data = {
        "seed": 11,
        "prospector": {"every_seconds": 0.5, "batch": 25, "limit": 200},
        "agents": {"hygiene": {"latency": 0, "concurrency": 5}, "outreach": {}},
        "phases": [{"agent": "outreach", "from_minute": 0, "to_minute": 1, "latency": 2}],
        "reply_after_seconds": 3,
    }
    path.write_text(json.dumps(data))
    scenario = load_scenario(path)
    assert scenario.seed == 11 and scenario.speed == 1.0
    assert scenario.prospector.limit == 200 and scenario.prospector.email_rate == 0.85
    assert scenario.agents["hygiene"] == Behaviour(latency=0, concurrency=5)
    assert scenario.agents["outreach"] == Behaviour()
    assert scenario.phases[0].latency == 2 and scenario.phases[0].failure_rate is None
    assert scenario.reply_after_seconds == 3


def test_an_empty_yaml_file_is_the_default_scenario(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing to change\n")
    assert load_scenario(path) == Scenario()


@pytest.mark.parametrize(
    ("data", "unknown"),
    [
        ({"agents": {"prospector": {"latency": 1}}}, "prospector"),
        ({"agents": {"reseacher": {}}}, "reseacher"),
        ({"phases": [{"agent": "closer", "from_minute": 0, "to_minute": 1}]}, "closer"),
    ],
)
def test_unknown_agents_are_refused_by_name(tmp_path: Path, data: dict, unknown: str) -> None:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValidationError) as refused:
        load_scenario(path)
    assert f"unknown simulated agents ['{unknown}']" in str(refused.value)
    assert "simulated: hygiene, researcher, outreach" in str(refused.value)


@pytest.mark.parametrize("window", [(5, 2), (3, 3)])
def test_a_phase_must_end_after_it_starts(tmp_path: Path, window: tuple[int, int]) -> None:
    start, end = window
    path = tmp_path / "scenario.yaml"
    path.write_text(
        f"phases:\n  - {{agent: hygiene, from_minute: {start}, to_minute: {end}, latency: 1}}\n"
    )
    with pytest.raises(ValidationError, match="phase for hygiene: to_minute must be after"):
        load_scenario(path)


@pytest.mark.parametrize(
    "data",
    [
        {"agents": {"hygiene": {"failure_rate": 1.5}}},
        {"agents": {"hygiene": {"latency": -1}}},
        {"speed": 0},
        {"prospector": {"batch": 0}},
        {"reply_rate": "often"},
    ],
)
def test_out_of_range_values_are_refused(tmp_path: Path, data: dict) -> None:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValidationError):
        load_scenario(path)


def test_a_malformed_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scenario.json"
    path.write_text('{"seed": ')
    with pytest.raises(ValueError):
        load_scenario(path)


def test_behaviour_inside_and_outside_a_phase() -> None:
    scenario = Scenario(
        agents={"researcher": Behaviour(latency=0.3, failure_rate=0.05, concurrency=4)},
        phases=[
            Phase(agent="researcher", from_minute=2, to_minute=5, failure_rate=0.5),
            Phase(agent="outreach", from_minute=1, to_minute=2, latency=9),
        ],
    )
    base = Behaviour(latency=0.3, failure_rate=0.05, concurrency=4)
    assert scenario.behaviour("researcher", 0) == base
    assert scenario.behaviour("researcher", 1.99) == base
    during = Behaviour(latency=0.3, failure_rate=0.5, concurrency=4)
    assert scenario.behaviour("researcher", 2) == during  # from_minute is inside
    assert scenario.behaviour("researcher", 4.5) == during
    assert scenario.behaviour("researcher", 5) == base  # to_minute is outside
    assert scenario.behaviour("outreach", 1.5) == Behaviour(latency=9)
    assert scenario.behaviour("outreach", 3) == Behaviour()
    assert scenario.behaviour("hygiene", 2.5) == Behaviour()


def test_build_scenario_makes_one_agent_fail(tmp_path: Path) -> None:
    failing = build_scenario(fail="researcher")
    assert FAILING_RATE == 0.6
    assert failing.agents["researcher"].failure_rate == 0.6
    assert failing.behaviour("researcher", 0).failure_rate == 0.6
    assert failing.behaviour("hygiene", 0).failure_rate == 0.0
    assert failing.model_copy(update={"agents": {}}) == Scenario()

    path = tmp_path / "scenario.yaml"
    path.write_text(YAML_SCENARIO)
    from_file = build_scenario(path, fail="researcher", speed=10)
    assert from_file.speed == 10
    assert from_file.agents["researcher"] == Behaviour(latency=0.3, failure_rate=0.6)
    assert from_file.phases == load_scenario(path).phases
    assert build_scenario(path) == load_scenario(path)
    for bad in ("prospector", "closer"):
        with pytest.raises(ValueError, match="simulated agents are hygiene, researcher"):
            build_scenario(fail=bad)


def test_simulated_expectations_are_valid_agent_settings() -> None:
    scenario = Scenario(prospector=Prospecting(batch=25))
    expected = simulated_expectations(scenario)
    assert expected == {"prospector": 25, "hygiene": 1, "researcher": 1, "outreach": 1}
    assert list(expected) == ["prospector", *SIMULATED_AGENTS]
    assert Settings(agents=expected).agents == expected
    assert simulated_expectations(Scenario())["prospector"] == Scenario().prospector.batch


# --- end to end on Temporal -----------------------------------------------------------------

PROSPECTS = 200
FAST = Scenario(
    seed=3,
    speed=1,
    prospector=Prospecting(every_seconds=0.5, batch=25, limit=PROSPECTS),
    agents={name: Behaviour(latency=0.0) for name in SIMULATED_AGENTS},
    reply_rate=0.3,
    reply_after_seconds=0.5,
)


@dataclass
class Simulation:
    settings: Settings
    stop: asyncio.Event
    task: asyncio.Task[SimulatedAgents]

    async def finish(self) -> SimulatedAgents:
        self.stop.set()
        return await asyncio.wait_for(asyncio.shield(self.task), 30)


async def open_workflows(client: Client, task_queue: str) -> list[tuple[str, str | None]]:
    query = f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'"
    return [(w.id, w.run_id) async for w in client.list_workflows(query)]


async def wind_down(client: Client, task_queue: str) -> None:
    """Let the cycles a stopped prospector asked for end; terminate whatever is still open
    after that (a handoff waiting on an agent that is gone would otherwise go on)."""
    with contextlib.suppress(TimeoutError):
        await wait_until(lambda: _none_open(client, task_queue), within=10)
    for workflow_id, run_id in await open_workflows(client, task_queue):
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(workflow_id, run_id=run_id).terminate("test over")


async def _none_open(client: Client, task_queue: str) -> bool:
    return not await open_workflows(client, task_queue)


@contextlib.asynccontextmanager
async def simulation(
    client: Client,
    sessions: tuple[Sessions, Sessions],
    worker_settings: Settings,
    scenario: Scenario,
) -> AsyncIterator[Simulation]:
    """The orchestrator's worker with the simulation's expectations, and the simulated
    agents in the background (``sessions``: the orchestrator's and the agents'). On the way
    out the agents stop first, then the orchestrator, once the workflows on its queue have
    ended."""
    settings = worker_settings.model_copy(update={"agents": simulated_expectations(scenario)})
    queue = settings.temporal.task_queue
    stop = asyncio.Event()
    sessionmaker, agent_sessionmaker = sessions
    async with build_worker(client, sessionmaker, settings):
        feed = await ensure_feed(client, queue)  # the prospector relies on it, as in dev
        run = run_simulation(client, agent_sessionmaker, scenario, queue, stop)
        task = asyncio.create_task(run)
        try:
            yield Simulation(settings, stop, task)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 60)
            await feed.terminate("test over")
            await wind_down(client, queue)


async def drained(sessionmaker: Sessions, prospects: int) -> bool:
    """Every prospect created, no handoff open, none waiting for one."""
    if await count(sessionmaker, Prospect) < prospects:
        return False
    if await count(sessionmaker, Handoff, Handoff.status.in_([s.value for s in OPEN_STATUSES])):
        return False
    async with sessionmaker() as session:
        return not await pending_counts(session)


async def quiesce(sessionmaker: Sessions) -> None:
    """Pause hygiene, as an operator would (new prospects wait for it), and let the work in
    flight end, so that stopping the agents' workers cancels no activity half-way."""
    async with sessionmaker() as session:
        session.add(
            AgentControl(
                agent_name="hygiene",
                paused=True,
                paused_reason="test: quiesce before stopping",
                circuit_state="closed",
                updated_at=datetime.now(UTC),
            )
        )
        await session.commit()
    open_statuses = [s.value for s in OPEN_STATUSES]
    await wait_until(
        lambda: _none(sessionmaker, Handoff, Handoff.status.in_(open_statuses)), within=30
    )


async def _none(sessionmaker: Sessions, model: type, *where: object) -> bool:
    return not await count(sessionmaker, model, *where)


def expected_final(tier: str | None, has_email: bool) -> set[str]:
    """Where the trigger rules leave a prospect (pipeline/triggers.py): hygiene scores every
    identified prospect; only A1/A2 are researched from scored (B, C and D stay scored, the
    research_complete trigger admitting B never sees one); outreach needs a contact email;
    a prospect in sequence may have replied."""
    if tier in ("A1", "A2"):
        return {"in_sequence", "replied"} if has_email else {"research_complete"}
    return {"scored"}


async def test_simulated_pipeline_drains_consistently(
    client: Client, sessionmaker: Sessions, agent_sessionmaker: Sessions, worker_settings: Settings
) -> None:
    async with simulation(client, (sessionmaker, agent_sessionmaker), worker_settings, FAST) as sim:
        await wait_until(lambda: drained(sessionmaker, PROSPECTS), within=90)
        await asyncio.sleep(FAST.reply_after_seconds + 1.0)  # replies already on their way
        agents = await sim.finish()
    assert agents.created == PROSPECTS
    assert await drained(sessionmaker, PROSPECTS)

    async with sessionmaker() as session:
        has_email = exists().where(Contact.prospect_id == Prospect.id, Contact.email.is_not(None))
        prospects = (
            await session.execute(select(Prospect.id, Prospect.status, Prospect.tier, has_email))
        ).all()
        moves = (
            await session.execute(
                select(Activity.prospect_id, Activity.details)
                .where(Activity.type == "status_change")
                .order_by(Activity.created_at, Activity.id)
            )
        ).all()
        handoffs = list(await session.scalars(select(Handoff)))
        runs = list(await session.scalars(select(AgentRun)))
        executed = await session.scalar(
            select(func.count())
            .select_from(OrchestratorAction)
            .where(OrchestratorAction.action == "handoff_executed")
        )

    # every prospect went exactly as far as the trigger rules say
    assert len(prospects) == PROSPECTS
    assert {tier for _, _, tier, _ in prospects} <= {"A1", "A2", "B", "C", "D"}
    wrong = [
        (pid, status, tier, email)
        for pid, status, tier, email in prospects
        if status not in expected_final(tier, email)
    ]
    assert wrong == []
    states = Counter(status for _, status, _, _ in prospects)
    assert states["replied"] > 0 and states["in_sequence"] > 0
    assert any(tier == "B" and email for _, _, tier, email in prospects)  # B with email: scored

    # the prospects' states are what the agents' own status_change records say, move by move
    latest: dict[int, str] = {}
    for pid, details in moves:
        assert details["from"] == latest.get(pid, "identified"), (pid, details)
        assert is_allowed(details["from"], details["to"]), details
        latest[pid] = details["to"]
    assert Counter(latest.get(pid, "identified") for pid, _, _, _ in prospects) == states

    # one completed handoff per (prospect, state) and agent, and one run per handoff
    assert {h.status for h in handoffs} == {"completed"}
    assert executed == len(handoffs)
    keys = [(h.prospect_id, h.from_state, h.to_agent) for h in handoffs]
    assert len(keys) == len(set(keys))
    assert Counter(h.to_agent for h in handoffs) == {
        "hygiene": PROSPECTS,
        "researcher": sum(tier in ("A1", "A2") for _, _, tier, _ in prospects),
        "outreach": sum(tier in ("A1", "A2") and email for _, _, tier, email in prospects),
    }
    for agent in SIMULATED_AGENTS:
        ledger_ids = sorted(h.id for h in handoffs if h.to_agent == agent)
        agent_runs = [r for r in runs if r.agent_name == agent]
        assert {r.status for r in agent_runs} == {"completed"}, agent
        assert {r.records_processed for r in agent_runs} == {1}, agent
        assert sorted(r.handoff_id for r in agent_runs) == ledger_ids, agent

    prospector = [r for r in runs if r.agent_name == "prospector"]
    assert {r.status for r in prospector} == {"completed"}
    assert sum(r.records_processed or 0 for r in prospector) == PROSPECTS
    assert sum(1 for r in prospector if r.records_processed) == PROSPECTS // FAST.prospector.batch
    assert all(r.handoff_id is None for r in prospector)


async def test_a_failing_researcher_shows_in_health(
    client: Client,
    sessionmaker: Sessions,
    agent_sessionmaker: Sessions,
    worker_settings: Settings,
    tmp_path: Path,
) -> None:
    path = tmp_path / "failing.yaml"
    path.write_text(
        "seed: 5\n"
        "prospector: {every_seconds: 0.5, batch: 10}\n"
        "agents: {hygiene: {latency: 0}, researcher: {latency: 0}, outreach: {latency: 0}}\n"
        "reply_rate: 0\n"
    )
    scenario = build_scenario(path, fail="researcher")
    assert scenario.agents["researcher"] == Behaviour(latency=0, failure_rate=0.6)

    async def enough() -> bool:
        researched = await count(
            sessionmaker,
            AgentRun,
            AgentRun.agent_name == "researcher",
            AgentRun.status != "running",
        )
        reached = await count(
            sessionmaker,
            AgentRun,
            AgentRun.agent_name == "outreach",
            AgentRun.status == "completed",
        )
        return researched >= 40 and reached >= 1

    # two attempts per handoff (not the default six, about 30 s of backoff): the failing
    # researcher's handoffs end quickly, so the pipeline settles within the test
    settings = with_handoffs(worker_settings, agent_max_attempts=2)
    async with simulation(client, (sessionmaker, agent_sessionmaker), settings, scenario) as sim:
        await wait_until(enough, within=45)
        await quiesce(sessionmaker)
        await sim.finish()
        async with sessionmaker() as session:
            health = await compute_agent_health(
                session, sim.settings.agents, sim.settings.health, datetime.now(UTC)
            )
    by_agent = {h.agent_name: h for h in health}
    researcher = by_agent["researcher"]
    assert researcher.error_rate > 0.3, researcher
    assert researcher.status is HealthStatus.FAILING
    assert researcher.last_error == "SimulatedFailure: researcher: simulated failure"
    assert {name: h.status for name, h in by_agent.items() if name != "researcher"} == {
        "prospector": HealthStatus.HEALTHY,
        "hygiene": HealthStatus.HEALTHY,
        "outreach": HealthStatus.HEALTHY,
    }
