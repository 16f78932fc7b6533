"""Column types and SQL expressions that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Float, TypeDecorator
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out. SQLite keeps no zone, so values are normalised to UTC
    on the way in and given it back on the way out; naive input is refused, since guessing
    its zone is how the spec's naive-UTC bugs start."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class seconds_between(FunctionElement[float]):
    """``seconds_between(start, end)``: elapsed seconds as a float, computed in the database."""

    type = Float()
    inherit_cache = True

    def __init__(self, start: ColumnElement[Any], end: ColumnElement[Any]) -> None:
        super().__init__(start, end)


@compiles(seconds_between, "postgresql")
def _seconds_between_pg(element: seconds_between, compiler: Any, **kw: Any) -> str:
    start, end = list(element.clauses)
    return f"EXTRACT(EPOCH FROM ({compiler.process(end, **kw)} - {compiler.process(start, **kw)}))"


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    start, end = list(element.clauses)
    return (
        f"((julianday({compiler.process(end, **kw)}) - julianday({compiler.process(start, **kw)}))"
        " * 86400.0)"
    )


class epoch_hour(FunctionElement[int]):
    """``epoch_hour(t)``: whole hours from 1970-01-01 UTC to ``t``, to group runs by hour in
    the database (only where few groups come back; sealing uses ``started_at`` ranges)."""

    type = BigInteger()
    inherit_cache = True


@compiles(epoch_hour, "postgresql")
def _epoch_hour_pg(element: epoch_hour, compiler: Any, **kw: Any) -> str:
    (value,) = list(element.clauses)
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {compiler.process(value, **kw)}) / 3600) AS BIGINT)"


@compiles(epoch_hour, "sqlite")
def _epoch_hour_sqlite(element: epoch_hour, compiler: Any, **kw: Any) -> str:
    (value,) = list(element.clauses)
    return f"(CAST(strftime('%s', {compiler.process(value, **kw)}) AS INTEGER) / 3600)"
