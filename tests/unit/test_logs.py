"""Structured logs: a real handoff through a worker, its lines captured as the process would
write them, each naming the workflow, prospect and agent it concerns."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from orchestrator.logs import (
    JsonFormatter,
    TextFormatter,
    configure_logging,
    formatter_for,
    log_context,
)
from orchestrator.settings import Settings
from tests.helpers.agents import FakeAgent
from tests.helpers.factories import add, prospect
from tests.helpers.handoffs import running, sweep, wait_closed

HANDOFF_ACTIVITIES = {"begin_handoff", "finish_handoff"}


@dataclass
class Captured:
    json: io.StringIO
    text: io.StringIO

    def json_lines(self) -> list[dict[str, Any]]:
        """Every line, parsed: a line that is not one JSON object fails the test here."""
        return [json.loads(line) for line in self.json.getvalue().splitlines()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    """Logging set up as the CLI does (``configure_logging``, JSON lines), on a root logger
    emptied of pytest's handlers for the test, plus a text handler beside it."""
    out = Captured(io.StringIO(), io.StringIO())
    root, temporal, httpx = (logging.getLogger(n) for n in ("", "temporalio", "httpx"))
    saved = root.handlers[:], root.level, temporal.level, httpx.level
    on_message = activity.logger.activity_info_on_message, workflow.logger.workflow_info_on_message
    root.handlers.clear()
    try:
        configure_logging("INFO", "json", stream=out.json)
        [installed] = root.handlers
        assert isinstance(installed.formatter, JsonFormatter)
        text = logging.StreamHandler(out.text)
        text.setFormatter(TextFormatter())
        root.addHandler(text)
        yield out
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        temporal.setLevel(saved[2])
        httpx.setLevel(saved[3])
        activity.logger.activity_info_on_message = on_message[0]
        workflow.logger.workflow_info_on_message = on_message[1]


async def test_handoff_activity_lines_carry_workflow_prospect_and_agent(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
    captured: Captured,
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=71))
    async with running(client, sessionmaker, worker_settings, agents):
        await sweep(client, worker_settings)
        await wait_closed(client, 71)
    lines = captured.json_lines()
    handoff_lines = [line for line in lines if line.get("activity") in HANDOFF_ACTIVITIES]
    # hygiene scores it, and the chain goes on from there: each hop is begun and finished
    assert len(handoff_lines) >= 2
    for line in handoff_lines:
        assert line["workflow_id"] == "handoff-71"
        assert line["prospect_id"] == 71
        assert line["agent"] in agents
        assert {"timestamp", "level", "logger", "message"} <= line.keys()
    first = handoff_lines[0]
    assert (first["agent"], first["activity"], first["level"]) == (
        "hygiene",
        "begin_handoff",
        "INFO",
    )
    assert "triggering hygiene" in first["message"] and first["timestamp"].endswith("+00:00")
    # Temporal's info dict is in the fields, not pasted onto the message
    assert all("activity_id" not in line["message"] for line in handoff_lines)
    text = [line for line in captured.text.getvalue().splitlines() if "triggering hygiene" in line]
    assert len(text) == 1
    assert "wf=handoff-71 activity=begin_handoff prospect=71 agent=hygiene" in text[0]


async def test_a_module_logger_inside_an_activity_names_it_too(captured: Captured) -> None:
    """Some activities log through their module's logger, not Temporal's adapter."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id="cycle-7", activity_type="after_cycle")

    async def upkeep() -> None:
        logging.getLogger("db.commands.alerts").warning("alert opened: hygiene failing")

    await env.run(upkeep)
    [line] = captured.json_lines()
    assert (line["workflow_id"], line["activity"]) == ("cycle-7", "after_cycle")
    assert line["logger"] == "db.commands.alerts" and "prospect_id" not in line


def test_log_context_names_prospect_and_agent_only_inside_the_block(
    captured: Captured,
) -> None:
    log = logging.getLogger("tests.logs")
    with log_context(prospect_id=5, agent="researcher"):
        try:
            raise ValueError("bad answer")
        except ValueError:
            log.exception("agent call failed")
    log.info("afterwards")
    failed, afterwards = captured.json_lines()
    assert (failed["prospect_id"], failed["agent"], failed["level"]) == (5, "researcher", "ERROR")
    assert "Traceback" in failed["exception"] and "ValueError: bad answer" in failed["exception"]
    assert "workflow_id" not in failed
    assert afterwards["message"] == "afterwards" and "prospect_id" not in afterwards
    text = captured.text.getvalue()
    assert "agent call failed  [prospect=5 agent=researcher]\nTraceback" in text
    assert text.rstrip().endswith("tests.logs: afterwards")


def test_httpx_request_lines_stay_out_of_the_logs(captured: Captured) -> None:
    """They quote the whole URL, and a Slack webhook's URL is its secret."""
    logging.getLogger("httpx").info("HTTP Request: POST https://hooks.slack.com/services/T/B/x")
    logging.getLogger("httpx").warning("something httpx warns about")
    assert [line["message"] for line in captured.json_lines()] == ["something httpx warns about"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_format_is_json_off_a_terminal_and_text_on_one() -> None:
    assert isinstance(formatter_for("auto", io.StringIO()), JsonFormatter)
    assert isinstance(formatter_for("auto", _Terminal()), TextFormatter)
    assert isinstance(formatter_for("json", _Terminal()), JsonFormatter)
    assert isinstance(formatter_for("text", io.StringIO()), TextFormatter)
