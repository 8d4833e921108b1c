"""``AdaptiveStats``: the shared capacity split of one resource between users and background."""

from __future__ import annotations

from typing import Self

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute

from comic_vine_dynamodb_store.keys import Entity, partition_key
from comic_vine_dynamodb_store.models.base import StoreItem

__all__ = ["AdaptiveStats"]


class AdaptiveStats(StoreItem):
    """The last computed capacity of a resource, shared by every process.

    Key: ``PK = ADAPTIVE#<namespace>#=<resource>``, ``SK = STATS``. ``computed_at_ms`` and
    ``version`` let one conditional write decide which process recomputes it.
    """

    entity = Entity.ADAPTIVE
    STATS_SORT_KEY = "STATS"

    user_reserved = NumberAttribute(attr_name="UserReserved", default=0)
    background_max = NumberAttribute(attr_name="BackgroundMax", default=0)
    background_paused = BooleanAttribute(attr_name="BackgroundPaused", default=False)
    recent_user_activity = NumberAttribute(attr_name="RecentUserActivity", default=0)
    reason = UnicodeAttribute(attr_name="Reason", default="")
    computed_at_ms = NumberAttribute(attr_name="ComputedAt", default=0)
    version = NumberAttribute(attr_name="Version", default=0)

    @classmethod
    def key_of(cls, namespace: str, resource: str) -> tuple[str, str]:
        """The ``(PK, SK)`` of ``resource``'s stats."""
        return partition_key(cls.entity, namespace, resource), cls.STATS_SORT_KEY

    @classmethod
    def build(cls, namespace: str, resource: str, *, expires_at_ms: int | None = None) -> Self:
        """Empty stats for ``resource``, indexed in GSI1."""
        pk, sk = cls.key_of(namespace, resource)
        item = cls(pk, sk)
        item.set_expiry(expires_at_ms)
        item.index_under(namespace)
        return item
