"""Mapping what PynamoDB and botocore raise to the library's typed errors, in one place.

Also decides which failures say "DynamoDB is unwell" (they count towards opening the circuit
breaker) and which say nothing about its health (a failed condition, a bad request).
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from pynamodb.exceptions import PynamoDBException, TableDoesNotExist

from comic_vine_dynamodb_store.errors import (
    AccessDeniedError,
    DynamoDBStoreError,
    OperationTimeoutError,
    StoreUnavailableError,
    TableNotFoundError,
    ThrottlingError,
)

__all__ = [
    "error_code",
    "is_condition_failure",
    "is_dynamodb_failure",
    "map_error",
    "root_cause",
    "signals_ill_health",
]

THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
_UNAVAILABLE_CODES = frozenset(
    {"InternalServerError", "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException"}
)
_ACCESS_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AccessDeniedException",
    }
)
_TIMEOUT_TYPES = (ReadTimeoutError, ConnectTimeoutError)
_CONNECTION_TYPES = (EndpointConnectionError, ConnectionClosedError, HTTPClientError)


def root_cause(exc: BaseException) -> BaseException:
    """The botocore exception under PynamoDB's wrapper (the one users can act on), if any."""
    cause = exc.cause if isinstance(exc, PynamoDBException) else None
    return cause if cause is not None else exc


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a failure, when it has one."""
    # Not PynamoDB's cause_response_code: it fails on transport errors whose
    # ``response`` attribute is None.
    root = root_cause(exc)
    if isinstance(root, ClientError):
        return str(root.response.get("Error", {}).get("Code") or "") or None
    return None


def _status(exc: BaseException) -> int | None:
    root = root_cause(exc)
    if isinstance(root, ClientError):
        status = root.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def _request_id(exc: BaseException) -> str | None:
    root = root_cause(exc)
    if isinstance(root, ClientError):
        metadata = root.response.get("ResponseMetadata", {})
        return metadata.get("RequestId") or metadata.get("HTTPHeaders", {}).get("x-amzn-requestid")
    return None


def is_dynamodb_failure(exc: BaseException) -> bool:
    """True for what PynamoDB or botocore raise; anything else is a bug to surface as is."""
    return isinstance(exc, PynamoDBException | BotoCoreError | ClientError)


def is_condition_failure(exc: BaseException) -> bool:
    """True for a failed ``ConditionExpression`` (an expected answer, not an error)."""
    return error_code(exc) in ("ConditionalCheckFailedException", "TransactionCanceledException")


def signals_ill_health(exc: BaseException) -> bool:
    """True when the failure says DynamoDB (or the way to it) is unwell: counts for the breaker.

    Throttling after retries, 5xx, connection failures and timeouts do; a failed condition,
    a validation error or a missing table do not.
    """
    root = root_cause(exc)
    if isinstance(root, _TIMEOUT_TYPES + _CONNECTION_TYPES + (StoreUnavailableError,)):
        return True
    code = error_code(exc)
    status = _status(exc)
    return code in THROTTLING_CODES or code in _UNAVAILABLE_CODES or (status or 0) >= 500


def map_error(exc: BaseException, *, operation: str, table: str) -> DynamoDBStoreError:
    """The typed error for ``exc``; ``exc`` becomes its ``__cause__`` when raised ``from``."""
    if isinstance(exc, DynamoDBStoreError):
        return exc
    root = root_cause(exc)
    code = error_code(exc)
    context = {"operation": operation, "table": table, "request_id": _request_id(exc)}
    if isinstance(root, _TIMEOUT_TYPES):
        return OperationTimeoutError(f"DynamoDB did not answer in time: {root}", **context)
    if isinstance(root, _CONNECTION_TYPES):
        return StoreUnavailableError(f"could not reach DynamoDB: {root}", **context)
    if code in THROTTLING_CODES:
        return ThrottlingError(f"DynamoDB throttled the request after retries ({code})", **context)
    if isinstance(exc, TableDoesNotExist) or code == "ResourceNotFoundException":
        return TableNotFoundError(f"table {table!r} does not exist", **context)
    if code in _ACCESS_CODES:
        return AccessDeniedError(
            f"DynamoDB refused the request's credentials or permission ({code})", **context
        )
    if code in _UNAVAILABLE_CODES or (_status(exc) or 0) >= 500:
        return StoreUnavailableError(f"DynamoDB is unavailable ({code})", **context)
    detail = root if root is not exc else exc
    return DynamoDBStoreError(
        f"DynamoDB request failed: {code or type(root).__name__}: {detail}", **context
    )
