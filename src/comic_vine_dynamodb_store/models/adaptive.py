"""``AdaptiveStats``: one resource of the adaptive limiter, its windows, activity and split.

One item per resource holds everything a decision reads (see ``stores.adaptive_state``), so an
admission is one conditional UpdateItem and every process decides on the same state: the
sliced rate window (all admissions, and background ones), the sliced activity over the
monitoring window (user and background), the newest user admission, and the capacity split
last computed, with when and for which limit.

Each sliced counter is a ring: a list with one slot per slice (the window's slices and the
current one), slice ``k`` in slot ``k mod len``, and ``CurSlice``/``ActSlice`` naming the
newest. Moving to a new slice only zeroes the slots it reuses, so a writer never sends back
counts it read: concurrent admissions into the old slice are never lost or undone.
"""

from __future__ import annotations

from typing import Any, Self

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
)

from comic_vine_dynamodb_store.keys import Entity, partition_key
from comic_vine_dynamodb_store.models.base import StoreItem

__all__ = ["AdaptiveStats"]


class AdaptiveStats(StoreItem):
    """The adaptive state of one resource.

    Key: ``PK = ADAPTIVE#<namespace>#=<resource>``, ``SK = STATS``. ``WindowMs`` and
    ``ActivityMs`` record the windows the counters were made for: a writer configured with
    another window starts that window afresh. ``ExpiresAt`` is when no admission is counted
    any more and users have been idle long enough to be forgotten.
    """

    entity = Entity.ADAPTIVE
    INDEX_GRID_MS = 3_600_000  # the index key moves once an hour, not at every slice
    STATS_SORT_KEY = "STATS"

    window_ms = NumberAttribute(attr_name="WindowMs")
    current_slice = NumberAttribute(attr_name="CurSlice")
    total_ring = ListAttribute(of=NumberAttribute, attr_name="Tot", default=list)
    background_ring = ListAttribute(of=NumberAttribute, attr_name="Bg", default=list)

    activity_ms = NumberAttribute(attr_name="ActivityMs")
    activity_slice = NumberAttribute(attr_name="ActSlice")
    user_activity_ring = ListAttribute(of=NumberAttribute, attr_name="ActUser", default=list)
    background_activity_ring = ListAttribute(of=NumberAttribute, attr_name="ActBg", default=list)
    last_user_at_ms = NumberAttribute(attr_name="LastUserAt", null=True)

    user_reserved = NumberAttribute(attr_name="UserReserved", null=True)
    background_max = NumberAttribute(attr_name="BackgroundMax", null=True)
    background_paused = BooleanAttribute(attr_name="BackgroundPaused", null=True)
    recent_user_activity = NumberAttribute(attr_name="RecentUserActivity", null=True)
    trend = UnicodeAttribute(attr_name="Trend", null=True)
    reason = UnicodeAttribute(attr_name="Reason", null=True)
    computed_at_ms = NumberAttribute(attr_name="ComputedAt", null=True)
    computed_for_limit = NumberAttribute(attr_name="ComputedForLimit", null=True)

    @classmethod
    def key_of(cls, namespace: str, resource: str) -> tuple[str, str]:
        """The ``(PK, SK)`` of ``resource``'s state."""
        return partition_key(cls.entity, namespace, resource), cls.STATS_SORT_KEY

    @classmethod
    def build(cls, namespace: str, resource: str, *, expires_at_ms: int, **values: Any) -> Self:
        """The item of ``resource`` holding ``values``, indexed in GSI1."""
        pk, sk = cls.key_of(namespace, resource)
        item = cls(pk, sk, **values)
        item.set_expiry(expires_at_ms)
        item.index_under(namespace)
        return item
