"""Structured logs: JSON in production, readable console lines in dev mode.

What is logged is chosen field by field; request bodies, the Authorization header and
issued tokens are never passed to a logger, so no setting can leak them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_threshold = logging.INFO


def info_enabled() -> bool:
    """Whether info lines are written: the access line's fields cost microseconds to
    gather, which a busy server at level warning should not spend."""
    return _threshold <= logging.INFO


def configure(log_format: str, level: str) -> None:
    global _threshold  # one process, one logging configuration
    _threshold = _LEVELS[level]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=_LEVELS[level], stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # we write our own


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
