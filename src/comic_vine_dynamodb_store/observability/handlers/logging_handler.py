"""Signals as log records, with each payload field as a structured ``extra`` field.

Each signal has a level: what needs attention warns (the circuit opening, a failed health
check, an undecodable cache value, a store that fell back or that the client flow had to
serve around), what is rare
but expected is info (a retry, a 420/429 waited out, the circuit closing), and the routine flow
is debug: every operation, hit, miss and refusal. A failed operation is debug too, because
its caller already gets a typed exception.

The handler connects only to the signals that can reach its level, so at the default ``info``
a store's hot path has no receiver and builds no payload. At ``debug`` everything is logged.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from blinker import NamedSignal

from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.observability.handlers.base import SignalHandler

__all__ = ["EVENT_LOGGER", "LEVELS", "LoggingHandler", "level_of"]

EVENT_LOGGER: Final = "comic_vine_dynamodb_store.events"
"""The logger the handler writes to, unless given another."""

LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
"""``monitoring.logging.level`` names."""

_RESERVED: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def _circuit_level(event: signals.CircuitEvent) -> int:
    return logging.WARNING if event.state == "open" else logging.INFO


def _health_level(event: signals.HealthEvent) -> int:
    return logging.DEBUG if event.healthy else logging.WARNING


def _fixed(level: int) -> Callable[[Any], int]:
    return lambda _event: level


# (highest level the signal can log at, level of one event)
_LEVELS: Final[Mapping[NamedSignal, tuple[int, Callable[[Any], int]]]] = {
    signals.operation_completed: (logging.DEBUG, _fixed(logging.DEBUG)),
    signals.cache_hit: (logging.DEBUG, _fixed(logging.DEBUG)),
    signals.cache_miss: (logging.DEBUG, _fixed(logging.DEBUG)),
    signals.cache_decode_error: (logging.WARNING, _fixed(logging.WARNING)),
    signals.rate_limited: (logging.DEBUG, _fixed(logging.DEBUG)),
    signals.dedupe_joined: (logging.DEBUG, _fixed(logging.DEBUG)),
    signals.circuit_state_changed: (logging.WARNING, _circuit_level),
    signals.request_retried: (logging.INFO, _fixed(logging.INFO)),
    signals.health_checked: (logging.WARNING, _health_level),
    signals.store_fallback: (logging.WARNING, _fixed(logging.WARNING)),
    signals.metric_recorded: (logging.DEBUG, _fixed(logging.DEBUG)),
    signals.correlation_ended: (logging.DEBUG, _fixed(logging.DEBUG)),
    signals.client_cache_hit: (logging.DEBUG, _fixed(logging.DEBUG)),
    signals.client_cache_miss: (logging.DEBUG, _fixed(logging.DEBUG)),
    signals.client_dedupe_joined: (logging.DEBUG, _fixed(logging.DEBUG)),
    signals.client_limiter_waited: (logging.DEBUG, _fixed(logging.DEBUG)),
    signals.client_retry_after: (logging.INFO, _fixed(logging.INFO)),
    signals.client_upstream_call: (logging.DEBUG, _fixed(logging.DEBUG)),
    signals.client_upstream_status: (logging.DEBUG, _fixed(logging.DEBUG)),
    signals.client_store_unavailable: (logging.WARNING, _fixed(logging.WARNING)),
}


def level_of(level: str | int) -> int:
    """A ``logging`` level from a ``monitoring.logging.level`` name (or a level number)."""
    if isinstance(level, int):
        return level
    try:
        return LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; one of {sorted(LEVELS)}") from None


def fields_of(event: Any) -> dict[str, Any]:
    """A payload as flat ``extra`` fields: errors as text, names ``LogRecord`` already uses
    prefixed with ``event_``."""
    if not dataclasses.is_dataclass(event):
        return {"event": event}
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if isinstance(value, BaseException):
            value = f"{type(value).__name__}: {value}"
        name = f"event_{field.name}" if field.name in _RESERVED else field.name
        fields[name] = value
    return fields


class LoggingHandler(SignalHandler):
    """Logs the signals that can reach ``level`` to ``logger``, one record per event.

    The message is short and readable (``"cache-hit cache key=..."``); everything else is in
    the record's attributes: ``signal`` and each payload field.
    """

    def __init__(self, level: str | int = "info", logger: logging.Logger | None = None) -> None:
        self.level = level_of(level)
        self.logger = logger if logger is not None else logging.getLogger(EVENT_LOGGER)
        super().__init__(signal for signal, (top, _) in _LEVELS.items() if top >= self.level)

    def handle(self, signal: NamedSignal, sender: Any, event: Any) -> None:
        _, level_for = _LEVELS[signal]
        level = level_for(event)
        if level < self.level or not self.logger.isEnabledFor(level):
            return
        fields = fields_of(event)
        self.logger.log(level, "%s %s", signal.name, _summary(fields), extra=fields)


_SUMMARY_FIELDS: Final = (
    "store",
    "operation",
    "key",
    "resource",
    "outcome",
    "fallback",
    "state",
    "error_code",
    "healthy",
    "event_name",
    "status",
    "waited_ms",
    "duration_ms",
    "latency_ms",
    "error",
)


def _summary(fields: Mapping[str, Any]) -> str:
    parts = []
    for name in _SUMMARY_FIELDS:
        value = fields.get(name)
        if value is None:
            continue
        if isinstance(value, float):
            value = f"{value:.1f}"
        parts.append(f"{name}={value}")
    return " ".join(parts)
