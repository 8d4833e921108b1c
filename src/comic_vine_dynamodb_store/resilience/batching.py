"""Batch writes that finish: ``batch_size`` requests per call, unprocessed items sent again.

DynamoDB's ``BatchWriteItem`` may accept only part of a batch (``UnprocessedItems``, usually
under throttling). PynamoDB resends those at once, with no backoff; :class:`BatchWriter`
resends them after a full-jitter backoff from ``retry_delay_ms``, up to ``max_retries`` times,
then raises :class:`ThrottlingError` naming how many items were left. (Each request is also
retried by botocore on throttling or 5xx, as every request is.)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

from comic_vine_dynamodb_store.errors import ThrottlingError
from comic_vine_dynamodb_store.models.base import StoreItem

__all__ = ["BatchWriter"]

_MAX_BACKOFF_S = 20.0
AttributeMap = Mapping[str, Mapping[str, Any]]


class BatchWriter:
    """Collect puts and deletes of one bound model; send them ``batch_size`` at a time.

    Used as a context manager, it flushes on a clean exit (and drops pending work when the
    block raised, so a failure is not followed by half a batch).
    """

    def __init__(
        self,
        model: type[StoreItem],
        *,
        batch_size: int = 25,
        max_retries: int = 3,
        retry_delay_ms: int = 100,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= batch_size <= 25:
            raise ValueError(f"batch_size must be in 1..25, got {batch_size}")
        self._model = model
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._base_delay_s = retry_delay_ms / 1000
        self._sleep = sleep
        self._pending: list[dict[str, Any]] = []
        self.written = 0
        """Requests (puts and deletes) DynamoDB has accepted so far."""

    def put(self, item: StoreItem) -> None:
        """Queue a put of ``item``."""
        self.put_serialized(item.serialize())

    def put_serialized(self, attributes: AttributeMap) -> None:
        """Queue a put of an item already serialized (by a caller that checked its size)."""
        self._add({"PutRequest": {"Item": attributes}})

    def delete(self, item: StoreItem) -> None:
        """Queue a delete of ``item``'s key."""
        self._add({"DeleteRequest": {"Key": {"PK": {"S": item.pk}, "SK": {"S": item.sk}}}})

    def flush(self) -> None:
        """Send everything queued."""
        while self._pending:
            batch, self._pending = (
                self._pending[: self._batch_size],
                self._pending[self._batch_size :],
            )
            self._send(batch)

    def _add(self, request: dict[str, Any]) -> None:
        self._pending.append(request)
        if len(self._pending) >= self._batch_size:
            self.flush()

    def _send(self, batch: list[dict[str, Any]]) -> None:
        connection = self._model._get_connection()
        table = self._model.Meta.table_name
        for attempt in range(self._max_retries + 1):
            if attempt:
                delay = self._base_delay_s * 2 ** (attempt - 1)
                self._sleep(random.random() * min(delay, _MAX_BACKOFF_S))
            data = connection.batch_write_item(
                put_items=[r["PutRequest"]["Item"] for r in batch if "PutRequest" in r],
                delete_items=[r["DeleteRequest"]["Key"] for r in batch if "DeleteRequest" in r],
            )
            unprocessed = (data or {}).get("UnprocessedItems", {}).get(table, [])
            self.written += len(batch) - len(unprocessed)
            if not unprocessed:
                return
            batch = unprocessed
        raise ThrottlingError(
            f"{len(batch)} batch items still unprocessed after {self._max_retries} retries",
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
