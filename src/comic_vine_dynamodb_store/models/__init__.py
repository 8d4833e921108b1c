"""PynamoDB entities of the single table, and their binding to a table at run time."""

from comic_vine_dynamodb_store.models.adaptive import AdaptiveStats
from comic_vine_dynamodb_store.models.base import GSI1, StoreItem
from comic_vine_dynamodb_store.models.binding import TableBinding
from comic_vine_dynamodb_store.models.cache import CacheChunk, CacheItem
from comic_vine_dynamodb_store.models.dedupe import DedupeJob, JobStatus
from comic_vine_dynamodb_store.models.rate_limit import RateLimitEvent

__all__ = [
    "GSI1",
    "AdaptiveStats",
    "CacheChunk",
    "CacheItem",
    "DedupeJob",
    "JobStatus",
    "RateLimitEvent",
    "StoreItem",
    "TableBinding",
]
