"""Store behaviour: per store a contract, a pure decision core, the DynamoDB shell, a twin."""

from comic_vine_dynamodb_store.stores.adaptive import DynamoDBAdaptiveRateLimitStore
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore
from comic_vine_dynamodb_store.stores.contracts import (
    AdaptiveRateLimitStore,
    CacheStore,
    DedupeStore,
    RateLimitStore,
)
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore
from comic_vine_dynamodb_store.stores.memory_adaptive import InMemoryAdaptiveRateLimitStore
from comic_vine_dynamodb_store.stores.memory_cache import InMemoryCacheStore
from comic_vine_dynamodb_store.stores.memory_dedupe import InMemoryDedupeStore
from comic_vine_dynamodb_store.stores.memory_rate_limit import InMemoryRateLimitStore
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore

__all__ = [
    "AdaptiveRateLimitStore",
    "CacheStore",
    "DedupeStore",
    "DynamoDBAdaptiveRateLimitStore",
    "DynamoDBCacheStore",
    "DynamoDBDedupeStore",
    "DynamoDBRateLimitStore",
    "InMemoryAdaptiveRateLimitStore",
    "InMemoryCacheStore",
    "InMemoryDedupeStore",
    "InMemoryRateLimitStore",
    "RateLimitStore",
]
