"""A throwaway PostgreSQL cluster for the tests (and the benchmarks), started from the
machine's PostgreSQL binaries in a temporary directory and removed afterwards.

PostgreSQL refuses to run as root, so when the tests run as root (CI does) the cluster is
initialised and started as the ``postgres`` user.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url


class PostgresUnavailable(RuntimeError):
    pass


def find_pg_bindir() -> Path:
    override = os.environ.get("ORCH_TEST_PG_BINDIR")
    candidates = [override] if override else sorted(glob.glob("/usr/lib/postgresql/*/bin"))[::-1]
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    if found := shutil.which("initdb"):
        return Path(found).parent
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb) found")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PgCluster:
    bindir: Path
    root: Path
    port: int = 0
    run_as: str | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        return ["runuser", "-u", self.run_as, "--", *cmd] if self.run_as else cmd

    def start(self) -> None:
        if os.geteuid() == 0:
            self.run_as = "postgres"
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable("running as root and no 'postgres' user") from exc
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.port = free_port()
        subprocess.run(
            self._cmd(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
        )
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        subprocess.run(
            self._cmd(
                "pg_ctl",
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.root / "server.log"),
                "-w",
                "start",
            ),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    async def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return name

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def start_cluster() -> PgCluster:
    root = Path(tempfile.mkdtemp(prefix="orch-pg-"))
    os.chmod(root, 0o755)
    cluster = PgCluster(find_pg_bindir(), root)
    try:
        cluster.start()
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        cluster.stop()
        raise PostgresUnavailable(f"could not start PostgreSQL: {exc} {detail!r}") from exc
    # an interrupted run (Ctrl-C, a failed fixture) skips teardown; never leave a server behind
    atexit.register(cluster.stop)
    return cluster


def as_role(url: str, role: str) -> str:
    """``url`` connecting as ``role`` instead (the test cluster trusts local connections, so
    no password); a SQLite URL as it is, since SQLite has no roles."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    return parsed.set(username=role).render_as_string(hide_password=False)
