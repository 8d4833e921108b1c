"""The circuit breaker: stop calling DynamoDB after consecutive failures, probe once to recover.

::

    closed --(failure_threshold consecutive failures)--> open
    open   --(recovery_timeout_ms passed; the next call is the one probe)--> half_open
    half_open --(probe succeeds)--> closed        half_open --(probe fails)--> open

While open, calls are refused with :class:`CircuitBreakerOpenError` before any request is
built. In half-open exactly one call (the probe) goes through; every other call is refused
until the probe has finished.

Hand-written rather than pybreaker: pybreaker holds one lock for the whole duration of every
call (serialising all of a store's requests across threads) and reads ``datetime.now``
directly, so it can be neither shared by threads nor tested under a frozen clock. Here the
lock guards only the state transitions, and time comes from an injectable clock.
"""

from __future__ import annotations

import collections
import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass

from comic_vine_dynamodb_store.clock import Clock, system_clock_ms
from comic_vine_dynamodb_store.errors import CircuitBreakerOpenError

__all__ = ["BreakerState", "CircuitBreaker", "CircuitBreakerStatus"]


class BreakerState(enum.StrEnum):
    """Where the breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class CircuitBreakerStatus:
    """A snapshot for ``get_circuit_breaker_status()``.

    ``next_probe_at_ms`` is when an open breaker lets its probe through (``None`` otherwise).
    """

    state: BreakerState
    enabled: bool
    failure_count: int
    failure_threshold: int
    opened_at_ms: int | None
    next_probe_at_ms: int | None


StateListener = Callable[[BreakerState, BreakerState, int], None]


class CircuitBreaker:
    """Consecutive-failure breaker with one probe after ``recovery_timeout_ms``.

    Use: ``probe = breaker.before_call()`` (raises when refused), then exactly one of
    ``breaker.record_success()`` / ``breaker.record_failure()`` / ``breaker.record_neutral()``
    with that ``probe`` flag. A disabled breaker admits everything and never opens.
    """

    def __init__(
        self,
        *,
        failure_threshold: int,
        recovery_timeout_ms: int,
        enabled: bool = True,
        clock: Clock = system_clock_ms,
        on_state_change: StateListener | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if recovery_timeout_ms <= 0:
            raise ValueError("recovery_timeout_ms must be > 0")
        self._threshold = failure_threshold
        self._recovery_ms = recovery_timeout_ms
        self._enabled = enabled
        self._clock = clock
        self._on_state_change = on_state_change
        self._lock = threading.Lock()
        # Transitions wait here in the order they happened; one thread at a time delivers them.
        self._pending: collections.deque[tuple[BreakerState, BreakerState, int]] = (
            collections.deque()
        )
        self._delivering = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at_ms: int | None = None
        self._probe_in_flight = False

    def before_call(self, *, operation: str | None = None, table: str | None = None) -> bool:
        """Admit a call or raise :class:`CircuitBreakerOpenError`; True if it is the probe."""
        if not self._enabled:
            return False
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return False
            now = self._clock()
            opened = self._opened_at_ms if self._opened_at_ms is not None else now
            if (
                self._state is BreakerState.OPEN
                and now >= opened + self._recovery_ms
                and not self._probe_in_flight
            ):
                self._probe_in_flight = True
                change = self._move(BreakerState.HALF_OPEN)
            else:
                retry_in = max(0, opened + self._recovery_ms - now)
                raise CircuitBreakerOpenError(
                    f"circuit breaker is {self._state.value}; no request sent"
                    + ("" if self._probe_in_flight else f" (probe in {retry_in} ms)"),
                    operation=operation,
                    table=table,
                )
        self._notify(change)
        return True

    def record_success(self, probe: bool) -> None:
        """The call succeeded: reset the count; a successful probe closes the breaker."""
        if not self._enabled:
            return
        with self._lock:
            self._failures = 0
            change = None
            if probe:
                self._probe_in_flight = False
                self._opened_at_ms = None
                change = self._move(BreakerState.CLOSED)
        self._notify(change)

    def record_failure(self, probe: bool) -> None:
        """The call failed in a way that says DynamoDB is unwell: count it, maybe open."""
        if not self._enabled:
            return
        with self._lock:
            self._failures += 1
            change = None
            if probe:
                self._probe_in_flight = False
                self._opened_at_ms = self._clock()
                change = self._move(BreakerState.OPEN)
            elif self._state is BreakerState.CLOSED and self._failures >= self._threshold:
                self._opened_at_ms = self._clock()
                change = self._move(BreakerState.OPEN)
        self._notify(change)

    def record_neutral(self, probe: bool) -> None:
        """The call failed for a reason that says nothing about DynamoDB's health
        (a condition check, a bad request): a probe is released without a verdict."""
        if not self._enabled or not probe:
            return
        with self._lock:
            self._probe_in_flight = False
            change = self._move(BreakerState.OPEN)
        self._notify(change)

    def reset(self) -> None:
        """Close the breaker and forget every failure."""
        with self._lock:
            self._failures = 0
            self._opened_at_ms = None
            self._probe_in_flight = False
            change = self._move(BreakerState.CLOSED)
        self._notify(change)

    def status(self) -> CircuitBreakerStatus:
        """A consistent snapshot of the breaker."""
        with self._lock:
            opened = self._opened_at_ms
            return CircuitBreakerStatus(
                state=self._state,
                enabled=self._enabled,
                failure_count=self._failures,
                failure_threshold=self._threshold,
                opened_at_ms=opened,
                next_probe_at_ms=(
                    opened + self._recovery_ms
                    if opened is not None and self._state is BreakerState.OPEN
                    else None
                ),
            )

    def _move(self, state: BreakerState) -> tuple[BreakerState, BreakerState, int] | None:
        """Change state (under ``_lock``) and queue the transition for :meth:`_notify`."""
        previous, self._state = self._state, state
        if previous is state:
            return None
        change = (previous, state, self._failures)
        if self._on_state_change is not None:
            self._pending.append(change)
        return change

    def _notify(self, change: tuple[BreakerState, BreakerState, int] | None) -> None:
        """Deliver queued transitions in the order they happened, outside ``_lock``.

        The listener runs without the state lock (a slow one must not hold up every call),
        so two threads could otherwise deliver two transitions out of order. One thread at a
        time delivers; a thread that finds another delivering leaves its transition to it.
        """
        if change is None or self._on_state_change is None:
            return
        while self._delivering.acquire(blocking=False):
            try:
                while True:
                    with self._lock:
                        if not self._pending:
                            break
                        queued = self._pending.popleft()
                    self._on_state_change(*queued)
            finally:
                self._delivering.release()
            with self._lock:  # one queued while we released: deliver it too
                if not self._pending:
                    return
