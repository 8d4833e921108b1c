"""``DynamoDBCacheStore``: a TTL cache shared by every process using the table.

Costs (DynamoDB requests per call): ``get`` 1 (a consistent GetItem, so a value set by any
process is seen at once), ``set`` 1 (PutItem), ``delete`` 1 (DeleteItem). ``get_stats`` reads
the 16 GSI1 shards of the cache (1 Query each, more when a shard pages); ``cleanup`` queries
only the expired range of each shard and deletes each expired item with a conditional
DeleteItem, so a value set again meanwhile is never removed; ``clear`` queries every shard and
deletes in batches of ``batch_size``, resending unprocessed items after a backoff. None of
them scans the table.

Expiry is exact to the millisecond (``ExpiresAt``); an expired item DynamoDB has not deleted
yet is a miss and is counted as expired, never as live.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import TypeAdapter

from comic_vine_dynamodb_store.clock import Clock, system_clock_ms
from comic_vine_dynamodb_store.config import CacheStoreOptions
from comic_vine_dynamodb_store.models import CacheItem
from comic_vine_dynamodb_store.resilience.batching import BatchWriter
from comic_vine_dynamodb_store.serialization import (
    MAX_ITEM_BYTES,
    check_item_size,
)
from comic_vine_dynamodb_store.stores.base import DynamoDBStore
from comic_vine_dynamodb_store.stores.cache_core import encode_for_set, read_value
from comic_vine_dynamodb_store.stores.contracts import CacheStats

__all__ = ["DynamoDBCacheStore"]

_log = logging.getLogger(__name__)

T = TypeVar("T")


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
        self._adapter: TypeAdapter[Any] | None = (
            TypeAdapter(value_type) if value_type is not None else None
        )
        self._items = self._model(CacheItem)
        self._start_background("cleanup", self.options.cleanup_interval_ms, self.cleanup)

    def get(self, key: str) -> T | None:
        """The live value of ``key``, or None (absent, expired or undecodable)."""
        pk, sk = CacheItem.key_of(self._namespace, key)
        now = self._now_ms()
        item = self._run("get", lambda: self._items.get_live(pk, sk, now_ms=now), key=key)
        value: T | None = read_value(
            self,
            store=self.store_name,
            table=self.table_name,
            key=key,
            stored=None if item is None else (item.data, item.encoding),
            value_type=self._adapter,
        )
        return value

    def set(self, key: str, value: T, ttl_seconds: float) -> None:
        """Store ``value`` under ``key`` for ``ttl_seconds`` (0: never expires).

        Everything is checked before the request: a negative TTL raises ``ValueError``, a bad
        key ``InvalidKeyError``, a value JSON cannot hold ``TypeError``/``ValueError``, one
        too large ``ItemTooLargeError``; in each case nothing is written.
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
        check_item_size(
            attributes, limit_bytes=MAX_ITEM_BYTES, operation="set", table=self.table_name
        )
        self._run("set", lambda: self._items.put_serialized(attributes), key=key)

    def delete(self, key: str) -> None:
        """Remove ``key``; deleting an absent key is not an error."""
        pk, sk = CacheItem.key_of(self._namespace, key)
        self._run("delete", self._items(pk, sk).delete, key=key)

    def clear(self) -> None:
        """Remove every cache item of this store's namespace (other entities are untouched)."""

        def clear_all() -> None:
            with self._batch_writer() as batch:
                for item in self._items.iter_index(self._namespace):
                    batch.delete(item)

        self._run("clear", clear_all, bounded=False)

    def cleanup(self) -> int:
        """Remove the expired items now; returns how many were removed."""
        return self._remove_expired(self._items)

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

    def _batch_writer(self) -> BatchWriter:
        return BatchWriter(
            self._items,
            batch_size=self.options.batch_size,
            max_retries=self.options.max_retries,
            retry_delay_ms=self.options.retry_delay_ms,
        )
