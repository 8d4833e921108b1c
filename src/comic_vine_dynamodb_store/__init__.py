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
    InMemoryAdaptiveRateLimitStoreOptions,
    InMemoryCacheStoreOptions,
    InMemoryDedupeStoreOptions,
    InMemoryRateLimitStoreOptions,
    LoggingOptions,
    MonitoringOptions,
    OnUnavailable,
    PerformanceOptions,
    RateLimitConfig,
    RateLimitConfigs,
    RateLimitStoreOptions,
    StoreOptions,
)
from comic_vine_dynamodb_store.errors import (
    AccessDeniedError,
    CircuitBreakerOpenError,
    ConfigurationError,
    DynamoDBStoreError,
    InvalidKeyError,
    ItemTooLargeError,
    LocalDynamoDBError,
    OperationTimeoutError,
    ParallelExecutionError,
    RateLimitedError,
    StoreClosedError,
    StoreUnavailableError,
    TableNotFoundError,
    ThrottlingError,
    UnprocessedItemsError,
)
from comic_vine_dynamodb_store.observability.dashboard import CloudWatchDashboardConfig
from comic_vine_dynamodb_store.observability.handlers.cloudwatch import CloudWatchMetricsPublisher
from comic_vine_dynamodb_store.observability.monitor import (
    Monitor,
    get_monitor,
    monitor_operation,
    set_monitor,
)
from comic_vine_dynamodb_store.resilience import (
    AdaptiveDelayCalculator,
    BatchWriter,
    calculate_optimal_batch_size,
    execute_in_parallel,
    execute_in_parallel_async,
)
from comic_vine_dynamodb_store.resilience.breaker import BreakerState, CircuitBreakerStatus
from comic_vine_dynamodb_store.stores.adaptive import DynamoDBAdaptiveRateLimitStore
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore
from comic_vine_dynamodb_store.stores.contracts import (
    AdaptiveRateLimitStore,
    AdaptiveStatus,
    CacheStats,
    CacheStore,
    DedupeStats,
    DedupeStore,
    HealthCheckResult,
    RateLimitStats,
    RateLimitStatus,
    RateLimitStore,
    Registration,
)
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore
from comic_vine_dynamodb_store.stores.memory_adaptive import InMemoryAdaptiveRateLimitStore
from comic_vine_dynamodb_store.stores.memory_cache import InMemoryCacheStore
from comic_vine_dynamodb_store.stores.memory_dedupe import InMemoryDedupeStore
from comic_vine_dynamodb_store.stores.memory_rate_limit import InMemoryRateLimitStore
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore
from comic_vine_dynamodb_store.table import TableMismatch, create_table, verify_table

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "AdaptiveConfig",
    "AdaptiveDelayCalculator",
    "AdaptiveRateLimitStore",
    "AdaptiveRateLimitStoreOptions",
    "AdaptiveStatus",
    "BatchWriter",
    "BreakerState",
    "CacheStats",
    "CacheStore",
    "CacheStoreOptions",
    "CircuitBreakerOpenError",
    "CircuitBreakerOptions",
    "CircuitBreakerStatus",
    "CloudWatchDashboardConfig",
    "CloudWatchMetricsPublisher",
    "CloudWatchOptions",
    "ConfigurationError",
    "DedupeStats",
    "DedupeStore",
    "DedupeStoreOptions",
    "DynamoDBAdaptiveRateLimitStore",
    "DynamoDBCacheStore",
    "DynamoDBDedupeStore",
    "DynamoDBRateLimitStore",
    "DynamoDBStoreError",
    "HealthCheckOptions",
    "HealthCheckResult",
    "InMemoryAdaptiveRateLimitStore",
    "InMemoryAdaptiveRateLimitStoreOptions",
    "InMemoryCacheStore",
    "InMemoryCacheStoreOptions",
    "InMemoryDedupeStore",
    "InMemoryDedupeStoreOptions",
    "InMemoryRateLimitStore",
    "InMemoryRateLimitStoreOptions",
    "InvalidKeyError",
    "ItemTooLargeError",
    "LocalDynamoDBError",
    "LoggingOptions",
    "Monitor",
    "MonitoringOptions",
    "OnUnavailable",
    "OperationTimeoutError",
    "ParallelExecutionError",
    "PerformanceOptions",
    "RateLimitConfig",
    "RateLimitConfigs",
    "RateLimitStats",
    "RateLimitStatus",
    "RateLimitStore",
    "RateLimitStoreOptions",
    "RateLimitedError",
    "Registration",
    "StoreClosedError",
    "StoreOptions",
    "StoreUnavailableError",
    "TableMismatch",
    "TableNotFoundError",
    "ThrottlingError",
    "UnprocessedItemsError",
    "__version__",
    "calculate_optimal_batch_size",
    "create_table",
    "execute_in_parallel",
    "execute_in_parallel_async",
    "get_monitor",
    "monitor_operation",
    "set_monitor",
    "verify_table",
]
