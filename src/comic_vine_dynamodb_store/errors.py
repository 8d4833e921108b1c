"""The exception tree of the library: every error a store raises on purpose is one of these.

One root, so ``except DynamoDBStoreError`` catches everything the library means to raise;
errors about the caller's input also derive from the matching builtin, so code that already
catches ``ValueError`` or ``TimeoutError`` keeps working::

    DynamoDBStoreError
     ├── ConfigurationError          (ValueError)  bad options, before any request
     ├── InvalidKeyError             (ValueError)  empty / non-str / non-UTF-8 key or resource
     ├── ItemTooLargeError           (ValueError)  value above the item (or chunked) size limit
     ├── StoreClosedError                          operation on a closed store
     ├── TableNotFoundError                        the table does not exist
     ├── AccessDeniedError                         credentials refused, or no permission
     ├── RateLimitedError                          the client flow gave up waiting for the limiter
     ├── LocalDynamoDBError                        DynamoDB Local could not be started
     ├── ParallelExecutionError                    ``execute_in_parallel``: some items failed
     └── StoreUnavailableError                     DynamoDB could not serve the operation
          ├── ThrottlingError                      throttled, retries exhausted
          │    └── UnprocessedItemsError           a batch write left items unwritten
          ├── OperationTimeoutError (TimeoutError) ``circuit_breaker.timeout_ms`` passed
          └── CircuitBreakerOpenError              breaker open, no request was sent

Every error carries ``operation``, ``table`` and ``request_id`` where they are known; the
original exception (botocore or PynamoDB) is kept as ``__cause__``. Being rate limited is a
return value of the stores (``acquire`` returns ``False``), never an exception.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessDeniedError",
    "CircuitBreakerOpenError",
    "ConfigurationError",
    "DynamoDBStoreError",
    "InvalidKeyError",
    "ItemTooLargeError",
    "LocalDynamoDBError",
    "OperationTimeoutError",
    "ParallelExecutionError",
    "RateLimitedError",
    "StoreClosedError",
    "StoreUnavailableError",
    "TableNotFoundError",
    "ThrottlingError",
    "UnprocessedItemsError",
]


class DynamoDBStoreError(Exception):
    """Root of every error the library raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        table: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.table = table
        self.request_id = request_id

    def __str__(self) -> str:
        context = [
            f"{name}={value}"
            for name, value in (
                ("operation", self.operation),
                ("table", self.table),
                ("request_id", self.request_id),
            )
            if value
        ]
        return f"{self.message} ({', '.join(context)})" if context else self.message


class ConfigurationError(DynamoDBStoreError, ValueError):
    """An option is invalid; ``field`` names it (dotted for nested options).

    ``problems`` lists every ``(field, reason)`` found, the first being ``field``'s.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        problems: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.field = field
        if not problems and field is not None:
            problems = ((field, message),)
        self.problems = problems


class InvalidKeyError(DynamoDBStoreError, ValueError):
    """A key or resource name cannot address an item: empty, not a str, or not valid UTF-8."""


class ItemTooLargeError(DynamoDBStoreError, ValueError):
    """The value does not fit: ``size_bytes`` is what it would take, ``limit_bytes`` the cap."""

    def __init__(
        self,
        message: str,
        *,
        size_bytes: int,
        limit_bytes: int,
        operation: str | None = None,
        table: str | None = None,
    ) -> None:
        super().__init__(message, operation=operation, table=table)
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes


class StoreClosedError(DynamoDBStoreError):
    """The store was closed; create a new one."""


class TableNotFoundError(DynamoDBStoreError):
    """The table does not exist (stores never create it: see ``table.create_table``)."""


class AccessDeniedError(DynamoDBStoreError):
    """DynamoDB refused the credentials (unknown, expired, badly signed) or the permission.

    A configuration problem like :class:`TableNotFoundError`: never retried, never counted
    against the circuit breaker, and raised whatever ``on_unavailable`` says.
    """


class RateLimitedError(DynamoDBStoreError):
    """The client flow waited ``max_wait_ms`` for the limiter and gave up."""

    def __init__(
        self,
        message: str,
        *,
        resource: str | None = None,
        wait_ms: int | None = None,
    ) -> None:
        super().__init__(message)
        self.resource = resource
        self.wait_ms = wait_ms


class LocalDynamoDBError(DynamoDBStoreError):
    """DynamoDB Local could not be provided; the message says what to install or set."""


class StoreUnavailableError(DynamoDBStoreError):
    """DynamoDB could not serve the operation (5xx, connection failure, after retries)."""


class ThrottlingError(StoreUnavailableError):
    """DynamoDB kept throttling after every retry."""


class OperationTimeoutError(StoreUnavailableError, TimeoutError):
    """The operation took longer than ``circuit_breaker.timeout_ms``; the request was cancelled."""


class CircuitBreakerOpenError(StoreUnavailableError):
    """The circuit breaker is open: no request was sent."""


class ParallelExecutionError(DynamoDBStoreError):
    """Some items failed; the others' results are kept.

    ``results`` holds one entry per item, in input order: the result, or the exception at a
    failed position. ``errors`` lists ``(index, exception)`` of the failures, in index order.
    The first failure is the ``__cause__``.
    """

    def __init__(
        self,
        message: str,
        *,
        results: list[Any],
        errors: list[tuple[int, Exception]],
    ) -> None:
        super().__init__(message)
        self.results = results
        self.errors = errors


class UnprocessedItemsError(ThrottlingError):
    """A batch write gave up: ``unprocessed_keys`` are the ``(PK, SK)`` of the items DynamoDB
    still left unprocessed after every retry (the rest of the batch was written).

    A :class:`ThrottlingError`, since DynamoDB leaves items unprocessed when it throttles.
    """

    def __init__(
        self,
        message: str,
        *,
        unprocessed_keys: list[tuple[str, str]],
        operation: str | None = None,
        table: str | None = None,
    ) -> None:
        super().__init__(message, operation=operation, table=table)
        self.unprocessed_keys = unprocessed_keys
