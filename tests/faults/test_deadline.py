"""``circuit_breaker.timeout_ms`` bounds a whole call, however its attempts fail.

Each attempt's socket timeouts are a share of the budget and a retry starts only while a
whole attempt still fits, so neither a hanging request nor a retry started late can carry a
call past ``timeout_ms``. The hang is real: a loopback proxy that accepts and never answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from comic_vine_dynamodb_store import DynamoDBCacheStore
from comic_vine_dynamodb_store.errors import StoreUnavailableError
from comic_vine_dynamodb_store.models.binding import attempt_timeouts_s
from tests.faults.conftest import server_error
from tests.faults.proxy import FaultProxy

TIMEOUT_MS = 1500
SLACK_MS = 150  # the call's own work around its requests: parsing, the breaker, a signal


@pytest.fixture
def proxy(endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(endpoint) as running:
        yield running


@pytest.fixture
def store(make_dynamodb_store: Callable[..., Any], proxy: FaultProxy) -> DynamoDBCacheStore[Any]:
    made: DynamoDBCacheStore[Any] = make_dynamodb_store(
        DynamoDBCacheStore,
        endpoint=proxy.endpoint,
        max_retries=5,
        retry_delay_ms=5,
        circuit_breaker={"timeout_ms": TIMEOUT_MS, "failure_threshold": 100},
    )
    made.get("warm-up")  # a connection in the pool, so the faults meet requests
    return made


def timed(call: Callable[[], object]) -> tuple[BaseException | None, float]:
    started = time.perf_counter()
    try:
        call()
    except StoreUnavailableError as error:
        return error, (time.perf_counter() - started) * 1000
    return None, (time.perf_counter() - started) * 1000


def sends(store: DynamoDBCacheStore[Any], answer: Callable[[int, Any], Any]) -> list[int]:
    """Answer each request of ``store`` with ``answer(n, request)`` (None: send it)."""
    sent: list[int] = []

    def handler(request: Any, **_: Any) -> Any:
        sent.append(len(sent) + 1)
        return answer(len(sent), request)

    client = store._model(store.item_model)._get_connection().connection.client
    client.meta.events.register_first("before-send.dynamodb", handler)
    return sent


def test_the_attempt_timeouts_leave_room_for_a_retry() -> None:
    connect_s, read_s = attempt_timeouts_s(TIMEOUT_MS)
    assert (connect_s, read_s) == (0.375, 0.75)
    assert attempt_timeouts_s(60_000) == (5.0, 30.0)  # connecting never gets more than 5 s


def test_a_request_that_hangs_is_given_up_within_the_budget(
    store: DynamoDBCacheStore[Any], proxy: FaultProxy
) -> None:
    proxy.set_mode("black_hole")
    sent = sends(store, lambda n, request: None)
    error, elapsed = timed(lambda: store.get("k"))
    assert type(error).__name__ == "OperationTimeoutError"
    assert sent == [1]  # no retry: a second attempt would not fit
    assert elapsed < TIMEOUT_MS + SLACK_MS


def test_fast_failures_are_retried_and_a_late_hang_still_ends_in_time(
    store: DynamoDBCacheStore[Any], proxy: FaultProxy
) -> None:
    def answer(n: int, request: Any) -> Any:
        if n < 3:
            return server_error(request)
        proxy.set_mode("black_hole")  # the third attempt meets a server that never answers
        return None

    sent = sends(store, answer)
    error, elapsed = timed(lambda: store.get("k"))
    assert type(error).__name__ == "OperationTimeoutError"
    assert sent == [1, 2, 3]
    assert elapsed < TIMEOUT_MS + SLACK_MS


def test_a_slow_failure_is_not_retried_past_the_budget(
    store: DynamoDBCacheStore[Any], proxy: FaultProxy
) -> None:
    # A first answer that takes most of the budget, then a hang for any retry: before the
    # budget was shared out, the retry got a whole read timeout of its own (about 2x).
    def answer(n: int, request: Any) -> Any:
        if n == 1:
            time.sleep(1.0)
            return server_error(request)
        proxy.set_mode("black_hole")
        return None

    sent = sends(store, answer)
    error, elapsed = timed(lambda: store.get("k"))
    assert type(error).__name__ == "StoreUnavailableError"
    assert sent == [1]
    assert elapsed < TIMEOUT_MS + SLACK_MS
