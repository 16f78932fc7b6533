"""The validation sweep's activities: the id bounds, one range judged, the sweep closed
(``db.commands.validation``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from db.commands.alerts import NotifyPolicy
from db.commands.validation import ClosedViolations, close_sweep, prospect_id_range, record_range
from pipeline.validation import ValidationRules


class ValidateRangeInput(BaseModel):
    low: int
    """Inclusive lower prospect id."""
    high: int
    """Exclusive upper prospect id."""
    as_of: datetime


class CloseValidationInput(BaseModel):
    as_of: datetime


class ValidationBounds(BaseModel):
    low: int | None
    high: int | None
    range_size: int


class ValidationActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        rules: ValidationRules,
        policy: NotifyPolicy | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._rules = rules
        self._policy = policy or NotifyPolicy()

    @activity.defn(name="prospect_id_bounds")
    async def prospect_id_bounds(self) -> ValidationBounds:
        async with self._sessionmaker() as session:
            low, high = await prospect_id_range(session)
        return ValidationBounds(low=low, high=high, range_size=self._rules.range_size)

    @activity.defn(name="validate_range")
    async def validate_range(self, input: ValidateRangeInput) -> dict[str, int]:
        async with self._sessionmaker() as session:
            return await record_range(session, self._rules, input.low, input.high, input.as_of)

    @activity.defn(name="close_validation")
    async def close_validation(self, input: CloseValidationInput) -> ClosedViolations:
        async with self._sessionmaker() as session:
            closed = await close_sweep(session, self._rules, input.as_of, self._policy)
        activity.logger.info("state violations open: %s", closed.open_by_kind or "none")
        return closed
