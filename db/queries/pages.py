"""Newest-first pages, ordered one way everywhere: by a time, then an id to break ties, so
the order is total and a keyset cursor continues exactly where the last page ended."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, tuple_


def newest_first(
    query: Select[Any],
    at: Any,
    key: Any,
    *,
    limit: int,
    before: tuple[datetime, Any] | None = None,
) -> Select[Any]:
    """``query``'s first ``limit`` rows by (``at``, ``key``) descending; ``before`` is the
    (``at``, ``key``) the previous page ended at. Seeking past it rather than offsetting
    keeps a page's cost its own rows, however deep the page."""
    query = query.order_by(at.desc(), key.desc()).limit(limit)
    if before is not None:
        query = query.where(tuple_(at, key) < tuple_(*before))
    return query
