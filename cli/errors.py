"""What a user sees when a command fails for a reason they can cause: one line saying what is
wrong and what to do, and an exit code (1: the environment, 2: the input), never a traceback.

The one place an exception type becomes a message. A type not listed here is a bug and keeps
its traceback. ``--traceback`` (or ``ORCH_CLI__TRACEBACK=true``) prints the full one above the
line, for developers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import DBAPIError
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from db.readiness import DatabaseNotReady
from orchestrator.settings import CliSettings, Settings
from orchestrator.temporal_client import TemporalUnreachable

ENVIRONMENT = 1
"""Something outside the command is not as it must be: a server, a database, a file."""
USAGE = 2
"""The input is wrong: an option, an argument, a setting."""
SETTINGS_PREFIX = "ORCH_"
INSUFFICIENT_PRIVILEGE = "42501"
GRANT_HINT = "run orchestrator db grant-roles as the DBA and connect as the orchestrator role"

errors = Console(stderr=True, soft_wrap=True)  # soft wrap: the one line stays one line


@dataclass
class Reporting:
    """What the app's options asked of failure reports, for this process's one command."""

    traceback: bool = False


reporting = Reporting()


@dataclass(frozen=True)
class Failure:
    message: str
    exit_code: int


def describe(exc: BaseException) -> Failure | None:
    """The line and exit code for ``exc``; ``None`` when it is not a condition a user causes."""
    for kinds, explain in EXPLAINERS:
        if isinstance(exc, kinds):
            return explain(exc)
    return None


def _settings_failure(exc: BaseException) -> Failure:
    if isinstance(exc, ValidationError):
        return Failure(f"invalid configuration: {settings_problems(exc)}", USAGE)
    return Failure(
        f"invalid configuration: {exc} (settings holding a list or a mapping take JSON)", USAGE
    )


def settings_problems(exc: ValidationError) -> str:
    """Each bad setting by its environment variable, with pydantic's reason."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        reason = error["msg"].removeprefix("Value error, ")
        problems.append(f"{variable_of(error['loc'])}: {reason}")
    return "; ".join(problems)


def variable_of(loc: tuple[int | str, ...]) -> str:
    """``ORCH_HANDOFFS__PAGE_SIZE`` for ``("handoffs", "page_size")``; a key inside a JSON
    value follows in brackets: ``ORCH_AGENT_ENDPOINTS [researcher]``."""
    names: list[str] = []
    model: type[BaseModel] | None = Settings
    for index, part in enumerate(loc):
        if model is None or part not in model.model_fields:
            inside = " ".join(str(p) for p in loc[index:])
            return f"{SETTINGS_PREFIX}{'__'.join(names).upper()} [{inside}]"
        names.append(str(part))
        annotation = model.model_fields[str(part)].annotation
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation if is_model else None
    return SETTINGS_PREFIX + "__".join(names).upper()


def _rpc_failure(exc: BaseException) -> Failure:
    assert isinstance(exc, RPCError)
    return Failure(
        f"Temporal refused the request ({exc.status.name.lower()}: {exc.message}): "
        "check ORCH_TEMPORAL__NAMESPACE and that the server is up",
        ENVIRONMENT,
    )


def _database_failure(exc: BaseException) -> Failure:
    assert isinstance(exc, DBAPIError)
    reason = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
    if getattr(exc.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE:
        reason += f": {GRANT_HINT}"
    return Failure(f"the database failed the command: {reason}", ENVIRONMENT)


def _workflow_failure(exc: BaseException) -> Failure:
    cause = exc.cause if isinstance(exc, WorkflowFailureError) else exc
    return Failure(f"the workflow failed: {cause}; see it in the Temporal Web UI", ENVIRONMENT)


def _os_failure(exc: BaseException) -> Failure:
    assert isinstance(exc, OSError)
    where = f" ({exc.filename})" if exc.filename else ""
    return Failure(f"{exc.strerror or exc}{where}", ENVIRONMENT)


def _as_is(exc: BaseException) -> Failure:
    return Failure(str(exc), ENVIRONMENT)


EXPLAINERS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Callable], ...] = (
    ((ValidationError, SettingsError), _settings_failure),
    ((DatabaseNotReady, TemporalUnreachable), _as_is),
    (RPCError, _rpc_failure),
    (WorkflowFailureError, _workflow_failure),
    (DBAPIError, _database_failure),
    (OSError, _os_failure),
)
"""In order: the first type that matches explains (our own types carry their message)."""


def traceback_wanted(flag: bool = False) -> bool:
    if flag:
        return True
    try:
        return CliSettings().traceback
    except ValidationError:
        return False


def report(failure: Failure, exc: BaseException | None = None, *, show: bool = False) -> None:
    """The line on stderr; above it, the traceback when a developer asked for it."""
    if exc is not None and show:
        traceback.print_exception(exc, file=sys.stderr)
    errors.print(f"[red]error:[/red] {escape(failure.message)}")


def run_and_exit(command: Callable[[], object]) -> NoReturn:
    """Run the typer app and leave with its exit code. A success exits as usual (exit
    handlers run: the tracer flushes its last spans); a failure leaves through ``os._exit``
    once streams and logs are flushed, since after one the Temporal SDK's runtime threads
    can hold an ordinary exit, or crash it in the interpreter's shutdown (sdk-python #300)."""
    code = 0
    try:
        command()
    except SystemExit as exc:  # click's standalone mode ends every command with one
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:
        code = _last_resort(exc)
    if code == 0:
        sys.exit(0)
    with contextlib.suppress(Exception):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _last_resort(exc: Exception) -> int:
    """A failure no command turned into a line; a known kind still gets one."""
    failure = describe(exc)
    if failure is None:
        traceback.print_exception(exc, file=sys.stderr)
        return ENVIRONMENT
    report(failure, exc, show=traceback_wanted())
    return failure.exit_code
