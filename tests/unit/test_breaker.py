"""The circuit breaker as a pure state machine under a frozen clock."""

from __future__ import annotations

import threading

import pytest

from comic_vine_dynamodb_store.errors import CircuitBreakerOpenError
from comic_vine_dynamodb_store.resilience.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def make(clock: Clock, threshold: int = 3, recovery: int = 500) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=threshold, recovery_timeout_ms=recovery, clock=clock)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.record_failure(breaker.before_call())


def test_opens_after_the_threshold_of_consecutive_failures_only() -> None:
    clock = Clock()
    breaker = make(clock)
    fail(breaker, 2)
    breaker.record_success(breaker.before_call())  # a success resets the count
    fail(breaker, 2)
    assert breaker.status().state is BreakerState.CLOSED
    fail(breaker, 1)
    status = breaker.status()
    assert (status.state, status.failure_count) == (BreakerState.OPEN, 3)
    assert status.next_probe_at_ms == clock.now + 500
    with pytest.raises(CircuitBreakerOpenError, match="probe in 500 ms"):
        breaker.before_call(operation="get", table="t")


def test_exactly_one_probe_after_the_recovery_timeout() -> None:
    clock = Clock()
    breaker = make(clock)
    fail(breaker, 3)
    clock.now += 499
    with pytest.raises(CircuitBreakerOpenError):
        breaker.before_call()
    clock.now += 1
    assert breaker.before_call() is True  # the probe
    assert breaker.status().state is BreakerState.HALF_OPEN
    with pytest.raises(CircuitBreakerOpenError):
        breaker.before_call()  # a second caller while the probe is out
    breaker.record_success(True)
    assert breaker.status().state is BreakerState.CLOSED
    assert breaker.before_call() is False


def test_only_one_of_many_threads_gets_the_probe() -> None:
    clock = Clock()
    breaker = make(clock)
    fail(breaker, 3)
    clock.now += 500
    results: list[bool | str] = []
    barrier = threading.Barrier(16)

    def call() -> None:
        barrier.wait()
        try:
            results.append(breaker.before_call())
        except CircuitBreakerOpenError:
            results.append("refused")

    threads = [threading.Thread(target=call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    assert results.count("refused") == 15


def test_a_failed_probe_reopens_and_a_neutral_one_lets_the_next_call_probe() -> None:
    clock = Clock()
    breaker = make(clock)
    fail(breaker, 3)
    clock.now += 500
    breaker.record_failure(breaker.before_call())
    assert breaker.status().state is BreakerState.OPEN
    assert breaker.status().next_probe_at_ms == clock.now + 500
    clock.now += 500
    breaker.record_neutral(breaker.before_call())
    assert breaker.before_call() is True  # no verdict: the next call probes at once


def test_state_changes_are_reported_in_order() -> None:
    clock = Clock()
    seen: list[tuple[str, str, int]] = []
    breaker = CircuitBreaker(
        failure_threshold=1,
        recovery_timeout_ms=10,
        clock=clock,
        on_state_change=lambda old, new, failures: seen.append((old.value, new.value, failures)),
    )
    fail(breaker, 1)
    clock.now += 10
    breaker.record_success(breaker.before_call())
    fail(breaker, 1)
    breaker.reset()
    assert seen == [
        ("closed", "open", 1),
        ("open", "half_open", 1),
        ("half_open", "closed", 0),
        ("closed", "open", 1),
        ("open", "closed", 0),
    ]


def test_disabled_breaker_admits_everything() -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout_ms=10, enabled=False)
    fail(breaker, 10)
    assert breaker.status().state is BreakerState.CLOSED
    assert breaker.before_call() is False


@pytest.mark.parametrize(("threshold", "recovery"), [(0, 10), (1, 0)])
def test_bad_settings_are_refused(threshold: int, recovery: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        CircuitBreaker(failure_threshold=threshold, recovery_timeout_ms=recovery)
