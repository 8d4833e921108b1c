"""DynamoDB-backed stores that protect an API client across processes and machines.

A shared cache, request de-duplication, rate limiting and priority-aware rate limiting, on one
DynamoDB table. Every public class is importable from here; the PynamoDB entities live in
:mod:`comic_vine_dynamodb_store.models`, table tooling in :mod:`comic_vine_dynamodb_store.table`.
"""

from comic_vine_dynamodb_store.config import (
    AdaptiveConfig,
    AdaptiveRateLimitStoreOptions,
    CacheStoreOptions,
    CircuitBreakerOptions,
    CloudWatchOptions,
    DedupeStoreOptions,
    HealthCheckOptions,
    LoggingOptions,
    MonitoringOptions,
    PerformanceOptions,
    RateLimitConfig,
    RateLimitStoreOptions,
    StoreOptions,
)
from comic_vine_dynamodb_store.errors import (
    CircuitBreakerOpenError,
    ConfigurationError,
    DynamoDBStoreError,
    InvalidKeyError,
    ItemTooLargeError,
    LocalDynamoDBError,
    OperationTimeoutError,
    RateLimitedError,
    StoreClosedError,
    StoreUnavailableError,
    TableNotFoundError,
    ThrottlingError,
)
from comic_vine_dynamodb_store.table import TableMismatch, create_table, verify_table

__version__ = "0.1.0"

__all__ = [
    "AdaptiveConfig",
    "AdaptiveRateLimitStoreOptions",
    "CacheStoreOptions",
    "CircuitBreakerOpenError",
    "CircuitBreakerOptions",
    "CloudWatchOptions",
    "ConfigurationError",
    "DedupeStoreOptions",
    "DynamoDBStoreError",
    "HealthCheckOptions",
    "InvalidKeyError",
    "ItemTooLargeError",
    "LocalDynamoDBError",
    "LoggingOptions",
    "MonitoringOptions",
    "OperationTimeoutError",
    "PerformanceOptions",
    "RateLimitConfig",
    "RateLimitStoreOptions",
    "RateLimitedError",
    "StoreClosedError",
    "StoreOptions",
    "StoreUnavailableError",
    "TableMismatch",
    "TableNotFoundError",
    "ThrottlingError",
    "__version__",
    "create_table",
    "verify_table",
]
