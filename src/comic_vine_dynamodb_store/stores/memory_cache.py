"""``InMemoryCacheStore``: the cache contract in one process, for tests and single-process use.

The in-memory twin of :class:`~comic_vine_dynamodb_store.stores.cache.DynamoDBCacheStore`
(the TypeScript original ships the same pair). It keeps the DynamoDB store's observable
behaviour rather than a dict's, so code tested against it behaves the same in production:

* values are stored *encoded* with the shared codec, so the same values are refused with the
  same errors, a caller mutating its object after ``set`` does not change the cached value, and
  every ``get`` returns a fresh object;
* expiry is exact to the millisecond on the injected clock (``ttl_seconds=0`` never expires),
  and an expired item not removed yet is a miss and counts as expired, never as live;
* ``get_stats`` reports the same stored payload sizes the DynamoDB store does;
* ``get`` sends the same ``cache_hit`` / ``cache_miss`` / ``cache_decode_error`` signals.

Nothing is shared between processes: a second process has its own, empty cache.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from blinker import NamedSignal
from pydantic import TypeAdapter

from comic_vine_dynamodb_store.clock import Clock, system_clock_ms
from comic_vine_dynamodb_store.config import InMemoryCacheStoreOptions
from comic_vine_dynamodb_store.errors import (
    StoreClosedError,
)
from comic_vine_dynamodb_store.keys import validate_key
from comic_vine_dynamodb_store.models.cache import expiry_for_ttl
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.serialization import (
    Encoding,
    type_adapter_for,
)
from comic_vine_dynamodb_store.stores.base import InMemoryStore, PeriodicTask
from comic_vine_dynamodb_store.stores.cache_core import encode_for_set, read_value
from comic_vine_dynamodb_store.stores.contracts import CacheStats

__all__ = ["InMemoryCacheStore"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Entry:
    """One stored value: the encoded bytes (immutable, so reads can decode outside the lock)."""

    payload: bytes
    encoding: Encoding
    expires_at_ms: int | None

    def is_expired(self, now_ms: int) -> bool:
        # Same rule as StoreItem.is_expired: expired from the exact expiry millisecond on.
        return self.expires_at_ms is not None and now_ms >= self.expires_at_ms


class InMemoryCacheStore(InMemoryStore, Generic[T]):
    """A TTL cache of JSON values (and pydantic models) held in this process.

    ``value_type`` (anything pydantic's ``TypeAdapter`` takes) validates values on read: a
    stored value that does not match is reported through ``cache_decode_error`` and read as a
    miss. ``cleanup_interval_ms`` (default 0 here: a process-local cache rarely needs it, and
    tests must not race a thread) runs :meth:`cleanup` in a daemon thread that :meth:`close`
    stops. Every method is thread-safe; one lock guards the items, and signals are sent after
    it is released so a receiver may use the store.
    """

    store_name: ClassVar[str] = "memory-cache"
    """What signals report as the table: there is none, but receivers expect the field."""

    def __init__(
        self,
        *,
        value_type: Any = None,
        max_value_bytes: int = 16 * 1024 * 1024,
        cleanup_interval_ms: int = 0,
        clock: Clock = system_clock_ms,
    ) -> None:
        self.options = InMemoryCacheStoreOptions(
            max_value_bytes=max_value_bytes, cleanup_interval_ms=cleanup_interval_ms
        )
        self._adapter: TypeAdapter[Any] | None = type_adapter_for(value_type)
        self._max_value_bytes = self.options.max_value_bytes
        self._clock = clock
        super().__init__()
        self._items: dict[str, _Entry] = {}
        self._cleanup_task: PeriodicTask | None = (
            PeriodicTask(f"{self.store_name}-cleanup", cleanup_interval_ms, self._periodic_cleanup)
            if cleanup_interval_ms > 0
            else None
        )

    # -- the cache contract ------------------------------------------------------------------

    def get(self, key: str) -> T | None:
        """The live value of ``key``, or None (absent, expired or undecodable)."""
        validate_key(key)
        with self._lock:
            self._check_open("get")
            entry = self._items.get(key)
            if entry is not None and entry.is_expired(self._clock()):
                entry = None
        value: T | None = read_value(
            self,
            store=self.store_name,
            table=self.table_name,
            key=key,
            stored=None if entry is None else (entry.payload, entry.encoding),
            value_type=self._adapter,
        )
        return value

    def set(self, key: str, value: T, ttl_seconds: float) -> None:
        """Store ``value`` under ``key`` for ``ttl_seconds`` (0: never expires).

        Checked in the DynamoDB store's order, before anything changes: a bad key raises
        ``InvalidKeyError``, a negative TTL ``ValueError``, a value JSON cannot hold
        ``TypeError``/``ValueError``, one above ``max_value_bytes`` ``ItemTooLargeError``; in
        each case the previous value (if any) stays. Values larger than one DynamoDB item are
        accepted, as the DynamoDB store chunks them.
        """
        encoded = encode_for_set(
            key, value, ttl_seconds, max_value_bytes=self._max_value_bytes, table=self.table_name
        )
        with self._lock:
            self._check_open("set")
            # The clock is read under the lock so expiries follow the order of the writes.
            expires_at_ms = expiry_for_ttl(self._clock(), ttl_seconds)
            self._items[key] = _Entry(encoded.payload, encoded.encoding, expires_at_ms)

    def delete(self, key: str) -> None:
        """Remove ``key``; deleting an absent key is not an error."""
        validate_key(key)
        with self._lock:
            self._check_open("delete")
            self._items.pop(key, None)

    def clear(self) -> None:
        """Remove every item."""
        with self._lock:
            self._check_open("clear")
            self._items.clear()

    def cleanup(self) -> int:
        """Remove the expired items now; returns how many were removed."""
        with self._lock:
            self._check_open("cleanup")
            now = self._clock()
            expired = [key for key, entry in self._items.items() if entry.is_expired(now)]
            for key in expired:
                del self._items[key]
            return len(expired)

    def get_stats(self) -> CacheStats:
        """Live and expired item counts and the stored (encoded) size of the live values."""
        with self._lock:
            self._check_open("get_stats")
            now = self._clock()
            live = expired = size = 0
            for entry in self._items.values():
                if entry.is_expired(now):
                    expired += 1
                else:
                    live += 1
                    size += len(entry.payload)
        return CacheStats(total_items=live, expired_items=expired, estimated_size_bytes=size)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the items and stop background cleanup; later calls raise ``StoreClosedError``.

        Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._items.clear()
        # Outside the lock: a cleanup run in progress needs it to finish, and stop() waits.
        if self._cleanup_task is not None:
            self._cleanup_task.stop()

    # -- internals ---------------------------------------------------------------------------

    def _periodic_cleanup(self) -> None:
        # The background thread may wake just as close() runs; that is not an error to log.
        with contextlib.suppress(StoreClosedError):
            self.cleanup()

    def _announce(self, signal: NamedSignal, key: str, error: str | None = None) -> None:
        signals.send(
            signal,
            self,
            lambda: signals.CacheEvent(
                store=self.store_name, table=self.table_name, key=key, error=error
            ),
        )
