"""Values above one DynamoDB item: chunked under the value's key, read whole or not at all."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pynamodb.connection import Connection

from comic_vine_dynamodb_store.clock import system_clock_ms
from comic_vine_dynamodb_store.errors import ItemTooLargeError
from comic_vine_dynamodb_store.models import CacheChunk, CacheItem
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.serialization import MAX_ITEM_BYTES
from comic_vine_dynamodb_store.stores.cache import CHUNK_PAYLOAD_BYTES, DynamoDBCacheStore
from tests.support import FakeClock

REGION = "us-east-1"

Store = DynamoDBCacheStore[Any]


@pytest.fixture
def raw(endpoint: str) -> Any:
    return Connection(region=REGION, host=endpoint).client


@pytest.fixture
def operations() -> Iterator[list[signals.OperationEvent]]:
    seen: list[signals.OperationEvent] = []

    def record(sender: Any, event: signals.OperationEvent) -> None:
        seen.append(event)

    with signals.operation_completed.connected_to(record):
        yield seen


def comic_vine_page(size_bytes: int, seed: int = 0) -> dict[str, Any]:
    """A Comic Vine-shaped list page of about ``size_bytes`` of JSON that compresses like a
    real one: descriptions drawn from a few hundred sentences, so 3 MB becomes about 700 KB."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(3000)]
    sentences = [" ".join(rng.choices(words, k=12)) + "." for _ in range(500)]
    results: list[dict[str, Any]] = []
    total = 0
    while total < size_bytes:
        text = " ".join(rng.choices(sentences, k=30))
        number = len(results) + 1
        results.append({"id": number, "name": f"Issue {number}", "description": text})
        total += len(text) + 60
    return {"error": "OK", "status_code": 1, "results": results}


def chunk_items(raw: Any, table: str, key: str) -> list[dict[str, Any]]:
    pk, _ = CacheItem.key_of("", key)
    items: list[dict[str, Any]] = raw.query(
        TableName=table,
        KeyConditionExpression="PK = :pk AND begins_with(SK, :chunk)",
        ExpressionAttributeValues={":pk": {"S": pk}, ":chunk": {"S": CacheChunk.CHUNK_PREFIX}},
        ConsistentRead=True,
        ProjectionExpression="SK, ExpiresAt",
    )["Items"]
    return items


def test_a_3_mb_page_above_the_item_limit_after_compression_round_trips(
    make_cache_store: Callable[..., Store],
    operations: list[signals.OperationEvent],
    raw: Any,
    table_name: str,
    clock: FakeClock,
) -> None:
    page = comic_vine_page(3_100_000)
    encoded = json.dumps(page, separators=(",", ":")).encode()
    assert len(encoded) > 3_000_000
    compressed = len(zlib.compress(encoded))
    assert MAX_ITEM_BYTES < compressed < 1_000_000  # one item cannot hold it; two chunks do
    store = make_cache_store()
    store.set("GET /api/issues/?offset=0", page, 3600)
    set_requests = operations[-1].requests
    assert operations[-1].operation == "set"
    chunks = chunk_items(raw, table_name, "GET /api/issues/?offset=0")
    assert len(chunks) >= 2
    # Chunks are written in one batch, then the head: two requests for up to 25 chunks.
    assert set_requests == 2
    assert {int(c["ExpiresAt"]["N"]) for c in chunks} == {clock.now_ms + 3_600_000}
    assert store.get("GET /api/issues/?offset=0") == page
    assert operations[-1].requests == 2  # the head, then one Query for chunks under 1 MB
    stats = store.get_stats()
    assert stats.total_items == 1
    assert MAX_ITEM_BYTES < stats.estimated_size_bytes < 1_000_000  # the stored, compressed size


def test_replacing_or_deleting_a_chunked_value_removes_its_chunks(
    make_cache_store: Callable[..., Store], raw: Any, table_name: str
) -> None:
    store = make_cache_store()
    first, second = comic_vine_page(2_500_000, seed=1), comic_vine_page(2_000_000, seed=2)
    store.set("k", first, 0)
    first_chunks = {c["SK"]["S"] for c in chunk_items(raw, table_name, "k")}
    store.set("k", second, 0)
    second_chunks = {c["SK"]["S"] for c in chunk_items(raw, table_name, "k")}
    assert first_chunks.isdisjoint(second_chunks)
    assert store.get("k") == second
    store.set("k", {"small": True}, 0)
    assert chunk_items(raw, table_name, "k") == []
    assert store.get("k") == {"small": True}
    store.set("k", first, 0)
    assert chunk_items(raw, table_name, "k") != []
    store.delete("k")
    assert chunk_items(raw, table_name, "k") == []
    assert store.get("k") is None


def test_a_value_missing_a_chunk_is_a_miss_reported_as_a_decode_error(
    make_cache_store: Callable[..., Store], raw: Any, table_name: str
) -> None:
    store = make_cache_store()
    store.set("k", comic_vine_page(2_000_000), 60)
    pk, _ = CacheItem.key_of("", "k")
    victim = chunk_items(raw, table_name, "k")[0]["SK"]
    raw.delete_item(TableName=table_name, Key={"PK": {"S": pk}, "SK": victim})
    errors: list[signals.CacheEvent] = []

    def record(sender: Any, event: signals.CacheEvent) -> None:
        errors.append(event)

    with signals.cache_decode_error.connected_to(record):
        assert store.get("k") is None
    assert len(errors) == 1
    assert errors[0].error is not None
    assert "incomplete" in errors[0].error


def test_clear_and_cleanup_reach_chunks(
    make_cache_store: Callable[..., Store], raw: Any, table_name: str, clock: FakeClock
) -> None:
    store = make_cache_store()
    store.set("short", comic_vine_page(2_000_000, seed=3), 1)
    store.set("kept", comic_vine_page(2_000_000, seed=4), 0)
    short_chunks = len(chunk_items(raw, table_name, "short"))
    assert short_chunks >= 2
    clock.advance(2000)
    assert store.cleanup() == 1 + short_chunks  # the head and every chunk of the value
    assert chunk_items(raw, table_name, "short") == []
    assert store.get("kept") is not None
    store.clear()
    assert chunk_items(raw, table_name, "kept") == []
    assert store.get_stats().total_items == 0


def test_above_max_value_bytes_nothing_is_written(
    make_cache_store: Callable[..., Store],
    operations: list[signals.OperationEvent],
    raw: Any,
    table_name: str,
) -> None:
    store = make_cache_store(max_value_bytes=500_000)  # stored bytes: about 580 KB here
    with pytest.raises(ItemTooLargeError, match="max_value_bytes"):
        store.set("k", comic_vine_page(2_500_000), 60)
    assert operations == []
    assert chunk_items(raw, table_name, "k") == []
    assert store.get("k") is None


def test_readers_see_the_old_or_the_new_value_while_a_writer_replaces_it(
    make_cache_store: Callable[..., Store],
) -> None:
    versions = [comic_vine_page(2_000_000, seed=seed) for seed in range(3)]
    digests = {hashlib.sha256(json.dumps(v).encode()).hexdigest() for v in versions}
    writer = make_cache_store(clock=system_clock_ms)
    readers = [make_cache_store(clock=system_clock_ms) for _ in range(4)]
    writer.set("page", versions[0], 0)
    stop = threading.Event()
    seen: list[str | None] = []
    lock = threading.Lock()

    def read(store: Store) -> None:
        while not stop.is_set():
            value = store.get("page")
            digest = (
                None if value is None else hashlib.sha256(json.dumps(value).encode()).hexdigest()
            )
            with lock:
                seen.append(digest)

    threads = [threading.Thread(target=read, args=(reader,)) for reader in readers]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(12):
            writer.set("page", versions[round_ % 3], 0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    values = [digest for digest in seen if digest is not None]
    # Never a mix: every value read is one that was written. A read overtaken by two
    # replacements may miss (it re-reads the head once), but most reads find a value.
    assert set(values) <= digests
    assert len(values) >= len(seen) / 2
    assert len(values) >= 8
    assert CHUNK_PAYLOAD_BYTES < MAX_ITEM_BYTES
