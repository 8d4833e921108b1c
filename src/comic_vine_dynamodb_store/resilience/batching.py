"""Batch writes that finish: ``batch_size`` requests per call, unprocessed items sent again.

DynamoDB's ``BatchWriteItem`` may accept only part of a batch (``UnprocessedItems``, usually
under throttling). PynamoDB resends those at once, with no backoff; :class:`BatchWriter`
resends them after a full-jitter backoff from ``retry_delay_ms``, up to ``max_retries`` times,
then raises :class:`UnprocessedItemsError` (a :class:`ThrottlingError`) naming the items it
did not write. (Each request is also retried by botocore on throttling or 5xx, as every
request is.)

:func:`calculate_optimal_batch_size` says how many items one request can carry.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from comic_vine_dynamodb_store.config import DYNAMODB_MAX_BATCH_ITEMS
from comic_vine_dynamodb_store.errors import (
    ConfigurationError,
    ItemTooLargeError,
    UnprocessedItemsError,
)
from comic_vine_dynamodb_store.serialization import MAX_ITEM_BYTES, check_item_size

if TYPE_CHECKING:
    from comic_vine_dynamodb_store.models.base import StoreItem
    from comic_vine_dynamodb_store.resilience.delay import AdaptiveDelayCalculator

__all__ = [
    "MAX_BATCH_ITEMS",
    "MAX_BATCH_REQUEST_BYTES",
    "BatchWriter",
    "calculate_optimal_batch_size",
]

MAX_BATCH_ITEMS = DYNAMODB_MAX_BATCH_ITEMS
"""Most put and delete requests one ``BatchWriteItem`` call may carry."""

MAX_BATCH_REQUEST_BYTES = 16 * 1024 * 1024
"""Most bytes of items one ``BatchWriteItem`` call may carry."""

_MAX_BACKOFF_S = 20.0
_KEYS_IN_MESSAGE = 10
AttributeMap = Mapping[str, Mapping[str, Any]]
Key = tuple[str, str]


def calculate_optimal_batch_size(
    item_sizes: Sequence[int] | None = None,
    *,
    average_item_bytes: float | None = None,
    max_items: int = MAX_BATCH_ITEMS,
) -> int:
    """Items per ``BatchWriteItem`` request: always in ``1..max_items``, within 16 MB.

    Sizes are as :func:`~comic_vine_dynamodb_store.serialization.item_size` counts them.

    * With ``item_sizes`` (the items to write): the largest ``n <= max_items`` such that the
      ``n`` largest items fit in :data:`MAX_BATCH_REQUEST_BYTES`, so any ``n`` of them do.
    * With ``average_item_bytes``: ``floor(16 MB / average)``, capped at ``max_items``.
    * With neither: ``max_items``.

    An item (or an average) above DynamoDB's 400 KB item limit raises
    :class:`ItemTooLargeError`, since no batch could carry it. As 25 items of 400 KB take
    10 MB, the item count is what binds for any valid items; the byte bound still holds by
    construction, so the answer is never 0 and never a request DynamoDB would refuse.
    """
    if isinstance(max_items, bool) or not isinstance(max_items, int):
        raise ConfigurationError(f"max_items must be an int, got {max_items!r}", field="max_items")
    if not 1 <= max_items <= MAX_BATCH_ITEMS:
        raise ConfigurationError(
            f"max_items must be in 1..{MAX_BATCH_ITEMS}, got {max_items}", field="max_items"
        )
    if item_sizes is not None and average_item_bytes is not None:
        raise ConfigurationError(
            "give item_sizes or average_item_bytes, not both", field="average_item_bytes"
        )
    if average_item_bytes is not None:
        average = Fraction(_check_size("average_item_bytes", average_item_bytes))  # exact
        if average * max_items <= MAX_BATCH_REQUEST_BYTES:
            return max_items
        return max(1, math.floor(MAX_BATCH_REQUEST_BYTES / average))
    if item_sizes is None:
        return max_items
    largest = sorted((_check_size("item_sizes", size) for size in item_sizes), reverse=True)
    total = 0.0
    for count, size in enumerate(largest[:max_items]):
        total += size
        if total > MAX_BATCH_REQUEST_BYTES:  # the `count` largest fit, one more does not
            return max(1, count)
    return max_items  # all of the largest fit: so does any batch of up to max_items


def _check_size(name: str, size: float) -> float:
    if (
        isinstance(size, bool)
        or not isinstance(size, int | float)
        or not math.isfinite(size)
        or size < 0
    ):
        raise ConfigurationError(f"{name}: sizes must be numbers >= 0, got {size!r}", field=name)
    if size > MAX_ITEM_BYTES:
        raise ItemTooLargeError(
            f"an item of {size!r} bytes is above DynamoDB's {MAX_ITEM_BYTES}-byte item limit",
            size_bytes=int(size),
            limit_bytes=MAX_ITEM_BYTES,
            operation="BatchWriteItem",
        )
    return float(size)


def _key_of(request: Mapping[str, Any]) -> Key:
    if "PutRequest" in request:
        attributes = request["PutRequest"]["Item"]
    else:
        attributes = request["DeleteRequest"]["Key"]
    return attributes["PK"]["S"], attributes["SK"]["S"]


class BatchWriter:
    """Collect puts and deletes of one bound model; send them ``batch_size`` at a time.

    Used as a context manager, it flushes on a clean exit (and drops pending work when the
    block raised, so a failure is not followed by half a batch).

    A request for a key already queued replaces the queued one, as the later write would
    have won anyway (and DynamoDB refuses a batch naming a key twice). With a ``pacer``,
    every request waits the pacer's delay first, and the pacer learns from each answer
    (items left unprocessed count as a throttle), so a bulk job slows down while DynamoDB
    throttles it; a resend waits the longer of the backoff and the pacer's delay.
    """

    def __init__(
        self,
        model: type[StoreItem],
        *,
        batch_size: int = MAX_BATCH_ITEMS,
        max_retries: int = 3,
        retry_delay_ms: int = 100,
        sleep: Callable[[float], None] = time.sleep,
        pacer: AdaptiveDelayCalculator | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not 1 <= batch_size <= MAX_BATCH_ITEMS:
            raise ConfigurationError(
                f"batch_size must be in 1..{MAX_BATCH_ITEMS}, got {batch_size}", field="batch_size"
            )
        if max_retries < 0:
            raise ConfigurationError(
                f"max_retries must be >= 0, got {max_retries}", field="max_retries"
            )
        if retry_delay_ms < 0:
            raise ConfigurationError(
                f"retry_delay_ms must be >= 0, got {retry_delay_ms}", field="retry_delay_ms"
            )
        self._model = model
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._base_delay_s = retry_delay_ms / 1000
        self._sleep = sleep
        self._pacer = pacer
        self._pending: dict[Key, dict[str, Any]] = {}
        self.written = 0
        """Requests (puts and deletes) DynamoDB has accepted so far."""

    def put(self, item: StoreItem) -> None:
        """Queue a put of ``item``; raises :class:`ItemTooLargeError` above 400 KB, before
        it could make DynamoDB refuse the whole batch."""
        attributes = item.serialize()
        check_item_size(attributes, operation="BatchWriteItem", table=self._model.Meta.table_name)
        self.put_serialized(attributes)

    def put_serialized(self, attributes: AttributeMap) -> None:
        """Queue a put of an item already serialized (by a caller that checked its size)."""
        self._add({"PutRequest": {"Item": attributes}})

    def delete(self, item: StoreItem) -> None:
        """Queue a delete of ``item``'s key."""
        self._add({"DeleteRequest": {"Key": {"PK": {"S": item.pk}, "SK": {"S": item.sk}}}})

    def flush(self) -> None:
        """Send everything queued (at most ``batch_size`` requests: adding more sends them)."""
        if self._pending:
            batch = list(self._pending.values())
            self._pending = {}
            self._send(batch)

    @property
    def pending(self) -> int:
        """Requests queued and not sent yet."""
        return len(self._pending)

    def _add(self, request: dict[str, Any]) -> None:
        self._pending[_key_of(request)] = request
        if len(self._pending) >= self._batch_size:
            self.flush()

    def _wait_before(self, attempt: int) -> None:
        delay_s = self._pacer.next_delay_ms() / 1000 if self._pacer is not None else 0.0
        if attempt:
            backoff = min(self._base_delay_s * 2 ** (attempt - 1), _MAX_BACKOFF_S)
            delay_s = max(delay_s, random.random() * backoff)
        if delay_s > 0:
            self._sleep(delay_s)

    def _send(self, batch: list[dict[str, Any]]) -> None:
        connection = self._model._get_connection()
        table = self._model.Meta.table_name
        for attempt in range(self._max_retries + 1):
            self._wait_before(attempt)
            data = connection.batch_write_item(
                put_items=[r["PutRequest"]["Item"] for r in batch if "PutRequest" in r],
                delete_items=[r["DeleteRequest"]["Key"] for r in batch if "DeleteRequest" in r],
            )
            unprocessed = (data or {}).get("UnprocessedItems", {}).get(table, [])
            self.written += len(batch) - len(unprocessed)
            if self._pacer is not None:
                if unprocessed:
                    self._pacer.record_throttle()
                else:
                    self._pacer.record_success()
            if not unprocessed:
                return
            batch = unprocessed
        self._give_up(batch, table)

    def _give_up(self, batch: list[dict[str, Any]], table: str) -> None:
        keys = [_key_of(r) for r in batch]
        shown = ", ".join(f"({pk}, {sk})" for pk, sk in keys[:_KEYS_IN_MESSAGE])
        more = f" and {len(keys) - _KEYS_IN_MESSAGE} more" if len(keys) > _KEYS_IN_MESSAGE else ""
        raise UnprocessedItemsError(
            f"{len(keys)} batch items still unprocessed after {self._max_retries} retries; "
            f"not written: {shown}{more}",
            unprocessed_keys=keys,
            operation="BatchWriteItem",
            table=table,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.flush()
        else:
            self._pending.clear()
