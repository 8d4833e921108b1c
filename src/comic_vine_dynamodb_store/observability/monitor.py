"""``Monitor``: custom metrics, correlations and health checks, all sent on the signal bus.

A monitor holds no exporter of its own: ``record_metric`` sends ``metric_recorded`` and
``end_correlation`` sends ``correlation_ended``, so whichever handlers are connected (logging,
CloudWatch, EMF, OpenTelemetry, Prometheus, a custom one) publish them next to the stores'
own metrics. Correlations live in a context variable, so each thread and asyncio task keeps
its own, and every store operation inside one carries its id (``OperationEvent.correlation_id``).

``monitor_operation`` wraps a call in a correlation: as a decorator (sync or async), a context
manager (``with`` or ``async with``), or called with the function, as in the original::

    @monitor_operation("refresh-series")
    def refresh(series_id: int) -> None: ...

    with monitor_operation("nightly-crawl", metadata={"source": "cron"}):
        crawl()

    result = monitor_operation("get-user", lambda: cache.get("user:123"))
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextvars import ContextVar
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, TypeVar, overload

from comic_vine_dynamodb_store.clock import system_clock_ms
from comic_vine_dynamodb_store.errors import ConfigurationError
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.observability.context import Correlation, _current
from comic_vine_dynamodb_store.observability.metrics import STANDARD_UNITS
from comic_vine_dynamodb_store.stores.contracts import HealthCheckResult

__all__ = [
    "HealthCheckable",
    "Monitor",
    "MonitoredOperation",
    "get_monitor",
    "monitor_operation",
    "set_monitor",
]

R = TypeVar("R")

MAX_DIMENSIONS = 30
"""CloudWatch's limit of dimensions per metric."""


class HealthCheckable(Protocol):
    """Anything with a ``health_check()``: every store of the library."""

    def health_check(self) -> HealthCheckResult: ...


def _pairs(values: Mapping[str, Any] | None, field: str) -> tuple[tuple[str, str], ...]:
    if values is None:
        return ()
    pairs = []
    for name, value in values.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{field} names must be non-empty strings", field=field)
        pairs.append((name, str(value)))
    return tuple(pairs)


class Monitor:
    """Records custom metrics, correlates operations and checks a store's health.

    ``store`` is what :meth:`perform_health_check` checks when given nothing else.
    ``max_recent`` bounds the metrics and correlations kept for :meth:`recent_metrics` and
    :meth:`recent_correlations` (for tests and ad-hoc inspection; exporters use the bus).
    """

    def __init__(
        self,
        store: HealthCheckable | None = None,
        *,
        max_recent: int = 1000,
        clock: Callable[[], int] = system_clock_ms,
    ) -> None:
        if max_recent < 0:
            raise ConfigurationError("max_recent must not be negative", field="max_recent")
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._metrics: deque[signals.MetricEvent] = deque(maxlen=max_recent)
        self._correlations: deque[signals.CorrelationEvent] = deque(maxlen=max_recent)
        self._open: dict[str, Correlation] = {}

    # -- metrics ----------------------------------------------------------------------------

    def record_metric(
        self,
        name: str,
        value: float,
        unit: str = "Count",
        *,
        dimensions: Mapping[str, Any] | None = None,
        timestamp: datetime | int | None = None,
    ) -> signals.MetricEvent:
        """Record one data point of a custom metric and send it on ``metric_recorded``.

        ``unit`` is a CloudWatch standard unit; ``timestamp`` a datetime or epoch ms (now by
        default). Bad input raises :class:`ConfigurationError` and records nothing.
        """
        if not isinstance(name, str) or not 0 < len(name) <= 255:
            raise ConfigurationError("metric name must be 1-255 characters", field="name")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigurationError("metric value must be a number", field="value")
        if not math.isfinite(value):
            raise ConfigurationError("metric value must be finite", field="value")
        if unit not in STANDARD_UNITS:
            raise ConfigurationError(
                f"unit {unit!r} is not a CloudWatch standard unit", field="unit"
            )
        pairs = _pairs(dimensions, "dimensions")
        if len(pairs) > MAX_DIMENSIONS:
            raise ConfigurationError(
                f"at most {MAX_DIMENSIONS} dimensions per metric", field="dimensions"
            )
        if timestamp is None:
            timestamp_ms = self._clock()
        elif isinstance(timestamp, datetime):
            timestamp_ms = int(timestamp.timestamp() * 1000)
        else:
            timestamp_ms = int(timestamp)
        event = signals.MetricEvent(
            name=name, value=float(value), unit=unit, timestamp_ms=timestamp_ms, dimensions=pairs
        )
        with self._lock:
            self._metrics.append(event)
        signals.send(signals.metric_recorded, self, lambda: event)
        return event

    def recent_metrics(self) -> list[signals.MetricEvent]:
        """The metrics recorded lately, oldest first (at most ``max_recent``)."""
        with self._lock:
            return list(self._metrics)

    # -- correlations -------------------------------------------------------------------------

    def start_correlation(self, operation: str, metadata: Mapping[str, Any] | None = None) -> str:
        """Open a correlation in this thread or task and return its id.

        Store operations until :meth:`end_correlation` carry the id; a correlation opened
        inside another records it as ``parent_id``.
        """
        if not isinstance(operation, str) or not operation:
            raise ConfigurationError("operation must be a non-empty string", field="operation")
        correlation = Correlation(
            correlation_id=uuid.uuid4().hex,
            operation=operation,
            metadata=_pairs(metadata, "metadata"),
            started_ns=time.perf_counter_ns(),
            parent=_current.get(),
        )
        with self._lock:
            self._open[correlation.correlation_id] = correlation
        _current.set(correlation)
        return correlation.correlation_id

    def end_correlation(
        self, correlation_id: str, success: bool = True, error: BaseException | None = None
    ) -> signals.CorrelationEvent:
        """Close a correlation, send ``correlation_ended`` and return what it sent.

        The thread's or task's current correlation goes back to the one it was opened in.
        An id this monitor did not open (or already closed) raises ``KeyError``.
        """
        with self._lock:
            correlation = self._open.pop(correlation_id)
        if _current.get() is correlation:
            _current.set(correlation.parent)
        parent = correlation.parent
        event = signals.CorrelationEvent(
            correlation_id=correlation_id,
            operation=correlation.operation,
            duration_ms=(time.perf_counter_ns() - correlation.started_ns) / 1e6,
            success=success and error is None,
            metadata=correlation.metadata,
            parent_id=None if parent is None else parent.correlation_id,
            error=error,
        )
        with self._lock:
            self._correlations.append(event)
        signals.send(signals.correlation_ended, self, lambda: event)
        return event

    def open_correlations(self) -> list[str]:
        """Ids of the correlations started and not yet ended."""
        with self._lock:
            return list(self._open)

    def recent_correlations(self) -> list[signals.CorrelationEvent]:
        """The correlations ended lately, oldest first (at most ``max_recent``)."""
        with self._lock:
            return list(self._correlations)

    # -- health ------------------------------------------------------------------------------

    def perform_health_check(self, store: HealthCheckable | None = None) -> HealthCheckResult:
        """One real round trip to ``store`` (or the monitor's own); never raises for an
        unhealthy store, and the store sends ``health_checked``."""
        target = store if store is not None else self.store
        if target is None:
            raise ConfigurationError("no store to check: pass one", field="store")
        return target.health_check()


_monitor_lock = threading.Lock()
_monitor: Monitor | None = None


def get_monitor() -> Monitor:
    """The process-wide monitor ``monitor_operation`` uses by default (made on first use)."""
    global _monitor  # noqa: PLW0603 - the process-wide default, set under a lock
    with _monitor_lock:
        if _monitor is None:
            _monitor = Monitor()
        return _monitor


def set_monitor(monitor: Monitor) -> Monitor:
    """Make ``monitor`` the process-wide default; returns the previous one."""
    global _monitor  # noqa: PLW0603 - the process-wide default, set under a lock
    if not isinstance(monitor, Monitor):
        raise ConfigurationError("set_monitor takes a Monitor", field="monitor")
    previous = get_monitor()
    with _monitor_lock:
        _monitor = monitor
    return previous


class MonitoredOperation:
    """A correlation around a block or a function: ``with``, ``async with``, or a decorator.

    As a decorator each call opens its own correlation; as a context manager the object may
    be entered again (and from several tasks) because open ids are kept per context.
    """

    def __init__(
        self, name: str, metadata: Mapping[str, Any] | None, monitor: Monitor | None
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError("operation name must be a non-empty string", field="name")
        self.name = name
        self.metadata = dict(metadata or {})
        self._monitor = monitor
        self._ids: ContextVar[tuple[str, ...]] = ContextVar(f"monitored-{name}", default=())

    @property
    def monitor(self) -> Monitor:
        """The monitor it reports to (the process-wide one unless given)."""
        return self._monitor if self._monitor is not None else get_monitor()

    def _start(self) -> str:
        return self.monitor.start_correlation(self.name, self.metadata)

    def _end(self, correlation_id: str, error: BaseException | None) -> None:
        self.monitor.end_correlation(correlation_id, success=error is None, error=error)

    # context managers

    def __enter__(self) -> str:
        correlation_id = self._start()
        self._ids.set((*self._ids.get(), correlation_id))
        return correlation_id

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        *rest, correlation_id = self._ids.get()
        self._ids.set(tuple(rest))
        self._end(correlation_id, exc)

    async def __aenter__(self) -> str:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)

    # decorator

    @overload
    def __call__(
        self, fn: Callable[..., Coroutine[Any, Any, R]]
    ) -> Callable[..., Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[..., R]) -> Callable[..., R]: ...

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                return await self.run_async(lambda: fn(*args, **kwargs))

            return run_async

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            return self.run(lambda: fn(*args, **kwargs))

        return run

    def run(self, fn: Callable[[], R]) -> R:
        """``fn()`` inside a correlation."""
        correlation_id = self._start()
        try:
            result = fn()
        except BaseException as exc:
            self._end(correlation_id, exc)
            raise
        self._end(correlation_id, None)
        return result

    async def run_async(self, fn: Callable[[], Awaitable[R]]) -> R:
        """``await fn()`` inside a correlation."""
        correlation_id = self._start()
        try:
            result = await fn()
        except BaseException as exc:
            self._end(correlation_id, exc)
            raise
        self._end(correlation_id, None)
        return result


@overload
def monitor_operation(
    name: str,
    fn: None = None,
    metadata: Mapping[str, Any] | None = None,
    *,
    monitor: Monitor | None = None,
) -> MonitoredOperation: ...


@overload
def monitor_operation(
    name: str,
    fn: Callable[[], Coroutine[Any, Any, R]],
    metadata: Mapping[str, Any] | None = None,
    *,
    monitor: Monitor | None = None,
) -> Coroutine[Any, Any, R]: ...


@overload
def monitor_operation(
    name: str,
    fn: Callable[[], R],
    metadata: Mapping[str, Any] | None = None,
    *,
    monitor: Monitor | None = None,
) -> R: ...


def monitor_operation(
    name: str,
    fn: Callable[[], Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    *,
    monitor: Monitor | None = None,
) -> Any:
    """A correlation named ``name`` around ``fn`` (called now), or, without ``fn``, a
    :class:`MonitoredOperation` to use as a decorator or (async) context manager.

    With an async ``fn`` the result is a coroutine to await; the correlation spans the await.
    """
    operation = MonitoredOperation(name, metadata, monitor)
    if fn is None:
        return operation
    if inspect.iscoroutinefunction(fn):
        return operation.run_async(fn)
    return operation.run(fn)
