"""Logging set-up: one line per event, with the logger name, at the configured level."""

from __future__ import annotations

import logging


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # the SDK's worker logs every poll at DEBUG; keep its warnings
    logging.getLogger("temporalio").setLevel(max(logging.INFO, logging.getLevelName(level.upper())))
