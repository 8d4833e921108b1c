"""What every DynamoDB store shares: options, table binding, the pipeline, lifecycle.

A concrete store declares its options model and name, and calls :meth:`DynamoDBStore._run`
once per DynamoDB round trip; closing, the context manager, the circuit breaker controls,
health checks and the periodic background task are written once, here.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar, Generic, ParamSpec, Self, TypeVar, cast

from pynamodb.exceptions import DeleteError

from comic_vine_dynamodb_store.clock import Clock, system_clock_ms
from comic_vine_dynamodb_store.config import RateLimitConfig, RateLimitConfigs, StoreOptions
from comic_vine_dynamodb_store.errors import (
    ConfigurationError,
    StoreClosedError,
    StoreUnavailableError,
)
from comic_vine_dynamodb_store.keys import health_probe_key, validate_key
from comic_vine_dynamodb_store.models import StoreItem, TableBinding
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.observability.handlers.base import SignalHandler
from comic_vine_dynamodb_store.observability.handlers.logging_handler import LoggingHandler
from comic_vine_dynamodb_store.resilience.breaker import CircuitBreakerStatus
from comic_vine_dynamodb_store.resilience.errors import is_condition_failure
from comic_vine_dynamodb_store.resilience.pipeline import OperationPipeline
from comic_vine_dynamodb_store.stores.contracts import HealthCheckResult, RateLimitStatus

__all__ = [
    "ClosingContext",
    "DynamoDBStore",
    "InMemoryStore",
    "PerResourceLimits",
    "PeriodicTask",
    "refuse",
]

_log = logging.getLogger(__name__)

OptionsT = TypeVar("OptionsT", bound=StoreOptions)
M = TypeVar("M", bound=StoreItem)
R = TypeVar("R")
P = ParamSpec("P")


class PeriodicTask:
    """Run ``fn`` every ``interval_ms`` in a daemon thread until :meth:`stop`.

    A failing run is logged and the schedule carries on; ``stop`` wakes the thread at once.
    """

    def __init__(self, name: str, interval_ms: int, fn: Callable[[], object]) -> None:
        self._interval_s = interval_ms / 1000
        self._fn = fn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._fn()
            except Exception:
                _log.exception("background task %s failed; will retry", self._thread.name)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the schedule and wait for a run in progress to finish."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()


class ClosingContext:
    """``with store:`` closes the store on the way out, whatever happened inside."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class DynamoDBStore(ClosingContext, Generic[OptionsT]):
    """Base of the DynamoDB stores. Options come as keywords or as one ``options`` object."""

    options_model: ClassVar[type[StoreOptions]] = StoreOptions
    store_name: ClassVar[str] = "store"
    item_model: ClassVar[type[StoreItem]]

    def __init__(
        self, *, options: OptionsT | None = None, clock: Clock = system_clock_ms, **kwargs: Any
    ) -> None:
        if options is not None and kwargs:
            raise ConfigurationError(
                "pass options either as an options object or as keywords, not both",
                field=next(iter(kwargs)),
            )
        if options is not None and not isinstance(options, self.options_model):
            raise ConfigurationError(
                f"options must be a {self.options_model.__name__}", field="options"
            )
        self.options: OptionsT = options if options is not None else self.options_model(**kwargs)  # type: ignore[assignment]
        self._clock = clock
        self._namespace = self.options.key_prefix
        self._binding = TableBinding.from_options(self.options)
        self._pipeline = OperationPipeline(
            store=self.store_name, options=self.options, clock=clock, sender=self
        )
        self._closed = False
        self._close_lock = threading.Lock()
        self._background: list[PeriodicTask] = []
        self._handlers: list[SignalHandler] = []
        self._monitor_from_options()

    def _monitor_from_options(self) -> None:
        """Connect what ``monitoring`` asks for to this store's signals.

        Logging and the CloudWatch publisher are per store (``sender=self``), so closing the
        store disconnects them; health checks run on a daemon thread ``close`` stops.
        """
        monitoring = self.options.monitoring
        if monitoring.logging.enabled:
            self._handlers.append(LoggingHandler(monitoring.logging.level).connect(sender=self))
        if monitoring.cloud_watch.enabled:
            from comic_vine_dynamodb_store.observability.handlers.cloudwatch import (  # noqa: PLC0415 - only for stores that publish
                CloudWatchMetricsPublisher,
            )

            publisher = CloudWatchMetricsPublisher.from_options(
                monitoring.cloud_watch, session=self.options.client
            )
            self._handlers.append(publisher.connect(sender=self))
        if monitoring.health_checks.enabled:
            self._start_background(
                "health-check", monitoring.health_checks.interval_ms, self.health_check
            )

    # -- plumbing for subclasses -------------------------------------------------------------

    def _model(self, entity: type[M]) -> type[M]:
        return self._binding.model(entity)

    def _now_ms(self) -> int:
        return self._clock()

    def _check_open(self, operation: str) -> None:
        if self._closed:
            raise StoreClosedError(
                f"{self.store_name} store is closed", operation=operation, table=self.table_name
            )

    def _run(
        self,
        operation: str,
        fn: Callable[[], R],
        *,
        key: str | None = None,
        bounded: bool = True,
    ) -> R:
        self._check_open(operation)
        return self._pipeline.run(operation, fn, key=key, bounded=bounded)

    def _remove_expired(self, model: type[M], after: Callable[[M], int] | None = None) -> int:
        """Delete this store's expired items (found through GSI1's expired range), each with a
        condition so an item written again since the query survives; returns how many.

        ``after(item)`` runs for each item removed and returns how many more items it removed
        with it (a chunked cache value's chunks).
        """
        now = self._now_ms()

        def remove() -> int:
            removed = 0
            for item in model.iter_index(self._namespace, expired_at_ms=now):
                try:
                    item.delete(condition=model.expires_at_ms <= now)
                except DeleteError as exc:
                    if not is_condition_failure(exc):
                        raise
                else:
                    removed += 1 + (after(item) if after is not None else 0)
            return removed

        return self._run("cleanup", remove, bounded=False)

    def _start_background(self, name: str, interval_ms: int, fn: Callable[[], object]) -> None:
        if interval_ms > 0:
            self._background.append(PeriodicTask(f"{self.store_name}-{name}", interval_ms, fn))

    # -- public surface shared by every store ---------------------------------------------------

    @property
    def table_name(self) -> str:
        """The table this store uses."""
        return self.options.table_name

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def get_circuit_breaker_status(self) -> CircuitBreakerStatus:
        """The circuit breaker's state, failure count and next probe time."""
        return self._pipeline.status()

    def reset_circuit_breaker(self) -> None:
        """Close the circuit breaker and forget its failures."""
        self._pipeline.reset()

    def health_check(self) -> HealthCheckResult:
        """One real round trip (a GetItem of a key no user key can reach); never raises."""
        model = self._model(self.item_model)
        probe_pk = health_probe_key(model.entity, self._namespace)
        started = time.perf_counter()
        error: str | None = None
        failure: BaseException | None = None
        try:
            self._run("health_check", lambda: model.get_live(probe_pk, "HEALTH"))
        except Exception as exc:
            failure = exc
            error = f"{type(exc).__name__}: {exc}"
        result = HealthCheckResult(
            healthy=error is None,
            latency_ms=(time.perf_counter() - started) * 1000,
            circuit_state=self._pipeline.status().state.value,
            error=error,
        )
        announce_health(
            self, self.store_name, self.table_name, result, now_ms=self._now_ms(), error=failure
        )
        return result

    def close(self) -> None:
        """Stop background work; later calls raise :class:`StoreClosedError`. Idempotent.

        Clients made by the store are dropped with it; a ``client`` session passed in
        is the caller's and is left alone.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        for task in self._background:
            task.stop()
        for handler in self._handlers:
            handler.close()


class InMemoryStore(ClosingContext):
    """What the in-memory twins share: one lock, the closed flag, and health checks.

    They report ``table="memory"`` where the DynamoDB stores report their table, so signal
    receivers and monitors see the same fields from either.
    """

    store_name: ClassVar[str] = "memory"
    table_name: ClassVar[str] = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def _check_open(self, operation: str) -> None:
        if self._closed:
            raise StoreClosedError(
                f"{self.store_name} store is closed", operation=operation, table=self.table_name
            )

    def health_check(self) -> HealthCheckResult:
        """Healthy while open: there is no backend that could fail. Never raises.

        A closed store reports unhealthy with the ``StoreClosedError``, as the DynamoDB store
        does, so a monitor sees the same answer from either.
        """
        started = time.perf_counter()
        error: str | None = None
        failure: BaseException | None = None
        try:
            self._check_open("health_check")
        except StoreClosedError as exc:
            failure = exc
            error = f"{type(exc).__name__}: {exc}"
        result = HealthCheckResult(
            healthy=error is None,
            latency_ms=(time.perf_counter() - started) * 1000,
            circuit_state="closed",
            error=error,
        )
        announce_health(
            self, self.store_name, self.table_name, result, now_ms=system_clock_ms(), error=failure
        )
        return result


class PerResourceLimits:
    """The per-resource configuration methods every rate-limit store offers.

    A store sets ``_configs`` in its constructor; these check the resource name before
    anything changes, and the configs validate the new limit.
    """

    _configs: RateLimitConfigs

    def set_resource_config(
        self, resource: str, config: RateLimitConfig | Mapping[str, Any]
    ) -> None:
        """Use ``config`` for ``resource`` from now on (validated first)."""
        validate_key(resource, what="resource")
        self._configs.set(resource, config)

    def get_resource_config(self, resource: str) -> RateLimitConfig:
        """The config in force for ``resource``."""
        return self._configs.get(resource)

    @property
    def resource_configs(self) -> dict[str, RateLimitConfig]:
        """A copy of the per-resource overrides."""
        return self._configs.overrides()


FallbackFn = Callable[..., tuple[Any, signals.Fallback]]
"""``fallback(store, mode, *args, **kwargs) -> (value, kind)``: what a method returns instead
of raising ``StoreUnavailableError`` under ``on_unavailable`` ``mode`` ("open" or "closed")."""


_raising: ContextVar[bool] = ContextVar("comic_vine_dynamodb_store_raising", default=False)


@contextlib.contextmanager
def raising_unavailable() -> Iterator[None]:
    """Inside the block, methods with a fallback raise ``StoreUnavailableError`` instead: for
    a composite call (dedupe ``run``) that falls back as a whole."""
    token = _raising.set(True)
    try:
        yield
    finally:
        _raising.reset(token)


def announce_fallback(
    store: Any,
    operation: str,
    key: str | None,
    kind: signals.Fallback,
    error: BaseException,
) -> None:
    """Send ``store_fallback`` for a call that fell back instead of raising."""
    signals.send(
        signals.store_fallback,
        store,
        lambda: signals.FallbackEvent(
            store=store.store_name,
            table=store.table_name,
            operation=operation,
            key=key,
            mode=store.options.on_unavailable,
            fallback=kind,
            error=error,
        ),
    )


def falls_back(fallback: FallbackFn) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Give a store method the ``on_unavailable`` behaviour.

    Only :class:`StoreUnavailableError` (the circuit is open, retries ran out, a timeout, a
    5xx, a broken connection) falls back; a configuration error, a closed store or bad input
    still raises. Each fallback sends ``store_fallback`` (logged as a warning by the default
    logging handler), so it is never silent. The method's first argument, when it is a
    string, is reported as the key.
    """

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        operation = method.__name__

        @functools.wraps(method)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(*args, **kwargs)
            except StoreUnavailableError as error:
                store: Any = args[0]
                mode = store.options.on_unavailable
                if mode == "raise" or _raising.get():
                    raise
                value, kind = fallback(store, mode, *args[1:], **kwargs)
                key = args[1] if len(args) > 1 and isinstance(args[1], str) else None
                announce_fallback(store, operation, key, kind, error)
                return cast(R, value)

        return guarded

    return decorate


def miss(store: Any, mode: str, *args: Any, **kwargs: Any) -> tuple[Any, signals.Fallback]:
    """Fallback of a read: nothing there (``None``; ``False`` is the caller's to choose)."""
    return None, "miss"


def missing(store: Any, mode: str, *args: Any, **kwargs: Any) -> tuple[bool, signals.Fallback]:
    """Fallback of a yes/no read: no."""
    return False, "miss"


def skipped(store: Any, mode: str, *args: Any, **kwargs: Any) -> tuple[None, signals.Fallback]:
    """Fallback of a write: not written."""
    return None, "skipped"


def not_done(store: Any, mode: str, *args: Any, **kwargs: Any) -> tuple[bool, signals.Fallback]:
    """Fallback of a write answering whether it happened: it did not."""
    return False, "skipped"


def admission(store: Any, mode: str, *args: Any, **kwargs: Any) -> tuple[bool, signals.Fallback]:
    """Fallback of a limiter's yes/no: admit when open, refuse when closed."""
    return (True, "admitted") if mode == "open" else (False, "refused")


def unavailable_wait_ms(store: Any) -> int:
    """How long a closed limiter asks a caller to wait: until the breaker's probe when it is
    open, else one ``retry_delay_ms`` (at least 1 ms, so a wait is never 0 while refusing)."""
    status = store.get_circuit_breaker_status()
    if status.next_probe_at_ms is not None:
        return max(1, int(status.next_probe_at_ms) - int(store._now_ms()))
    return max(1, int(store.options.retry_delay_ms))


def waiting(store: Any, mode: str, *args: Any, **kwargs: Any) -> tuple[int, signals.Fallback]:
    """Fallback of ``get_wait_time``: 0 when open, a wait when closed."""
    if mode == "open":
        return 0, "admitted"
    return unavailable_wait_ms(store), "refused"


def status_fallback(
    store: Any, mode: str, resource: str, *args: Any, **kwargs: Any
) -> tuple[RateLimitStatus, signals.Fallback]:
    """Fallback of ``get_status``: the whole limit left when open, none when closed."""
    limit = store.get_resource_config(resource).limit
    now = store._now_ms()
    if mode == "open":
        reset = datetime.fromtimestamp(now / 1000, tz=UTC)
        return RateLimitStatus(remaining=limit, reset_time=reset, limit=limit), "admitted"
    reset = datetime.fromtimestamp((now + unavailable_wait_ms(store)) / 1000, tz=UTC)
    return RateLimitStatus(remaining=0, reset_time=reset, limit=limit), "refused"


def announce_join(sender: Any, table: str, key: str, job_id: str) -> None:
    """Send a dedupe store's join of another caller's live job on ``dedupe_joined``."""
    signals.send(
        signals.dedupe_joined,
        sender,
        lambda: signals.DedupeEvent(store=sender.store_name, table=table, key=key, job_id=job_id),
    )


def announce_health(
    sender: object,
    /,
    store: str,
    table: str,
    result: HealthCheckResult,
    *,
    now_ms: int,
    error: BaseException | None,
) -> None:
    """Send a health check's result on ``health_checked``."""
    signals.send(
        signals.health_checked,
        sender,
        lambda: signals.HealthEvent(
            store=store,
            table=table,
            healthy=result.healthy,
            latency_ms=result.latency_ms,
            checked_at_ms=now_ms,
            error=error,
        ),
    )


def refuse(
    sender: object,
    *,
    store: str,
    table: str,
    resource: str,
    config: RateLimitConfig,
    wait_ms: Callable[[], int],
    priority: str | None = None,
) -> bool:
    """Announce a refused admission on ``rate_limited`` and return False (the refusal).

    ``wait_ms`` is called only when a receiver is connected, so a refusal nobody listens to
    costs no wait computation.
    """
    signals.send(
        signals.rate_limited,
        sender,
        lambda: signals.RateLimitedEvent(
            store=store,
            table=table,
            resource=resource,
            limit=config.limit,
            window_ms=config.window_ms,
            wait_ms=wait_ms(),
            priority=priority,
        ),
    )
    return False
