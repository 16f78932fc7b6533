"""The ``orchestrator`` command: run the stack, migrate, start cycles, read health.

Every command prints a table for people and takes ``--json`` for scripts.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.errors import Failure, describe, reporting, run_and_exit, traceback_wanted
from cli.errors import report as report_failure
from orchestrator.allocator import tune_worker_memory
from orchestrator.logs import configure_logging
from orchestrator.settings import Settings, get_settings
from orchestrator.tracing import install_tracing
from pipeline.health import AgentHealth, HealthStatus, overall_status
from pipeline.modes import UnsupportedModeError, parse_mode

app = typer.Typer(
    help="Pipeline Orchestrator: monitors and coordinates the prospecting agents.",
    no_args_is_help=True,
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
schedules_app = typer.Typer(help="Temporal Schedules.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(schedules_app, name="schedules")
app.add_typer(keys_app, name="keys")

console = Console()
T = TypeVar("T")
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ScenarioOption = Annotated[
    Path | None, typer.Option(help="Scenario file (JSON or YAML) for the simulated agents.")
]
FailOption = Annotated[
    str | None, typer.Option(help="Make this simulated agent fail often (60% of its runs).")
]
SpeedOption = Annotated[
    float | None, typer.Option(help="Compress simulated time (latencies, cadence) by this.")
]
STATUS_STYLE = {
    HealthStatus.HEALTHY: "green",
    HealthStatus.DEGRADED: "yellow",
    HealthStatus.FAILING: "red",
    HealthStatus.UNKNOWN: "dim",
}


@app.callback()
def global_options(
    show_traceback: Annotated[
        bool,
        typer.Option(
            "--traceback", help="On failure, print the full traceback (ORCH_CLI__TRACEBACK)."
        ),
    ] = False,
) -> None:
    """Pipeline Orchestrator: monitors and coordinates the prospecting agents."""
    reporting.traceback = traceback_wanted(show_traceback)


def _settings() -> Settings:
    try:
        settings = get_settings()
    except ValueError as exc:  # pydantic's ValidationError and SettingsError are ValueErrors
        raise _failed(exc) from exc
    configure_logging(settings.log_level, settings.observability.log_format)
    install_tracing(settings.tracing)  # before any Temporal client is made
    return settings


def _run(work: Awaitable[T]) -> T:
    try:
        return asyncio.run(work)  # type: ignore[arg-type]
    except Exception as exc:
        raise _failed(exc) from exc


def _failed(exc: Exception) -> typer.Exit:
    """The one line for a failure a user can cause (cli/errors.py); anything else is a bug
    and is raised with its traceback."""
    failure = describe(exc)
    if failure is None:
        raise exc
    report_failure(failure, exc, show=reporting.traceback)
    return typer.Exit(failure.exit_code)


def _fail(message: str, code: int = 1) -> typer.Exit:
    report_failure(Failure(message, code))
    return typer.Exit(code)


@app.command()
def dev(
    state_dir: Annotated[Path, typer.Option(help="Where Temporal and SQLite keep state.")] = Path(
        ".orchestrator"
    ),
    temporal_port: Annotated[int, typer.Option(help="Temporal gRPC port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal Web UI port.")] = 8233,
    api_port: Annotated[int | None, typer.Option(help="API port (default ORCH_API_PORT).")] = None,
    simulate: Annotated[bool, typer.Option(help="Run the four simulated agents too.")] = False,
    scenario: ScenarioOption = None,
    fail: FailOption = None,
    speed: SpeedOption = None,
) -> None:
    """Start everything locally: Temporal dev server + Web UI, SQLite, worker and API."""
    from cli.child_process import DirectoryInUse
    from cli.dev import DevOptions, run_dev
    from cli.devserver import BinaryNotFound, PortInUse
    from cli.services import run_then_leave

    settings = _settings()
    # the worker runs in this process; a laptop's stack is not the long-lived worker
    tune_worker_memory(settings.worker.malloc_arenas, long_lived=False)
    plan = _scenario(scenario, fail, speed) if simulate else None
    options = DevOptions(state_dir, temporal_port, ui_port, api_port or settings.api_port, plan)
    try:
        run_then_leave(run_dev(settings, options, console))
    except (BinaryNotFound, PortInUse, DirectoryInUse) as exc:
        raise _fail(str(exc)) from exc
    except Exception as exc:
        raise _failed(exc) from exc


@app.command()
def simulate(
    scenario: ScenarioOption = None, fail: FailOption = None, speed: SpeedOption = None
) -> None:
    """Run the simulated agents against the configured database and Temporal."""
    from cli.runners import run_simulation_process

    _run(run_simulation_process(_settings(), _scenario(scenario, fail, speed)))


def _scenario(path: Path | None, fail: str | None, speed: float | None):
    from pydantic import ValidationError

    from simulation.scenario import build_scenario

    try:
        return build_scenario(path, fail, speed)
    except (OSError, ValueError, ValidationError) as exc:
        raise _fail(f"scenario: {exc}", 2) from exc


@app.command()
def worker() -> None:
    """Run a worker: the orchestrator's workflows and activities on its task queue."""
    from cli.runners import run_worker_process

    settings = _settings()
    tune_worker_memory(settings.worker.malloc_arenas)  # before any thread starts
    _run(run_worker_process(settings))


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind address (default ORCH_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default ORCH_API_PORT).")] = None,
) -> None:
    """Serve the REST API (OpenAPI docs at /docs)."""
    from cli.runners import run_api_process

    settings = _settings()
    _run(run_api_process(settings, host or settings.api_host, port or settings.api_port))


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations to the configured database."""
    from cli.runners import migrate

    settings = _settings()
    now = _run(migrate(settings, revision))
    console.print(f"database at revision [bold]{now}[/bold]")


def _password_option(envvar: str) -> Any:
    """Hidden: a password belongs in the environment or a prompt, not in shell history."""
    return typer.Option(envvar=envvar, hidden=True, show_default=False, show_envvar=False)


@db_app.command("grant-roles")
def db_grant_roles(
    role: Annotated[str, typer.Option(help="Role the orchestrator connects as.")] = "orchestrator",
    ingest_role: Annotated[
        str, typer.Option(help="Role of the run-ingestion endpoint (ORCH_INGEST_DATABASE_URL).")
    ] = "orchestrator_ingest",
    database_url: Annotated[
        str | None,
        typer.Option(help="A superuser connection to the database (default ORCH_DATABASE_URL)."),
    ] = None,
    prompt_passwords: Annotated[
        bool, typer.Option(help="Ask for the roles' login passwords (input is hidden).")
    ] = False,
    role_password: Annotated[str | None, _password_option("ORCH_ROLE_PASSWORD")] = None,
    ingest_password: Annotated[str | None, _password_option("ORCH_INGEST_ROLE_PASSWORD")] = None,
) -> None:
    """Create the least-privilege roles and grants on PostgreSQL; run after every upgrade.

    Passwords: ORCH_ROLE_PASSWORD, ORCH_INGEST_ROLE_PASSWORD or --prompt-passwords.
    """
    # without a password an existing one stays; only its SCRAM verifier reaches the server
    from db.readiness import require_reachable
    from db.roles import RoleError, Roles, grant_roles_at, is_postgres

    url = database_url or _settings().resolved_database_url
    if not is_postgres(url):
        console.print("not PostgreSQL: SQLite has no roles, nothing to do")
        return
    _run(require_reachable(url))
    if prompt_passwords:
        role_password, ingest_password = _ask_password(role), _ask_password(ingest_role)
    try:
        roles = Roles(role, ingest_role, role_password, ingest_password)
        result = _run(grant_roles_at(url, roles))
    except RoleError as exc:
        raise _fail(str(exc), 2) from exc
    for name in (role, ingest_role):
        console.print(f"role {name}: {'created' if name in result.created else 'exists'}")
    console.print(f"{role} reads the agents' tables and owns: {', '.join(result.owned)}")
    console.print(f"{ingest_role} writes agent_runs only")


def _ask_password(role: str) -> str:
    return typer.prompt(f"password for {role}", hide_input=True, confirmation_prompt=True)


@app.command()
def health(as_json: JsonFlag = False) -> None:
    """Compute every agent's health from the database now."""
    from cli.runners import read_health

    agents = _run(read_health(_settings()))
    if as_json:
        _print_json(
            {
                "status": overall_status(agents).value,
                "agents": [a.model_dump(mode="json") for a in agents],
            }
        )
        return
    console.print(health_table(agents))
    console.print(f"overall: {_styled(overall_status(agents))}")


@app.command("run")
def run_cycle(
    mode: Annotated[str, typer.Option(help="Cycle mode.")] = "full",
    wait: Annotated[bool, typer.Option(help="Wait for the result.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Start an orchestration cycle on the worker (through Temporal)."""
    from cli.runners import run_cycle as start_from_cli

    try:
        parse_mode(mode)
    except UnsupportedModeError as exc:
        raise _fail(str(exc), 2) from exc
    workflow_id, summary = _run(start_from_cli(_settings(), mode, wait))
    if as_json:
        _print_json(
            {"workflow_id": workflow_id, "result": summary and summary.model_dump(mode="json")}
        )
        return
    console.print(f"cycle started: [bold]{workflow_id}[/bold]")
    if summary and summary.health:
        h = summary.health
        console.print(
            f"agents checked: {h.agents_checked}, healthy: {h.healthy}, "
            f"alerts created: {h.alerts_created}, updated: {h.alerts_updated}, "
            f"resolved: {h.alerts_resolved}"
        )
        for name, status in h.statuses.items():
            console.print(f"  {escape(name)}: {_styled(status)}")


@app.command()
def report(
    day: Annotated[
        str | None, typer.Option("--date", help="Report date YYYY-MM-DD (default: latest).")
    ] = None,
    kind: Annotated[str, typer.Option(help="daily or weekly.")] = "daily",
    as_json: JsonFlag = False,
) -> None:
    """Generate (or regenerate) and store a report, then print it as Markdown or JSON."""
    from temporalio.exceptions import ApplicationError

    from cli.runners import make_report
    from pipeline.report_markdown import to_markdown

    if kind not in ("daily", "weekly"):
        raise _fail(f"unknown kind {kind!r}; use daily or weekly", 2)
    try:
        report_date = date.fromisoformat(day) if day else None
    except ValueError as exc:
        raise _fail(f"--date {day!r} is not a date like 2026-11-01", 2) from exc
    try:
        payload = _run(make_report(_settings(), kind, report_date))  # type: ignore[arg-type]
    except ApplicationError as exc:
        raise _fail(exc.message, 2) from exc
    if as_json:
        _print_json(payload)
    else:
        sys.stdout.write(to_markdown(payload))


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A name for the key (shown in logs and errors).")],
    role: Annotated[str, typer.Option(help="viewer or operator.")] = "viewer",
) -> None:
    """Make an API key: prints the key (once) and the entry for ORCH_API_KEYS."""
    from api.auth import hash_key, new_key
    from orchestrator.settings import ApiKey, Role

    try:
        entry = ApiKey(name=name, role=Role(role), sha256="0" * 64)
    except ValueError as exc:
        raise _fail(f"invalid key: {exc}", 2) from exc
    key = new_key()
    entry = entry.model_copy(update={"sha256": hash_key(key)})
    sys.stdout.write(f"key (give it to the client; it is not stored): {key}\n")
    sys.stdout.write(f"ORCH_API_KEYS entry: {entry.model_dump_json()}\n")


@schedules_app.command("apply")
def schedules_apply(as_json: JsonFlag = False) -> None:
    """Create or update the Temporal Schedules (the worker also does this at start)."""
    from cli.runners import apply_all_schedules

    ids = _run(apply_all_schedules(_settings()))
    if as_json:
        _print_json({"schedules": ids})
    else:
        for schedule_id in ids:
            console.print(f"applied {schedule_id}")


@app.command()
def doctor(as_json: JsonFlag = False) -> None:
    """Check the deployment end to end, one line per check; exit 1 if any fails."""
    from cli.doctor import passed, rendered, run_checks

    checks = _run(run_checks(_settings()))
    if as_json:
        _print_json({"ok": passed(checks), "checks": [c.as_dict() for c in checks]})
    else:
        for line in rendered(checks):
            console.print(line, soft_wrap=True)
    if not passed(checks):
        raise typer.Exit(1)


def health_table(agents: list[AgentHealth]) -> Table:
    table = Table(title="Agent health")
    # names and statuses stay whole; the other columns wrap on a narrow terminal
    table.add_column("agent", no_wrap=True, min_width=max(len(a.agent_name) for a in agents))
    table.add_column("status", no_wrap=True, min_width=8)
    for column in ("runs 24h", "errors", "error rate", "records/run", "last success (UTC)"):
        table.add_column(column)
    table.add_column("why", ratio=1)
    for a in agents:
        table.add_row(
            escape(a.agent_name),
            _styled(a.status),
            str(a.runs_last_24h),
            str(a.errors_last_24h),
            f"{a.error_rate:.0%}",
            f"{a.avg_records_per_run:.1f}/{a.expected_records_per_run}",
            a.last_successful_run.strftime("%Y-%m-%d %H:%M") if a.last_successful_run else "-",
            escape("; ".join(a.reasons)),
        )
    return table


def _styled(status: HealthStatus) -> str:
    style = STATUS_STYLE[status]
    return f"[{style}]{status.value}[/{style}]"


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def main() -> None:
    """The ``orchestrator`` executable: the app, left through ``os._exit`` (cli/errors.py)."""
    run_and_exit(app)


if __name__ == "__main__":
    main()
