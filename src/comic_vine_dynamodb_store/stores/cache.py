"""``DynamoDBCacheStore``: a TTL cache shared by every process using the table.

A value that fits one item (400 KB, after compression) is one item. A larger one, up to
``max_value_bytes`` stored, is chunked under the same ``PK``: its pieces are written first
(``CHUNK#<version>#<index>``), then the head item naming the version, the chunk count and the
SHA-256 of the whole payload. A reader takes the head, then the chunks of its version, and
checks count and digest; when a concurrent ``set`` replaced the value meanwhile (and removed
the old chunks) it reads the head again, so it returns the old value or the new one, never a
mix and never a partial one. The writer that replaces a chunked head deletes the old
version's chunks; chunks also expire with their value.

Costs (DynamoDB requests per call): ``get`` 1 (a consistent GetItem, so a value set by any
process is seen at once), 2 for a chunked value up to 1 MB stored (one Query returns the
chunks; one more per further MB), ``set`` 1 (PutItem; one more when it replaces a chunked
value, plus the deletion of that value's chunks), a chunked ``set`` one BatchWriteItem per 25
chunks of 384 KB plus the PutItem of its head, ``delete`` 1 (DeleteItem; a chunked value's
chunks are deleted too). Chunks share their value's partition: on provisioned or busy tables,
a value of many megabytes is written at that partition's write rate. ``get_stats`` reads
the 16 GSI1 shards of the cache (1 Query each, more when a shard pages); ``cleanup`` queries
only the expired range of each shard and deletes each expired item with a conditional
DeleteItem, so a value set again meanwhile is never removed; ``clear`` queries every shard and
deletes in batches of ``batch_size``, resending unprocessed items after a backoff. None of
them scans the table.

Expiry is exact to the millisecond (``ExpiresAt``); an expired item DynamoDB has not deleted
yet is a miss and is counted as expired, never as live.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import TypeAdapter

from comic_vine_dynamodb_store.clock import Clock, system_clock_ms
from comic_vine_dynamodb_store.config import CacheStoreOptions
from comic_vine_dynamodb_store.errors import StoreUnavailableError
from comic_vine_dynamodb_store.models import CacheChunk, CacheItem
from comic_vine_dynamodb_store.resilience.batching import BatchWriter
from comic_vine_dynamodb_store.serialization import (
    MAX_ITEM_BYTES,
    check_item_size,
    item_size,
    type_adapter_for,
)
from comic_vine_dynamodb_store.stores.base import DynamoDBStore, falls_back, miss, skipped
from comic_vine_dynamodb_store.stores.cache_core import encode_for_set, read_value
from comic_vine_dynamodb_store.stores.contracts import CacheStats

__all__ = ["DynamoDBCacheStore"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

CHUNK_PAYLOAD_BYTES = 384_000
"""Payload bytes per chunk: with its keys and index attributes a chunk stays under 400 KB."""
_HEAD_ATTEMPTS = 8


class DynamoDBCacheStore(DynamoDBStore[CacheStoreOptions], Generic[T]):
    """A cache of JSON values (and pydantic models) in the shared table.

    ``value_type`` (anything pydantic's ``TypeAdapter`` takes) validates values on read: a
    stored value that does not match is reported through ``cache_decode_error`` and read as a
    miss. ``cleanup_interval_ms`` (default 5 minutes, 0 disables) runs :meth:`cleanup` in a
    daemon thread that :meth:`close` stops.
    """

    options_model: ClassVar[type[CacheStoreOptions]] = CacheStoreOptions
    store_name: ClassVar[str] = "cache"
    item_model: ClassVar[type[CacheItem]] = CacheItem

    def __init__(
        self,
        *,
        value_type: Any = None,
        options: CacheStoreOptions | None = None,
        clock: Clock = system_clock_ms,
        **kwargs: Any,
    ) -> None:
        super().__init__(options=options, clock=clock, **kwargs)
        self._adapter: TypeAdapter[Any] | None = type_adapter_for(value_type)
        self._items = self._model(CacheItem)
        self._chunks = self._model(CacheChunk)  # held: binding a model per call costs a client
        self._start_background("cleanup", self.options.cleanup_interval_ms, self.cleanup)

    @falls_back(miss)
    def get(self, key: str) -> T | None:
        """The live value of ``key``, or None (absent, expired or undecodable)."""
        pk, sk = CacheItem.key_of(self._namespace, key)
        now = self._now_ms()

        def read() -> tuple[tuple[bytes, str] | None, str | None]:
            head = self._items.get_live(pk, sk, now_ms=now)
            for _ in range(2):
                if head is None:
                    return None, None
                if head.chunk_count is None or head.version is None:
                    return (head.data or b"", head.encoding), None
                payload = self._read_chunks(pk, head)
                if payload is not None:
                    return (payload, head.encoding), None
                # Replaced while we read (its chunks removed): the head now names the new one.
                again = self._items.get_live(pk, sk, now_ms=now)
                if again is not None and again.version == head.version:
                    break
                head = again
            return None, "chunked value incomplete: chunks missing or not matching its digest"

        stored, broken = self._run("get", read, key=key)
        value: T | None = read_value(
            self,
            store=self.store_name,
            table=self.table_name,
            key=key,
            stored=stored,
            value_type=self._adapter,
            broken=broken,
        )
        return value

    @falls_back(skipped)
    def set(self, key: str, value: T, ttl_seconds: float) -> None:
        """Store ``value`` under ``key`` for ``ttl_seconds`` (0: never expires).

        Everything is checked before the request: a negative TTL raises ``ValueError``, a bad
        key ``InvalidKeyError``, a value JSON cannot hold ``TypeError``/``ValueError``, one
        above ``max_value_bytes`` ``ItemTooLargeError``; in each case nothing is written.
        """
        encoded = encode_for_set(
            key,
            value,
            ttl_seconds,
            max_value_bytes=self.options.max_value_bytes,
            table=self.table_name,
        )
        now = self._now_ms()
        item = self._items.build(self._namespace, key, encoded, now_ms=now, ttl_seconds=ttl_seconds)
        attributes = item.serialize()
        if item_size(attributes) <= MAX_ITEM_BYTES:
            self._run("set", lambda: self._put_head(attributes), key=key)
            return
        self._run("set", lambda: self._set_chunked(key, item, encoded.payload), key=key)

    @falls_back(skipped)
    def delete(self, key: str) -> None:
        """Remove ``key`` (a chunked value's chunks too); deleting an absent key is not an error."""
        pk, sk = CacheItem.key_of(self._namespace, key)
        items = self._items

        def remove() -> None:
            # The common case, a value in one item, is one request: the condition only fails
            # for a chunked head, and then returns it (small: it holds no payload).
            condition = items.chunk_count.does_not_exist()
            for _ in range(_HEAD_ATTEMPTS):
                outcome = items.delete_unless_blocked(pk, sk, condition=condition)
                if not outcome.blocked or outcome.raw is None:
                    return
                old = outcome.raw
                condition = items.version == old["Version"]["S"]
                outcome = items.delete_unless_blocked(pk, sk, condition=condition)
                if not outcome.blocked:
                    self._delete_chunks(pk, old)
                    return
                condition = items.chunk_count.does_not_exist()
            raise_contended("delete", key, self.table_name)

        self._run("delete", remove, key=key)

    # -- chunked values -----------------------------------------------------------------------

    def _put_head(self, attributes: Mapping[str, Any]) -> None:
        """Write a head (or a one-item value), deleting the chunks of the chunked value it
        replaces, if any. One request unless it replaces a chunked value."""
        items = self._items
        pk = attributes["PK"]["S"]
        condition = items.chunk_count.does_not_exist()
        for _ in range(_HEAD_ATTEMPTS):
            outcome = items.put_unless_blocked(attributes, condition=condition, raw=True)
            if not outcome.blocked:
                return
            old = outcome.raw
            if old is None:  # gone meanwhile: write again on the first condition
                condition = items.chunk_count.does_not_exist()
                continue
            mine = attributes.get("Version", {}).get("S")
            if mine is not None and old["Version"]["S"] == mine:
                # Our own head: an earlier send landed and its answer was lost (a retry).
                return
            # The value being replaced is chunked: replace exactly that version, then remove
            # its chunks (they would otherwise outlive it until their own expiry, or forever).
            outcome = items.put_unless_blocked(
                attributes, condition=items.version == old["Version"]["S"], raw=True
            )
            if not outcome.blocked:
                self._delete_chunks(pk, old)
                return
            condition = items.chunk_count.does_not_exist()
        raise_contended("set", pk, self.table_name)

    def _set_chunked(self, key: str, head: CacheItem, payload: bytes) -> None:
        """Write ``payload`` as chunks, then ``head`` (the item built for the value, which
        becomes the head naming them)."""
        version = uuid.uuid4().hex
        expires = head.expires_at_ms_int
        pieces = [
            payload[start : start + CHUNK_PAYLOAD_BYTES]
            for start in range(0, len(payload), CHUNK_PAYLOAD_BYTES)
        ]
        chunks = self._chunks
        with self._batch_writer(chunks) as batch:
            for index, piece in enumerate(pieces):
                chunk = chunks.build(
                    self._namespace,
                    key,
                    version=version,
                    index=index,
                    data=piece,
                    expires_at_ms=expires,
                )
                attributes = chunk.serialize()
                check_item_size(
                    attributes, limit_bytes=MAX_ITEM_BYTES, operation="set", table=self.table_name
                )
                batch.put_serialized(attributes)
        head.data = None
        head.chunk_count = len(pieces)
        head.version = version
        head.digest = hashlib.sha256(payload).hexdigest()
        self._put_head(head.serialize())

    def _read_chunks(self, pk: str, head: CacheItem) -> bytes | None:
        """The payload ``head`` names, or None if its chunks are incomplete or do not match
        its digest (the value was replaced or removed while being read)."""
        chunks = self._chunks
        prefix = CacheChunk.sort_key_prefix(str(head.version))
        pieces = [
            bytes(chunk.data)
            for chunk in chunks.query(
                pk, range_key_condition=chunks.sk.startswith(prefix), consistent_read=True
            )
        ]
        payload = b"".join(pieces)
        if (
            len(pieces) != int(head.chunk_count or 0)
            or hashlib.sha256(payload).hexdigest() != head.digest
        ):
            return None
        return payload

    def _delete_chunks(self, pk: str, head: Mapping[str, Any]) -> None:
        """Delete the chunks a replaced or deleted head named (their keys follow from it)."""
        keys = self._chunk_keys(pk, head["Version"]["S"], int(head["Chunks"]["N"]))
        with self._batch_writer(self._chunks) as batch:
            for chunk in keys:
                batch.delete(chunk)

    def _chunk_keys(self, pk: str, version: str, count: int) -> list[CacheChunk]:
        """The chunks of ``version`` (keys only: enough to delete them)."""
        prefix = CacheChunk.sort_key_prefix(version)
        return [self._chunks(pk, f"{prefix}{index:05d}") for index in range(count)]

    def clear(self) -> None:
        """Remove every cache item of this store's namespace (other entities are untouched)."""

        def clear_all() -> None:
            with self._batch_writer() as batch:
                for item in self._items.iter_index(self._namespace):
                    batch.delete(item)
                    if item.chunk_count is not None and item.version is not None:
                        for chunk in self._chunk_keys(item.pk, item.version, int(item.chunk_count)):
                            batch.delete(chunk)

        self._run("clear", clear_all, bounded=False)

    def cleanup(self) -> int:
        """Remove the expired values now (a chunked value's chunks with its head); returns how
        many items were removed."""

        def chunks_of(head: CacheItem) -> int:
            if head.chunk_count is None or head.version is None:
                return 0
            count = int(head.chunk_count)
            with self._batch_writer(self._chunks) as batch:
                for chunk in self._chunk_keys(head.pk, head.version, count):
                    batch.delete(chunk)
            return count

        return self._remove_expired(self._items, chunks_of)

    def get_stats(self) -> CacheStats:
        """Live and expired item counts and the stored size of the live values."""
        now = self._now_ms()

        def count() -> CacheStats:
            live = expired = size = 0
            for item in self._items.iter_index(self._namespace):
                if item.is_expired(now):
                    expired += 1
                else:
                    live += 1
                    size += int(item.stored_bytes)
            return CacheStats(total_items=live, expired_items=expired, estimated_size_bytes=size)

        return self._run("get_stats", count, bounded=False)

    def _batch_writer(self, model: type[Any] | None = None) -> BatchWriter:
        return BatchWriter(
            self._items if model is None else model,
            batch_size=self.options.batch_size,
            max_retries=self.options.max_retries,
            retry_delay_ms=self.options.retry_delay_ms,
        )


def raise_contended(operation: str, key: str, table: str) -> None:
    """Give up on a head that kept changing under us (other writers won every race)."""
    raise StoreUnavailableError(
        f"{key!r} kept changing during {operation}; try again",
        operation=operation,
        table=table,
    )
