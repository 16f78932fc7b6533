"""Reads of what housekeeping has pruned."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import RetentionMark


async def pruned_through(session: AsyncSession, table: str) -> int | None:
    """The highest id housekeeping has deleted from ``table`` (``None``: nothing yet): a
    client resuming at or below it has missed rows that no longer exist."""
    return await session.scalar(
        select(RetentionMark.pruned_through).where(RetentionMark.table_name == table)
    )
