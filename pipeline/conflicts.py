"""Conflict-resolution knobs, as data (the policy itself is described in
``activities/conflicts.py``)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel


class ConflictRules(BaseModel):
    contention_after: timedelta = timedelta(minutes=10)
    batch: int = 500
