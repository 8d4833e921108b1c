"""``RateLimitEvent``: the admissions of one resource in one time slice, as counters.

One item per (resource, slice), not one per request: a check sums a bounded number of slice
counters, so its cost does not grow with the limit (the TypeScript original stored one item per
request and counted them on every check).
"""

from __future__ import annotations

from typing import Self

from pynamodb.attributes import NumberAttribute

from comic_vine_dynamodb_store.keys import Entity, partition_key
from comic_vine_dynamodb_store.models.base import StoreItem

__all__ = ["RateLimitEvent"]

_SLICE_DIGITS = 15


class RateLimitEvent(StoreItem):
    """Counters of one resource's slice starting at ``slice_start_ms``.

    Key: ``PK = RATELIMIT#<namespace>#=<resource>``, ``SK = SLICE#<start ms, zero-padded>``, so
    a resource's slices sort by time and one Query reads a whole window.
    """

    entity = Entity.RATE_LIMIT
    SLICE_PREFIX = "SLICE#"

    slice_start_ms = NumberAttribute(attr_name="SliceStart")
    slice_ms = NumberAttribute(attr_name="SliceMs")
    admitted = NumberAttribute(attr_name="Count", default=0)
    user_count = NumberAttribute(attr_name="UserCount", default=0)
    background_count = NumberAttribute(attr_name="BackgroundCount", default=0)

    @classmethod
    def partition_of(cls, namespace: str, resource: str) -> str:
        """The PK holding every slice of ``resource``."""
        return partition_key(cls.entity, namespace, resource)

    @classmethod
    def slice_sort_key(cls, slice_start_ms: int) -> str:
        """SK of the slice starting at ``slice_start_ms``; string order is time order."""
        if slice_start_ms < 0:
            raise ValueError("slice_start_ms must not be negative")
        return f"{cls.SLICE_PREFIX}{slice_start_ms:0{_SLICE_DIGITS}d}"

    @classmethod
    def key_of(cls, namespace: str, resource: str, slice_start_ms: int) -> tuple[str, str]:
        """The ``(PK, SK)`` of one slice of ``resource``."""
        return cls.partition_of(namespace, resource), cls.slice_sort_key(slice_start_ms)

    @classmethod
    def build(
        cls,
        namespace: str,
        resource: str,
        *,
        slice_start_ms: int,
        slice_ms: int,
        expires_at_ms: int,
    ) -> Self:
        """An empty slice, kept until ``expires_at_ms`` (when no window can include it)."""
        if slice_ms <= 0:
            raise ValueError(f"slice_ms must be > 0, got {slice_ms}")
        pk, sk = cls.key_of(namespace, resource, slice_start_ms)
        item = cls(pk, sk, slice_start_ms=slice_start_ms, slice_ms=slice_ms)
        item.set_expiry(expires_at_ms)
        item.index_under(namespace)
        return item
