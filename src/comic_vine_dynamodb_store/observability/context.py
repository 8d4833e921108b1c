"""The correlation a call runs in, carried by a context variable.

A context variable, not a thread-local: each thread and each asyncio task sees the correlation
it (or the code that started it) opened, and a task started inside a correlation inherits it.
``Monitor.start_correlation`` sets it, ``OperationEvent.correlation_id`` reads it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["Correlation", "current_correlation", "current_correlation_id"]


@dataclass(frozen=True, slots=True)
class Correlation:
    """An open correlation: its id, what it is for, and the one it was opened inside."""

    correlation_id: str
    operation: str
    metadata: tuple[tuple[str, str], ...]
    started_ns: int
    parent: Correlation | None


_current: ContextVar[Correlation | None] = ContextVar(
    "comic_vine_dynamodb_store_correlation", default=None
)


def current_correlation() -> Correlation | None:
    """The innermost correlation open in this thread or task, if any."""
    return _current.get()


def current_correlation_id() -> str | None:
    """The id of :func:`current_correlation`, if any."""
    correlation = _current.get()
    return None if correlation is None else correlation.correlation_id
