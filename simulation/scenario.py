"""Scenario files: how the simulated agents behave over time.

A scenario is JSON or YAML::

    seed: 7
    speed: 1.0                 # >1 compresses latencies and the prospector's cadence
    prospector: {every_seconds: 10, batch: 5, email_rate: 0.85}
    agents:
      researcher: {latency: 0.3, failure_rate: 0.05}
    phases:                    # minutes since the simulation started
      - {agent: researcher, from_minute: 2, to_minute: 5, failure_rate: 0.5}
    reply_rate: 0.2            # share of prospects in sequence that reply later
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, model_validator

SIMULATED_AGENTS = ("hygiene", "researcher", "outreach")


class Behaviour(BaseModel):
    latency: float = Field(0.05, ge=0, le=60)
    """Seconds of work per prospect (before ``speed``)."""
    failure_rate: float = Field(0.0, ge=0, le=1)
    concurrency: int = Field(20, ge=1, le=1000)


class Phase(BaseModel):
    agent: str
    from_minute: float = Field(ge=0)
    to_minute: float = Field(gt=0)
    latency: float | None = Field(None, ge=0, le=60)
    failure_rate: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Phase:
        if self.to_minute <= self.from_minute:
            raise ValueError(f"phase for {self.agent}: to_minute must be after from_minute")
        return self


class Prospecting(BaseModel):
    every_seconds: float = Field(10, gt=0)
    batch: int = Field(5, ge=1, le=10_000)
    email_rate: float = Field(0.85, ge=0, le=1)
    limit: int | None = Field(None, ge=1)
    """Stop creating prospects after this many (None: keep going)."""


class Scenario(BaseModel):
    seed: int = 7
    speed: float = Field(1.0, gt=0, le=1000)
    prospector: Prospecting = Prospecting()
    agents: dict[str, Behaviour] = {}
    phases: list[Phase] = []
    reply_rate: float = Field(0.2, ge=0, le=1)
    reply_after_seconds: float = Field(30, ge=0)

    @model_validator(mode="after")
    def _known_agents(self) -> Scenario:
        unknown = (set(self.agents) | {p.agent for p in self.phases}) - set(SIMULATED_AGENTS)
        if unknown:
            raise ValueError(
                f"unknown simulated agents {sorted(unknown)}; "
                f"simulated: {', '.join(SIMULATED_AGENTS)}"
            )
        return self

    def behaviour(self, agent: str, minute: float) -> Behaviour:
        """The agent's behaviour at ``minute`` since start: its base, then any phase."""
        base = self.agents.get(agent, Behaviour())
        for phase in self.phases:
            if phase.agent == agent and phase.from_minute <= minute < phase.to_minute:
                changes = phase.model_dump(include={"latency", "failure_rate"}, exclude_none=True)
                base = base.model_copy(update=changes)
        return base


FAILING_RATE = 0.6
"""``--fail AGENT``: enough errors to be failing (over 30%) within a few runs."""


def simulated_expectations(scenario: Scenario) -> dict[str, int]:
    """Expected records per run of the simulated agents: the prospector's batch, and one
    prospect per handoff for the others (each handoff is one run of one record)."""
    return {"prospector": scenario.prospector.batch, **dict.fromkeys(SIMULATED_AGENTS, 1)}


def load_scenario(path: Path) -> Scenario:
    text = path.read_text()
    data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    return Scenario.model_validate(data or {})


def build_scenario(
    path: Path | None = None, fail: str | None = None, speed: float | None = None
) -> Scenario:
    """The scenario for ``dev --simulate`` / ``simulate``: a file or the defaults, with the
    command line's ``--fail`` and ``--speed`` on top."""
    scenario = load_scenario(path) if path else Scenario()
    if speed is not None:
        scenario = scenario.model_copy(update={"speed": speed})
    if fail is not None:
        if fail not in SIMULATED_AGENTS:
            raise ValueError(f"--fail {fail!r}: simulated agents are {', '.join(SIMULATED_AGENTS)}")
        failing = scenario.agents.get(fail, Behaviour()).model_copy(
            update={"failure_rate": FAILING_RATE}
        )
        scenario = scenario.model_copy(update={"agents": {**scenario.agents, fail: failing}})
    return scenario
