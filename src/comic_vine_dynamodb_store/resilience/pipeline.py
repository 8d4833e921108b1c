"""The operation pipeline: the one place every DynamoDB operation of every store runs through.

``pipeline.run(operation, fn, key=...)`` applies, in order:

1. the circuit breaker (open: :class:`CircuitBreakerOpenError`, no request built or sent);
2. a deadline of ``circuit_breaker.timeout_ms`` for the operation: each attempt's socket
   timeouts are a share of it (see ``attempt_timeouts_s``), and a retry starts only while a
   whole attempt still fits, so the operation ends within it;
3. ``fn()``, whose requests carry botocore's retries and are metered (see ``transport``);
4. error mapping to the library's typed errors, the original kept as ``__cause__``;
5. one ``operation_completed`` signal (built only when someone listens).

A store method calls ``run`` once per DynamoDB round trip it needs (or once around a
multi-request operation such as ``clear``); everything else in the store is pure code.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import TypeVar

from comic_vine_dynamodb_store.clock import Clock, system_clock_ms
from comic_vine_dynamodb_store.config import StoreOptions
from comic_vine_dynamodb_store.errors import CircuitBreakerOpenError
from comic_vine_dynamodb_store.models.binding import attempt_timeouts_s
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.observability.context import current_correlation_id
from comic_vine_dynamodb_store.resilience.breaker import (
    BreakerState,
    CircuitBreaker,
    CircuitBreakerStatus,
)
from comic_vine_dynamodb_store.resilience.errors import (
    is_condition_failure,
    is_dynamodb_failure,
    map_error,
    root_cause,
    signals_ill_health,
)
from comic_vine_dynamodb_store.resilience.transport import RequestMeter, metering

__all__ = ["OperationPipeline"]

R = TypeVar("R")


class OperationPipeline:
    """Breaker, deadline, metering, error mapping and signals around a store's operations."""

    def __init__(
        self,
        *,
        store: str,
        options: StoreOptions,
        clock: Clock = system_clock_ms,
        sender: object | None = None,
    ) -> None:
        self.store = store
        self.table = options.table_name
        self._sender = sender if sender is not None else self
        # A retry starts only while a whole attempt (its connect and read timeouts) still
        # fits in circuit_breaker.timeout_ms: no operation outlives its budget.
        connect_s, read_s = attempt_timeouts_s(options.circuit_breaker.timeout_ms)
        self._retry_window_s = options.circuit_breaker.timeout_ms / 1000 - connect_s - read_s
        performance = options.monitoring.performance
        self._sampling_rate = performance.sampling_rate if performance.enabled else 0.0
        self._sampler = random.Random()
        settings = options.circuit_breaker
        self.breaker = CircuitBreaker(
            failure_threshold=settings.failure_threshold,
            recovery_timeout_ms=settings.recovery_timeout_ms,
            enabled=settings.enabled,
            clock=clock,
            on_state_change=self._announce_state,
        )

    def run(
        self,
        operation: str,
        fn: Callable[[], R],
        *,
        key: str | None = None,
        bounded: bool = True,
        expected: Callable[[BaseException], bool] = is_condition_failure,
    ) -> R:
        """Run ``fn`` as ``operation``; ``expected`` failures (a failed condition, by default)
        are re-raised untouched for the store to interpret, and count as successes.

        ``bounded=False`` lifts the operation deadline for store-wide work (``clear``,
        ``cleanup``) whose many requests together may take longer; each request keeps its
        own socket timeouts.
        """
        started = time.perf_counter()
        meter = RequestMeter(store=self.store, operation=operation, table=self.table)
        try:
            probe = self.breaker.before_call(operation=operation, table=self.table)
        except CircuitBreakerOpenError as refused:
            self._report(
                operation, key, started=started, meter=meter, outcome="rejected", error=refused
            )
            raise
        if bounded:
            meter.deadline = time.monotonic() + self._retry_window_s
        report = functools.partial(self._report, operation, key, started=started, meter=meter)
        try:
            with metering(meter):
                result = fn()
        except Exception as exc:
            if expected(exc):  # an answer for the store to interpret, not a failure
                self.breaker.record_success(probe)
                report(outcome="success", error=None)
                raise
            if signals_ill_health(exc):
                self.breaker.record_failure(probe)
            else:
                self.breaker.record_neutral(probe)
            if not is_dynamodb_failure(exc):  # a bug or a typed error of ours: as it is
                report(outcome="error", error=exc)
                raise
            error = map_error(exc, operation=operation, table=self.table)
            error.request_id = error.request_id or meter.request_id
            report(outcome="error", error=error)
            # The botocore error, not PynamoDB's wrapper, is the original worth keeping.
            raise error from root_cause(exc)
        except BaseException:  # KeyboardInterrupt and the like: no verdict on DynamoDB
            self.breaker.record_neutral(probe)
            raise
        self.breaker.record_success(probe)
        report(outcome="success", error=None)
        return result

    def status(self) -> CircuitBreakerStatus:
        """The circuit breaker's state."""
        return self.breaker.status()

    def reset(self) -> None:
        """Close the circuit breaker."""
        self.breaker.reset()

    def _report(
        self,
        operation: str,
        key: str | None,
        *,
        started: float,
        meter: RequestMeter,
        outcome: signals.Outcome,
        error: BaseException | None,
    ) -> None:
        # ``monitoring.performance``: the share of operations reported (drawn only when
        # someone listens and the share is partial).
        if (
            self._sampling_rate < 1.0
            and signals.operation_completed.has_receivers_for(self._sender)
            and self._sampler.random() >= self._sampling_rate
        ):
            return
        signals.send(
            signals.operation_completed,
            self._sender,
            lambda: signals.OperationEvent(
                store=self.store,
                operation=operation,
                table=self.table,
                key=key,
                duration_ms=(time.perf_counter() - started) * 1000,
                outcome=outcome,
                requests=meter.requests,
                retries=meter.retries,
                consumed_capacity=meter.consumed_capacity,
                error=error,
                request_id=meter.request_id,
                correlation_id=current_correlation_id(),
            ),
        )

    def _announce_state(self, previous: BreakerState, state: BreakerState, failures: int) -> None:
        signals.send(
            signals.circuit_state_changed,
            self._sender,
            lambda: signals.CircuitEvent(
                store=self.store,
                table=self.table,
                previous=previous.value,
                state=state.value,
                failure_count=failures,
            ),
        )
