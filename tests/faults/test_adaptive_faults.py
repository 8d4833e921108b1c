"""The adaptive rate-limit store when DynamoDB throttles, fails, or loses an answer."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

from comic_vine_dynamodb_store.errors import StoreUnavailableError, ThrottlingError
from comic_vine_dynamodb_store.stores.adaptive import DynamoDBAdaptiveRateLimitStore
from tests.faults.conftest import Injector, server_error, throttle
from tests.faults.test_dedupe_faults import commit_then_lose_the_answer

MakeStore = Callable[..., DynamoDBAdaptiveRateLimitStore]


@pytest.fixture
def make_store(make_dynamodb_store: Callable[..., Any]) -> MakeStore:
    """Adaptive stores with a 1 ms retry backoff, so retried faults cost no time."""
    return functools.partial(make_dynamodb_store, DynamoDBAdaptiveRateLimitStore, retry_delay_ms=1)


def test_a_throttled_admission_is_retried_and_counted_once(
    make_store: MakeStore, inject: Callable[[Any], Injector]
) -> None:
    store = make_store(max_retries=3, default_config={"limit": 3, "window_ms": 60_000})
    assert store.acquire("issues", "user")
    injector = inject(store)
    injector.faults = [throttle, throttle]
    assert store.acquire("issues", "user")
    assert injector.sent == ["UpdateItem"] * 3
    assert store.get_status("issues").remaining == 1


def test_throttling_past_the_retries_is_a_typed_error_and_counts_nothing(
    make_store: MakeStore, inject: Callable[[Any], Injector]
) -> None:
    # 10: five reserved for users, five for background.
    store = make_store(max_retries=1, default_config={"limit": 10, "window_ms": 60_000})
    assert store.acquire("issues", "background")
    injector = inject(store)
    injector.default = throttle
    with pytest.raises(ThrottlingError) as caught:
        store.acquire("issues", "background")
    assert caught.value.operation == "acquire"
    assert len(injector.sent) == 2
    injector.default = None
    assert store.get_status("issues").remaining == 9


def test_a_failing_read_raises_instead_of_guessing(
    make_store: MakeStore, inject: Callable[[Any], Injector]
) -> None:
    store = make_store(max_retries=0)
    injector = inject(store)
    injector.default = server_error
    for read in (store.can_proceed, store.get_wait_time):
        with pytest.raises(StoreUnavailableError):
            read("issues", "user")
    with pytest.raises(StoreUnavailableError):
        store.get_status("issues")


def test_a_lost_answer_may_count_an_admission_twice_but_never_admits_past_the_limit(
    make_store: MakeStore, inject: Callable[[Any], Injector]
) -> None:
    store = make_store(max_retries=2, default_config={"limit": 3, "window_ms": 60_000})
    assert store.acquire("issues", "user")
    injector = inject(store)
    injector.faults = [commit_then_lose_the_answer]
    assert store.acquire("issues", "user")
    # The first send landed; its retry could not tell and landed too: counted twice, the safe
    # side (it under-admits by one, it never over-admits).
    assert injector.sent == ["UpdateItem", "UpdateItem"]
    assert store.get_status("issues").remaining == 0
    assert not store.acquire("issues", "user")
