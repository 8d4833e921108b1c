"""Every DynamoDB store honours ``cleanup_interval_ms``: a daemon thread that close() stops."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from comic_vine_dynamodb_store.stores.base import DynamoDBStore
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore
from tests.support import FakeClock

REGION = "us-east-1"


def expire_a_job(store: Any, clock: FakeClock) -> Callable[[], int]:
    store.register_or_join("k")
    clock.advance(store.options.default_ttl_seconds * 1000)
    return lambda: store.get_stats().expired_jobs


def expire_a_window(store: Any, clock: FakeClock) -> Callable[[], int]:
    assert store.acquire("r")
    clock.advance(2 * store.options.default_config.window_ms)
    return lambda: store.get_stats().total_resources


CASES: dict[str, tuple[Any, dict[str, Any], Callable[[Any, FakeClock], Callable[[], int]]]] = {
    "dedupe": (DynamoDBDedupeStore, {"default_ttl_seconds": 1}, expire_a_job),
    "rate_limit": (
        DynamoDBRateLimitStore,
        {"default_config": {"limit": 5, "window_ms": 1000}},
        expire_a_window,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_expired_items_are_removed_in_the_background_until_close(
    endpoint: str, table_name: str, clock: FakeClock, case: str
) -> None:
    store_class, options, expire = CASES[case]
    store: DynamoDBStore[Any] = store_class(
        table_name=table_name,
        endpoint=endpoint,
        region=REGION,
        clock=clock,
        cleanup_interval_ms=20,
        **options,
    )
    remaining = expire(store, clock)
    deadline = time.monotonic() + 10
    while remaining() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert remaining() == 0
    (task,) = store._background
    assert task.alive
    store.close()
    assert not task.alive
