"""``RateLimitEvent``: the admissions of one resource in its current window, as counters.

One item per resource (not one per request, not one per slice): a ring of one count per time
slice of the window, slice ``k`` in slot ``k mod len``, and ``CurSlice`` naming the newest (see
``stores.rate_limit_core``). An admission is then one conditional UpdateItem on one small
item, whose size, and so whose consumed capacity, depends on the number of slices (at most 61),
never on the limit; the TypeScript original stored one item per request and counted them on
every check. Moving to a new slice zeroes only the slots it reuses, so no writer ever sends
back counts it read.
"""

from __future__ import annotations

from typing import Self, cast

from pynamodb.attributes import ListAttribute, NumberAttribute

from comic_vine_dynamodb_store.keys import Entity, partition_key
from comic_vine_dynamodb_store.models.base import StoreItem

__all__ = ["RateLimitEvent"]


class RateLimitEvent(StoreItem):
    """The window of one resource.

    Key: ``PK = RATELIMIT#<namespace>#=<resource>``, ``SK = WINDOW``. ``WindowMs`` and
    ``SliceMs`` record the layout the counters were made for: a writer with another window
    starts the window afresh. ``ExpiresAt`` is when every counted admission has left the
    window, so an idle resource's item expires on its own.
    """

    entity = Entity.RATE_LIMIT
    INDEX_GRID_MS = 3_600_000  # the index key moves once an hour, not at every slice
    WINDOW_SORT_KEY = "WINDOW"

    window_ms = NumberAttribute(attr_name="WindowMs")
    slice_ms = NumberAttribute(attr_name="SliceMs")
    current_slice = NumberAttribute(attr_name="CurSlice")
    counts = ListAttribute(of=NumberAttribute, attr_name="Counts", default=list)

    @classmethod
    def key_of(cls, namespace: str, resource: str) -> tuple[str, str]:
        """The ``(PK, SK)`` of ``resource``'s window."""
        return partition_key(cls.entity, namespace, resource), cls.WINDOW_SORT_KEY

    @classmethod
    def build(
        cls,
        namespace: str,
        resource: str,
        *,
        window_ms: int,
        slice_ms: int,
        current_slice: int,
        counts: list[int],
        expires_at_ms: int,
    ) -> Self:
        """The item holding the ring ``counts`` whose newest slice is ``current_slice``."""
        pk, sk = cls.key_of(namespace, resource)
        item = cls(
            pk,
            sk,
            window_ms=window_ms,
            slice_ms=slice_ms,
            current_slice=current_slice,
            counts=counts,
        )
        item.set_expiry(expires_at_ms)
        item.index_under(namespace)
        return item

    def ring(self) -> tuple[int, tuple[int, ...]]:
        """``(current_slice, counts)`` as plain ints."""
        return int(self.current_slice), tuple(int(cast(float, c)) for c in self.counts)
