"""DynamoDBCacheStore against DynamoDB Local: the rules of SPEC section 4 that need the table."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest
from pynamodb.connection import Connection

from comic_vine_dynamodb_store.clock import system_clock_ms
from comic_vine_dynamodb_store.config import CacheStoreOptions
from comic_vine_dynamodb_store.errors import (
    ConfigurationError,
    ItemTooLargeError,
    StoreClosedError,
)
from comic_vine_dynamodb_store.models import CacheItem, DedupeJob, TableBinding
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore
from tests.support import FakeClock

REGION = "us-east-1"


@pytest.fixture
def make_store(
    make_cache_store: Callable[..., DynamoDBCacheStore[Any]],
) -> Callable[..., DynamoDBCacheStore[Any]]:
    return make_cache_store


@pytest.fixture
def raw(endpoint: str) -> Any:
    """A plain botocore client: the table as any other program would see it."""
    return Connection(region=REGION, host=endpoint).client


@pytest.fixture
def operations() -> Iterator[list[signals.OperationEvent]]:
    seen: list[signals.OperationEvent] = []

    def record(sender: Any, event: signals.OperationEvent) -> None:
        seen.append(event)

    with signals.operation_completed.connected_to(record):
        yield seen


def test_get_set_delete_cost_exactly_one_request_each(
    make_store: Callable[..., DynamoDBCacheStore[Any]],
    operations: list[signals.OperationEvent],
) -> None:
    store = make_store()
    store.set("k", {"id": 1}, 60)
    assert store.get("k") == {"id": 1}
    assert store.get("absent") is None
    store.delete("k")
    assert [(e.operation, e.requests, e.outcome) for e in operations] == [
        ("set", 1, "success"),
        ("get", 1, "success"),
        ("get", 1, "success"),
        ("delete", 1, "success"),
    ]
    assert all(e.consumed_capacity > 0 for e in operations)


def test_an_expired_item_written_directly_is_a_miss_counted_as_expired(
    make_store: Callable[..., DynamoDBCacheStore[Any]], raw: Any, table_name: str, clock: FakeClock
) -> None:
    store = make_store()
    pk, sk = CacheItem.key_of("", "written-elsewhere")
    future_ttl = str(clock.now_ms // 1000 + 86_400)  # DynamoDB's reaper would not touch it yet
    raw.put_item(
        TableName=table_name,
        Item={
            "PK": {"S": pk},
            "SK": {"S": sk},
            "Data": {"B": b'"stale"'},
            "Enc": {"S": "json"},
            "Size": {"N": "7"},
            "CreatedAt": {"N": str(clock.now_ms - 5000)},
            "ExpiresAt": {"N": str(clock.now_ms - 1)},
            "TTL": {"N": future_ttl},
            "GSI1PK": {"S": "CACHE##SHARD#00"},
            "GSI1SK": {"S": f"{clock.now_ms - 1:015d}"},
        },
    )
    assert store.get("written-elsewhere") is None
    stats = store.get_stats()
    assert (stats.total_items, stats.expired_items) == (0, 1)
    assert store.cleanup() == 1
    assert "Item" not in raw.get_item(TableName=table_name, Key={"PK": {"S": pk}, "SK": {"S": sk}})


def test_350_kb_of_compressible_json_round_trips_in_one_item(
    make_store: Callable[..., DynamoDBCacheStore[Any]],
    operations: list[signals.OperationEvent],
) -> None:
    store = make_store()
    page = {
        "results": [
            {"id": i, "name": f"Issue #{i}", "deck": "A story of heroes. " * 8} for i in range(2000)
        ]
    }
    assert 350_000 < len(str(page)) < 450_000
    store.set("page", page, 3600)
    assert store.get("page") == page
    assert [e.requests for e in operations] == [1, 1]


def test_max_value_bytes_caps_what_set_accepts(
    make_store: Callable[..., DynamoDBCacheStore[Any]],
) -> None:
    store = make_store(max_value_bytes=100)
    store.set("small", "x" * 50, 60)
    with pytest.raises(ItemTooLargeError, match="max_value_bytes"):
        store.set("big", os.urandom(200).hex(), 60)
    assert store.get("big") is None


def test_clear_removes_only_this_namespaces_cache_items(
    make_store: Callable[..., DynamoDBCacheStore[Any]], endpoint: str, table_name: str
) -> None:
    store = make_store()
    other_namespace = make_store(key_prefix="other-app")
    for i in range(30):
        store.set(f"k{i}", i, 60)
    other_namespace.set("k0", "kept", 60)
    jobs = TableBinding(table_name=table_name, region=REGION, endpoint=endpoint).model(DedupeJob)
    now = system_clock_ms()
    jobs.build_pending("", "k0", job_id="j", owner_token="o", now_ms=now, lease_ms=60_000).save()
    store.clear()
    assert all(store.get(f"k{i}") is None for i in range(30))
    assert store.get_stats().total_items == 0
    assert other_namespace.get("k0") == "kept"
    assert jobs.get_live(*DedupeJob.key_of("", "k0")) is not None


def test_stats_after_ten_live_and_five_expired(
    make_store: Callable[..., DynamoDBCacheStore[Any]], clock: FakeClock
) -> None:
    store = make_store()
    for i in range(5):
        store.set(f"short{i}", i, 1)
    for i in range(10):
        store.set(f"long{i}", {"n": i}, 3600)
    clock.now_ms += 1000
    stats = store.get_stats()
    assert (stats.total_items, stats.expired_items) == (10, 5)
    assert stats.estimated_size_bytes == sum(len(f'{{"n":{i}}}') for i in range(10))
    assert store.cleanup() == 5
    assert store.get_stats().expired_items == 0


def test_cleanup_never_removes_a_value_set_again_since_it_expired(
    make_store: Callable[..., DynamoDBCacheStore[Any]], clock: FakeClock
) -> None:
    store = make_store()
    store.set("k", "old", 1)
    clock.now_ms += 1500
    later_writer = make_store()
    later_writer.set("k", "new", 3600)  # refreshed by another process
    assert store.cleanup() == 0
    assert store.get("k") == "new"


def test_undecodable_stored_data_is_a_miss_reported_by_a_signal(
    make_store: Callable[..., DynamoDBCacheStore[Any]], raw: Any, table_name: str
) -> None:
    store = make_store()
    store.set("k", {"id": 1}, 60)
    pk, sk = CacheItem.key_of("", "k")
    raw.update_item(
        TableName=table_name,
        Key={"PK": {"S": pk}, "SK": {"S": sk}},
        UpdateExpression="SET #d = :bad, Enc = :enc",
        ExpressionAttributeNames={"#d": "Data"},
        ExpressionAttributeValues={":bad": {"B": b"\x78\x9cbroken"}, ":enc": {"S": "zlib+json"}},
    )
    errors: list[signals.CacheEvent] = []

    def record(sender: Any, event: signals.CacheEvent) -> None:
        errors.append(event)

    with signals.cache_decode_error.connected_to(record):
        assert store.get("k") is None
    assert [e.key for e in errors] == ["k"]
    assert errors[0].error is not None


def test_the_background_cleanup_runs_and_stops_on_close(
    make_store: Callable[..., DynamoDBCacheStore[Any]], clock: FakeClock
) -> None:
    store = make_store(cleanup_interval_ms=20)
    store.set("k", "v", 1)
    clock.now_ms += 1000
    deadline = time.monotonic() + 10
    while store.get_stats().expired_items and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.get_stats().expired_items == 0
    task = store._background[0]
    assert task.alive
    store.close()
    assert not task.alive
    with pytest.raises(StoreClosedError):
        store.get("k")


def test_context_manager_closes_and_close_is_idempotent(
    make_store: Callable[..., DynamoDBCacheStore[Any]],
) -> None:
    with make_store() as store:
        store.set("k", 1, 0)
    assert store.closed
    store.close()
    with pytest.raises(StoreClosedError, match="closed"):
        store.set("k", 2, 0)


def test_options_come_as_an_object_or_keywords_not_both(endpoint: str, table_name: str) -> None:
    options = CacheStoreOptions(
        table_name=table_name, endpoint=endpoint, region=REGION, cleanup_interval_ms=0
    )
    with DynamoDBCacheStore[int](options=options) as store:
        store.set("k", 1, 0)
        assert store.get("k") == 1
    with pytest.raises(ConfigurationError, match="not both"):
        DynamoDBCacheStore(options=options, table_name="other-table")
    with pytest.raises(ConfigurationError) as caught:
        DynamoDBCacheStore(table_name=table_name, cleanup_interval_ms=-1)
    assert caught.value.field == "cleanup_interval_ms"


def test_a_callers_botocore_session_is_used(endpoint: str, table_name: str) -> None:
    session = botocore.session.get_session()
    session.set_credentials("sessionkey", "sessionsecret")
    with DynamoDBCacheStore[str](
        table_name=table_name,
        endpoint=endpoint,
        region=REGION,
        client=session,
        cleanup_interval_ms=0,
    ) as store:
        store.set("k", "via session", 60)
        assert store.get("k") == "via session"
        client = store._items._get_connection().connection.client
        assert client._request_signer._credentials.access_key == "sessionkey"
