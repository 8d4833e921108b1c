"""The operation pipeline under injected faults: retries, typed errors, circuit breaker."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from comic_vine_dynamodb_store.errors import (
    CircuitBreakerOpenError,
    OperationTimeoutError,
    StoreUnavailableError,
    ThrottlingError,
)
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.resilience.breaker import BreakerState
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore
from tests.faults.conftest import Injector, json_response, server_error, throttle
from tests.support import FakeClock

REGION = "us-east-1"


@pytest.fixture
def make_store(
    make_cache_store: Callable[..., DynamoDBCacheStore[Any]],
) -> Callable[..., DynamoDBCacheStore[Any]]:
    """Cache stores with a 1 ms retry backoff, so retried faults cost no time."""
    return functools.partial(make_cache_store, retry_delay_ms=1)


def timeout(request: Any) -> None:
    raise ReadTimeoutError(endpoint_url=request.url)


def unreachable(request: Any) -> None:
    raise EndpointConnectionError(endpoint_url=request.url)


def test_throttled_twice_then_success_returns_after_three_sends(
    make_store: Callable[..., DynamoDBCacheStore[Any]], inject: Callable[[Any], Injector]
) -> None:
    store = make_store(max_retries=3)
    store.set("k", "v", 60)
    injector = inject(store)
    injector.faults = [throttle, throttle]
    assert store.get("k") == "v"
    assert injector.sent == ["GetItem"] * 3


def test_throttled_always_raises_throttling_error_after_max_retries_plus_one_sends(
    make_store: Callable[..., DynamoDBCacheStore[Any]], inject: Callable[[Any], Injector]
) -> None:
    store = make_store(max_retries=2)
    injector = inject(store)
    injector.default = throttle
    with pytest.raises(ThrottlingError) as caught:
        store.get("k")
    assert len(injector.sent) == 3
    error = caught.value
    assert (error.operation, error.table) == ("get", store.table_name)
    assert error.request_id == "injected-ThrottlingException"
    assert isinstance(error.__cause__, ClientError)
    assert error.__cause__.response["Error"]["Code"] == "ThrottlingException"


def test_retries_are_metered_and_announced(
    make_store: Callable[..., DynamoDBCacheStore[Any]], inject: Callable[[Any], Injector]
) -> None:
    store = make_store(max_retries=3)
    injector = inject(store)
    injector.faults = [throttle, server_error]
    operations: list[signals.OperationEvent] = []
    retries: list[signals.RetryEvent] = []

    def on_operation(sender: Any, event: signals.OperationEvent) -> None:
        operations.append(event)

    def on_retry(sender: Any, event: signals.RetryEvent) -> None:
        retries.append(event)

    with (
        signals.operation_completed.connected_to(on_operation),
        signals.request_retried.connected_to(on_retry),
    ):
        assert store.get("absent") is None
    assert [(e.operation, e.requests, e.retries, e.outcome) for e in operations] == [
        ("get", 3, 2, "success")
    ]
    assert [(e.attempt, e.error_code, e.operation) for e in retries] == [
        (1, "ThrottlingException", "get"),
        (2, "InternalServerError", "get"),
    ]
    assert operations[0].consumed_capacity > 0


def test_a_read_timeout_maps_to_operation_timeout_error(
    make_store: Callable[..., DynamoDBCacheStore[Any]], inject: Callable[[Any], Injector]
) -> None:
    store = make_store(max_retries=1)
    injector = inject(store)
    injector.default = timeout
    with pytest.raises(OperationTimeoutError) as caught:
        store.set("k", "v", 60)
    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value.__cause__, ReadTimeoutError)
    assert injector.sent == ["PutItem", "PutItem"]


def test_server_errors_and_connection_failures_map_to_store_unavailable(
    make_store: Callable[..., DynamoDBCacheStore[Any]], inject: Callable[[Any], Injector]
) -> None:
    store = make_store(max_retries=0)
    injector = inject(store)
    injector.faults = [server_error, unreachable]
    with pytest.raises(StoreUnavailableError, match="unavailable"):
        store.get("k")
    with pytest.raises(StoreUnavailableError, match="could not reach"):
        store.delete("k")
    assert injector.sent == ["GetItem", "DeleteItem"]


def test_no_retry_starts_after_the_operation_deadline(
    make_store: Callable[..., DynamoDBCacheStore[Any]], inject: Callable[[Any], Injector]
) -> None:
    # A 1 s backoff base cannot fit in a 50 ms operation budget: the first failure is final.
    store = make_store(max_retries=5, retry_delay_ms=1000, circuit_breaker={"timeout_ms": 50})
    injector = inject(store)
    # Throttling backoff is rand() * 1 s; force a certain overrun by failing every attempt.
    injector.default = throttle
    with pytest.raises(ThrottlingError):
        store.get("k")
    assert len(injector.sent) < 6


def test_consecutive_failures_open_the_circuit_and_one_probe_closes_it(
    make_store: Callable[..., DynamoDBCacheStore[Any]],
    inject: Callable[[Any], Injector],
    clock: FakeClock,
) -> None:
    store = make_store(
        max_retries=0, circuit_breaker={"failure_threshold": 5, "recovery_timeout_ms": 60_000}
    )
    injector = inject(store)
    injector.default = server_error
    changes: list[tuple[str, str]] = []

    def on_change(sender: Any, event: signals.CircuitEvent) -> None:
        changes.append((event.previous, event.state))

    with signals.circuit_state_changed.connected_to(on_change):
        for _ in range(5):
            with pytest.raises(StoreUnavailableError):
                store.get("k")
        assert store.get_circuit_breaker_status().state is BreakerState.OPEN
        assert len(injector.sent) == 5
        with pytest.raises(CircuitBreakerOpenError):
            store.get("k")
        assert len(injector.sent) == 5  # refused without a request
        clock.now_ms += 59_999
        with pytest.raises(CircuitBreakerOpenError):
            store.get("k")
        assert len(injector.sent) == 5
        clock.now_ms += 1
        injector.default = None  # DynamoDB has recovered
        assert store.get("k") is None  # the probe
        assert len(injector.sent) == 6
        assert store.get_circuit_breaker_status().state is BreakerState.CLOSED
        assert store.get("k") is None
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_probe_reopens_the_circuit_for_another_recovery_period(
    make_store: Callable[..., DynamoDBCacheStore[Any]],
    inject: Callable[[Any], Injector],
    clock: FakeClock,
) -> None:
    store = make_store(
        max_retries=0, circuit_breaker={"failure_threshold": 2, "recovery_timeout_ms": 1000}
    )
    injector = inject(store)
    injector.default = throttle
    for _ in range(2):
        with pytest.raises(ThrottlingError):
            store.get("k")
    clock.now_ms += 1000
    with pytest.raises(ThrottlingError):
        store.get("k")  # the probe, and it fails
    status = store.get_circuit_breaker_status()
    assert status.state is BreakerState.OPEN
    assert status.next_probe_at_ms == clock.now_ms + 1000
    with pytest.raises(CircuitBreakerOpenError):
        store.get("k")
    assert len(injector.sent) == 3
    store.reset_circuit_breaker()
    injector.default = None
    assert store.get("k") is None
    assert len(injector.sent) == 4


def test_failures_that_say_nothing_about_health_do_not_open_the_circuit(
    make_store: Callable[..., DynamoDBCacheStore[Any]], clock: FakeClock
) -> None:
    store = make_store(circuit_breaker={"failure_threshold": 1})
    store.set("k", "v", 1)
    clock.now_ms += 2000
    # cleanup's conditional deletes and ordinary misses are not failures
    assert store.cleanup() == 1
    assert store.get("k") is None
    assert store.get_circuit_breaker_status().state is BreakerState.CLOSED


def test_a_disabled_breaker_never_opens(
    make_store: Callable[..., DynamoDBCacheStore[Any]], inject: Callable[[Any], Injector]
) -> None:
    store = make_store(max_retries=0, circuit_breaker={"enabled": False, "failure_threshold": 1})
    injector = inject(store)
    injector.default = server_error
    for _ in range(3):
        with pytest.raises(StoreUnavailableError):
            store.get("k")
    assert len(injector.sent) == 3
    assert store.get_circuit_breaker_status().state is BreakerState.CLOSED


def test_health_check_reports_failure_without_raising(
    make_store: Callable[..., DynamoDBCacheStore[Any]], inject: Callable[[Any], Injector]
) -> None:
    store = make_store(max_retries=0)
    assert store.health_check().healthy
    injector = inject(store)
    injector.default = server_error
    result = store.health_check()
    assert not result.healthy
    assert result.error is not None
    assert "StoreUnavailableError" in result.error
    assert injector.sent == ["GetItem"]


def _unprocessed_everything(request: Any) -> Any:
    """A BatchWriteItem answer that processed nothing: every request comes back."""
    body = json.loads(request.body)
    return json_response(request.url, {"UnprocessedItems": body["RequestItems"]})


def test_clear_resends_unprocessed_batch_items_until_done(
    make_store: Callable[..., DynamoDBCacheStore[Any]], inject: Callable[[Any], Injector]
) -> None:
    store = make_store(batch_size=5, max_retries=3)
    for i in range(12):
        store.set(f"k{i}", i, 60)
    injector = inject(store)
    # The first two batch requests process nothing; every later one goes through.
    calls = {"batch": 0}

    def flaky_batches(request: Any) -> Any:
        if b"BatchWriteItem" in request.headers.get("X-Amz-Target", b""):
            calls["batch"] += 1
            if calls["batch"] <= 2:
                return _unprocessed_everything(request)
        return None

    injector.default = flaky_batches
    store.clear()
    assert store.get_stats().total_items == 0
    assert injector.sent.count("BatchWriteItem") == 3 + 2  # 12 items in batches of 5, 2 resent


def test_clear_gives_up_with_throttling_error_when_items_stay_unprocessed(
    make_store: Callable[..., DynamoDBCacheStore[Any]], inject: Callable[[Any], Injector]
) -> None:
    store = make_store(batch_size=25, max_retries=2)
    store.set("k", 1, 60)
    injector = inject(store)

    def never(request: Any) -> Any:
        if b"BatchWriteItem" in request.headers.get("X-Amz-Target", b""):
            return _unprocessed_everything(request)
        return None

    injector.default = never
    with pytest.raises(ThrottlingError, match="1 batch items still unprocessed after 2 retries"):
        store.clear()
    assert injector.sent.count("BatchWriteItem") == 3
    assert store.get("k") == 1
