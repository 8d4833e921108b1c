"""``BatchWriter`` on DynamoDB Local when ``BatchWriteItem`` processes only part of a batch.

A partial answer is faithful: the injected handler writes the processed part for real (through
a separate client) and answers with the rest as ``UnprocessedItems``, as DynamoDB does when it
throttles part of a batch.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest

from comic_vine_dynamodb_store.errors import ItemTooLargeError, ThrottlingError
from comic_vine_dynamodb_store.models import CacheItem
from comic_vine_dynamodb_store.resilience import (
    AdaptiveDelayCalculator,
    BatchWriter,
    UnprocessedItemsError,
)
from comic_vine_dynamodb_store.serialization import (
    MAX_ITEM_BYTES,
    EncodedValue,
    Encoding,
    encode_value,
)
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore
from tests.faults.conftest import Injector, json_response
from tests.support import FakeClock

REGION = "us-east-1"
Key = tuple[str, str]


def _from_wire(value: dict[str, Any]) -> dict[str, Any]:
    """An attribute value as sent on the wire (binary in base64), as botocore takes it."""
    ((kind, inner),) = value.items()
    match kind:
        case "B":
            return {"B": base64.b64decode(inner)}
        case "BS":
            return {"BS": [base64.b64decode(v) for v in inner]}
        case "M":
            return {"M": {k: _from_wire(v) for k, v in inner.items()}}
        case "L":
            return {"L": [_from_wire(v) for v in inner]}
        case _:
            return value


def _from_wire_request(request: dict[str, Any]) -> dict[str, Any]:
    if "PutRequest" not in request:
        return request  # a delete names only string keys
    item = request["PutRequest"]["Item"]
    return {"PutRequest": {"Item": {name: _from_wire(v) for name, v in item.items()}}}


def _key(request: dict[str, Any]) -> Key:
    attributes = (
        request["PutRequest"]["Item"]
        if "PutRequest" in request
        else request["DeleteRequest"]["Key"]
    )
    return attributes["PK"]["S"], attributes["SK"]["S"]


class PartialBatches:
    """Answers ``BatchWriteItem`` by writing only the requests ``keep`` selects, for real,
    and returning the others as ``UnprocessedItems``; other requests pass through."""

    def __init__(self, side_client: Any, keep: Callable[[int, list[dict[str, Any]]], int]) -> None:
        self._client = side_client
        self._keep = keep
        self.batches = 0

    def __call__(self, request: Any) -> Any:
        if b"BatchWriteItem" not in request.headers.get("X-Amz-Target", b""):
            return None
        self.batches += 1
        ((table, requests),) = json.loads(request.body)["RequestItems"].items()
        kept = self._keep(self.batches, requests)
        if kept == len(requests):
            return None
        processed, unprocessed = requests[:kept], requests[kept:]
        if processed:
            self._client.batch_write_item(
                RequestItems={table: [_from_wire_request(r) for r in processed]}
            )
        return json_response(request.url, {"UnprocessedItems": {table: unprocessed}})


@pytest.fixture
def side_client(endpoint: str) -> Iterator[Any]:
    """A plain botocore client on DynamoDB Local, outside the store and its fault injection."""
    client: Any = botocore.session.get_session().create_client(
        "dynamodb", endpoint_url=endpoint, region_name=REGION
    )
    yield client
    client.close()


@pytest.fixture
def store(make_cache_store: Callable[..., DynamoDBCacheStore[Any]]) -> DynamoDBCacheStore[Any]:
    return make_cache_store()


def make_items(store: DynamoDBCacheStore[Any], clock: FakeClock, count: int) -> list[CacheItem]:
    model = store._model(CacheItem)
    return [
        model.build(
            store._namespace, f"k{i}", encode_value({"i": i}), now_ms=clock(), ttl_seconds=600
        )
        for i in range(count)
    ]


def write_all(writer: BatchWriter, items: list[CacheItem]) -> None:
    """Put every item through ``writer``, flushing at the end."""
    with writer:
        for item in items:
            writer.put(item)


def stored(store: DynamoDBCacheStore[Any], count: int) -> list[int]:
    """The indices of ``k0 .. k<count-1>`` present in the table, each checked for its value."""
    present = []
    for i in range(count):
        value = store.get(f"k{i}")
        if value is not None:
            assert value == {"i": i}
            present.append(i)
    return present


def halve_first(sends: int) -> Callable[[int, list[dict[str, Any]]], int]:
    """The first ``sends`` batch requests process half their items (rounded down)."""
    return lambda batch, requests: len(requests) // 2 if batch <= sends else len(requests)


def test_unprocessed_items_are_resent_with_backoff_until_all_are_written(
    store: DynamoDBCacheStore[Any],
    clock: FakeClock,
    inject: Callable[[Any], Injector],
    side_client: Any,
) -> None:
    items = make_items(store, clock, 60)
    injector = inject(store)
    injector.default = PartialBatches(side_client, halve_first(3))
    sleeps: list[float] = []
    writer = BatchWriter(
        store._model(CacheItem), max_retries=3, retry_delay_ms=50, sleep=sleeps.append
    )
    write_all(writer, items)
    # 25 items: 12 written, 13 resent; 6 written, 7 resent; 3 written, 4 resent and written.
    # Then 25 and 10 in one request each.
    assert injector.sent.count("BatchWriteItem") == 4 + 1 + 1
    assert writer.written == 60
    assert len(sleeps) == 3
    for attempt, slept in enumerate(sleeps):
        assert 0 < slept <= 0.05 * 2**attempt  # full jitter under the doubling cap
    assert stored(store, 60) == list(range(60))


def test_items_left_unprocessed_are_named_by_the_error_and_absent(
    store: DynamoDBCacheStore[Any],
    clock: FakeClock,
    inject: Callable[[Any], Injector],
    side_client: Any,
) -> None:
    items = make_items(store, clock, 30)
    stuck = {(items[i].pk, items[i].sk) for i in (12, 15)}

    def all_but_stuck(batch: int, requests: list[dict[str, Any]]) -> int:
        requests.sort(key=lambda r: _key(r) in stuck)  # the stuck ones last: left unprocessed
        return sum(_key(r) not in stuck for r in requests)

    injector = inject(store)
    injector.default = PartialBatches(side_client, all_but_stuck)
    sleeps: list[float] = []
    writer = BatchWriter(
        store._model(CacheItem), batch_size=10, max_retries=2, retry_delay_ms=1, sleep=sleeps.append
    )
    with pytest.raises(UnprocessedItemsError) as caught:
        write_all(writer, items)
    error = caught.value
    assert isinstance(error, ThrottlingError)
    assert error.unprocessed_keys == [(items[12].pk, items[12].sk), (items[15].pk, items[15].sk)]
    assert (error.operation, error.table) == ("BatchWriteItem", store.table_name)
    message = str(error)
    assert message.startswith("2 batch items still unprocessed after 2 retries")
    assert items[12].pk in message
    assert items[15].pk in message
    # k0-k9 in one request; k10-k19 in one request and two resends; k20-k29 never queued.
    assert injector.sent.count("BatchWriteItem") == 1 + 3
    assert len(sleeps) == 2
    assert writer.written == 18
    assert writer.pending == 0
    assert stored(store, 30) == [i for i in range(20) if i not in (12, 15)]


def test_a_pacer_slows_the_requests_while_items_come_back_unprocessed(
    store: DynamoDBCacheStore[Any],
    clock: FakeClock,
    inject: Callable[[Any], Injector],
    side_client: Any,
) -> None:
    items = make_items(store, clock, 60)
    injector = inject(store)
    injector.default = PartialBatches(side_client, halve_first(3))
    pacer = AdaptiveDelayCalculator(base_delay_ms=10, max_delay_ms=1000, jitter=False)
    sleeps: list[float] = []
    write_all(
        BatchWriter(store._model(CacheItem), retry_delay_ms=1, sleep=sleeps.append, pacer=pacer),
        items,
    )
    # Three partial answers grow the delay 10 -> 20 -> 40 ms; three whole ones shrink it
    # 20 -> 10 -> 0. The pacer's delay exceeds the 1 ms backoff on every resend.
    assert sleeps == [0.01, 0.02, 0.04, 0.02, 0.01]
    assert pacer.current_delay_ms == 0
    assert injector.sent.count("BatchWriteItem") == 6
    assert stored(store, 60) == list(range(60))


def test_a_later_request_for_a_queued_key_replaces_it(
    store: DynamoDBCacheStore[Any], clock: FakeClock, inject: Callable[[Any], Injector]
) -> None:
    model = store._model(CacheItem)
    replacement, other = make_items(store, clock, 2)
    store.set("k1", {"i": 1}, 600)
    first = model.build(
        store._namespace, "k0", encode_value("stale"), now_ms=clock(), ttl_seconds=600
    )
    injector = inject(store)
    with BatchWriter(model) as writer:
        writer.put(first)
        writer.delete(other)
        writer.put(replacement)  # same key as ``first``: DynamoDB refuses both in one batch
        writer.delete(other)
        assert writer.pending == 2
    assert injector.sent == ["BatchWriteItem"]
    assert writer.written == 2
    assert stored(store, 2) == [0]


def test_an_item_above_the_size_limit_is_refused_before_it_is_queued(
    store: DynamoDBCacheStore[Any], clock: FakeClock, inject: Callable[[Any], Injector]
) -> None:
    model = store._model(CacheItem)
    payload = os.urandom(MAX_ITEM_BYTES)
    huge = model.build(
        store._namespace,
        "huge",
        EncodedValue(payload, Encoding.JSON, len(payload)),
        now_ms=clock(),
        ttl_seconds=600,
    )
    injector = inject(store)
    with BatchWriter(model) as writer, pytest.raises(ItemTooLargeError) as caught:
        writer.put(huge)
    assert caught.value.size_bytes > MAX_ITEM_BYTES
    assert writer.pending == 0
    assert injector.sent == []
