"""Query plans as text, so a test can assert which index a statement reads (never a time)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection


def query_plan(conn: Connection, query: Any, postgres: bool) -> str:
    """The plan of ``query`` as the database would run it, as text."""
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    processors = compiled._bind_processors
    values = {k: processors[k](v) if k in processors else v for k, v in params.items()}
    args: Any = tuple(values[k] for k in compiled.positiontup) if compiled.positional else values
    if postgres:
        rows = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", args).all()
        return json.dumps(rows[0][0])
    rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", args).all()
    return "\n".join(str(row) for row in rows)
