"""The single-table base: key attributes, GSI1, expiry, and reads that never see expired items.

Every entity of the library is a :class:`StoreItem` in one table. The base declares the seed's
schema (``PK``/``SK``, ``GSI1PK``/``GSI1SK`` in index ``GSI1``, ``TTL`` in epoch seconds) and one
attribute of its own, ``ExpiresAt``: the exact expiry in epoch milliseconds.

Why both: DynamoDB's TTL reaper reads whole seconds and deletes expired items up to days late,
so correctness cannot depend on it. ``ExpiresAt`` is what every read and every conditional write
of the library compares against; ``TTL`` (rounded *up*, so the reaper never deletes an item
before it has expired) only keeps the table from growing. An item without ``ExpiresAt`` never
expires.

The classes here are unbound (no table): :mod:`.binding` makes bound subclasses per table,
region and endpoint at run time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

from botocore.exceptions import ClientError
from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from comic_vine_dynamodb_store.clock import system_clock_ms
from comic_vine_dynamodb_store.keys import (
    Entity,
    expiry_sort_key,
    gsi1_partition_key,
    gsi1_partition_keys,
    shard_of,
)

__all__ = ["GSI1", "Blocked", "StoreItem", "ring_actions"]

ItemT = TypeVar("ItemT")


@dataclass(frozen=True, slots=True)
class Blocked(Generic[ItemT]):
    """Outcome of a conditional write: ``blocked`` when the condition failed, and then the
    item that failed it (``None`` when there was no item); otherwise the item as written,
    when it was asked for."""

    blocked: bool
    item: ItemT | None
    updated: Mapping[str, Any] | None = None
    """With ``return_updated``: the updated attributes as DynamoDB returned them (raw)."""
    raw: Mapping[str, Any] | None = None
    """With ``raw``: the item that blocked the write, or the item as written, undecoded."""


class GSI1(GlobalSecondaryIndex["StoreItem"]):  # type: ignore[no-untyped-call]
    """The store-wide index: sharded per entity and namespace, sorted by expiry.

    Eventually consistent, so it serves stats, cleanup and clear, never a decision.
    """

    class Meta:
        index_name = "GSI1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True, attr_name="GSI1PK")
    gsi1sk = UnicodeAttribute(range_key=True, attr_name="GSI1SK")


class StoreItem(Model):
    """Base of the four entities: the table's keys, GSI1 and exact expiry."""

    entity: ClassVar[Entity]
    INDEX_GRID_MS: ClassVar[int] = 1
    """The step ``TTL`` and ``GSI1SK`` round the expiry up to (see :func:`index_expiry_ms`)."""

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")
    sk = UnicodeAttribute(range_key=True, attr_name="SK")
    gsi1pk = UnicodeAttribute(null=True, attr_name="GSI1PK")
    gsi1sk = UnicodeAttribute(null=True, attr_name="GSI1SK")
    ttl = TTLAttribute(null=True, attr_name="TTL")
    expires_at_ms = NumberAttribute(null=True, attr_name="ExpiresAt")

    gsi1 = GSI1()

    def index_under(self, namespace: str) -> None:
        """Place the item in its GSI1 shard, so store-wide operations find it."""
        self.gsi1pk = gsi1_partition_key(self.entity, namespace, shard_of(self.pk))
        self.gsi1sk = self._index_sort_key(self.expires_at_ms_int)

    def set_expiry(self, expires_at_ms: int | None) -> None:
        """Expire the item at ``expires_at_ms`` (epoch ms), or never with ``None``.

        ``TTL`` and ``GSI1SK`` take the expiry rounded up to the entity's ``INDEX_GRID_MS``
        (see :func:`index_expiry_ms`); ``ExpiresAt`` keeps it exact.
        """
        self.expires_at_ms = expires_at_ms
        if expires_at_ms is None:
            self.ttl = None
        else:
            self.ttl = ttl_of(index_expiry_ms(expires_at_ms, self.INDEX_GRID_MS))
        if self.gsi1pk is not None:
            self.gsi1sk = self._index_sort_key(expires_at_ms)

    @classmethod
    def _index_sort_key(cls, expires_at_ms: int | None) -> str:
        if expires_at_ms is None:
            return expiry_sort_key(None)
        return expiry_sort_key(index_expiry_ms(expires_at_ms, cls.INDEX_GRID_MS))

    @property
    def expires_at_ms_int(self) -> int | None:
        """``ExpiresAt`` as an int (DynamoDB numbers read back as float)."""
        return None if self.expires_at_ms is None else int(self.expires_at_ms)

    def is_expired(self, now_ms: int) -> bool:
        """True once ``now_ms`` has reached the exact expiry."""
        expires = self.expires_at_ms_int
        return expires is not None and now_ms >= expires

    @classmethod
    def _check_owns(cls, pk: str) -> None:
        # A model must never deserialize another entity's item as its own.
        if not pk.startswith(f"{cls.entity.value}#"):
            raise ValueError(f"{pk!r} is not a {cls.entity.value} key")

    @classmethod
    def live_condition(cls, now_ms: int) -> Condition:
        """Condition true for an item that exists and has not expired at ``now_ms``."""
        live = cls.expires_at_ms.does_not_exist() | (cls.expires_at_ms > now_ms)
        return cast(Condition, cls.pk.exists() & live)

    @classmethod
    def absent_or_expired_condition(cls, now_ms: int) -> Condition:
        """Condition for a write that may replace only a missing or expired item."""
        return cast(Condition, cls.pk.does_not_exist() | (cls.expires_at_ms <= now_ms))

    @classmethod
    def put_serialized(
        cls, attributes: Mapping[str, Mapping[str, Any]], *, condition: Condition | None = None
    ) -> None:
        """PutItem of an already serialized item (one request).

        ``Model.save`` serializes again; a store that has serialized the item to check its
        size sends that serialization instead.
        """
        values = dict(attributes)
        pk = values.pop("PK")["S"]
        sk = values.pop("SK")["S"]
        cls._get_connection().put_item(pk, range_key=sk, attributes=values, condition=condition)

    @classmethod
    def put_unless_blocked(
        cls,
        attributes: Mapping[str, Mapping[str, Any]],
        *,
        condition: Condition,
        raw: bool = False,
    ) -> Blocked[Self]:
        """Conditional PutItem that reports, when the condition fails, the item that blocked it.

        One request either way: the blocking item comes back with the failure
        (``ReturnValuesOnConditionCheckFailure=ALL_OLD``), so a lost race needs no second read.
        """
        values = dict(attributes)
        pk = values.pop("PK")["S"]
        sk = values.pop("SK")["S"]
        return cls._send_unless_blocked(
            "put_item", pk, sk, key="Item", attributes=values, condition=condition, raw=raw
        )

    @classmethod
    def update_unless_blocked(
        cls,
        pk: str,
        sk: str,
        *,
        actions: Sequence[Action],
        condition: Condition,
        return_new: bool = False,
        return_updated: bool = False,
        raw: bool = False,
    ) -> Blocked[Self]:
        """Conditional UpdateItem; as :meth:`put_unless_blocked`, one request either way.

        With ``return_new``, a write that went through reports the item as it now is; with
        ``return_updated``, only the attributes it changed, raw (cheaper to parse: a store
        that knows the rest asks for that). With ``raw``, items come back undecoded in
        ``Blocked.raw`` (a store that reads a few numbers from a large item skips decoding
        every attribute).
        """
        extra: dict[str, Any] = {"raw": raw}
        if return_new:
            extra["return_values"] = "ALL_NEW"
        elif return_updated:
            extra["return_values"] = "UPDATED_NEW"
        return cls._send_unless_blocked(
            "update_item", pk, sk, key="Key", actions=actions, condition=condition, **extra
        )

    @classmethod
    def delete_unless_blocked(cls, pk: str, sk: str, *, condition: Condition) -> Blocked[Self]:
        """Conditional DeleteItem; when the condition fails, the item that blocked it comes
        back undecoded in ``Blocked.raw`` (one request either way)."""
        return cls._send_unless_blocked(
            "delete_item", pk, sk, key="Key", condition=condition, raw=True
        )

    @classmethod
    def _send_unless_blocked(
        cls, method: str, pk: str, sk: str, *, raw: bool = False, **kwargs: Any
    ) -> Blocked[Self]:
        # On the connection's botocore client: PynamoDB's error wrapper drops the item that
        # DynamoDB returns with a failed condition.
        table = cls._get_connection()
        request = table.get_operation_kwargs(
            pk, range_key=sk, return_values_on_condition_failure="ALL_OLD", **kwargs
        )
        request["ReturnConsumedCapacity"] = "TOTAL"
        client: Any = table.connection.client
        try:
            response = getattr(client, method)(**request)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            blocking: Any = exc.response.get("Item")
            if raw:
                return Blocked(True, None, raw=blocking)
            return Blocked(True, cls.from_raw_data(blocking) if blocking else None)
        written = response.get("Attributes")
        if raw:
            return Blocked(False, None, raw=written)
        if request.get("ReturnValues") == "UPDATED_NEW":
            return Blocked(False, None, written or {})
        return Blocked(False, cls.from_raw_data(written) if written else None)

    @classmethod
    def get_live(
        cls, pk: str, sk: str, *, now_ms: int | None = None, consistent_read: bool = True
    ) -> Self | None:
        """Read one item, or ``None`` when it is absent or expired (one GetItem)."""
        cls._check_owns(pk)
        try:
            item = cls.get(pk, sk, consistent_read=consistent_read)
        except cls.DoesNotExist:
            return None
        now = system_clock_ms() if now_ms is None else now_ms
        return None if item.is_expired(now) else item

    @classmethod
    def query_live(
        cls,
        pk: str,
        *,
        now_ms: int | None = None,
        range_key_condition: Condition | None = None,
        consistent_read: bool = True,
        **kwargs: Any,
    ) -> Iterator[Self]:
        """Items under one PK that have not expired (expired ones filtered server side)."""
        cls._check_owns(pk)
        now = system_clock_ms() if now_ms is None else now_ms
        yield from cls.query(
            pk,
            range_key_condition=range_key_condition,
            filter_condition=cls.expires_at_ms.does_not_exist() | (cls.expires_at_ms > now),
            consistent_read=consistent_read,
            **kwargs,
        )

    @classmethod
    def iter_index(
        cls,
        namespace: str,
        *,
        live_at_ms: int | None = None,
        expired_at_ms: int | None = None,
        page_size: int | None = None,
    ) -> Iterator[Self]:
        """Every item of this entity in ``namespace``, shard by shard through GSI1.

        With ``live_at_ms``, only items live then; with ``expired_at_ms``, only items expired
        by then (a range condition on the expiry sort key, so nothing else is read). Each
        shard's Query pages through ``LastEvaluatedKey`` (``page_size`` items per request, or
        DynamoDB's 1 MB pages by default).
        """
        if live_at_ms is not None and expired_at_ms is not None:
            raise ValueError("pass live_at_ms or expired_at_ms, not both")
        condition: Condition | None = None
        exact: Condition | None = None
        if expired_at_ms is not None:
            # Index expiries are rounded up to the grid: the range reaches the end of the
            # current step, and a filter on the exact expiry drops what has not expired yet.
            condition = cls.gsi1sk <= cls._index_sort_key(expired_at_ms)
            if cls.INDEX_GRID_MS > 1:
                exact = cls.expires_at_ms <= expired_at_ms
        elif live_at_ms is not None:
            condition = cls.gsi1sk > expiry_sort_key(live_at_ms)
        for partition in gsi1_partition_keys(cls.entity, namespace):
            # The index is bound to this class (see binding), so it yields instances of it.
            results = cls.gsi1.query(
                partition,
                range_key_condition=condition,
                filter_condition=exact,
                page_size=page_size,
            )
            yield from cast("Iterator[Self]", results)


def index_expiry_ms(expires_at_ms: int, grid_ms: int = 1) -> int:
    """The expiry ``TTL`` and ``GSI1SK`` carry: ``expires_at_ms`` rounded *up* to ``grid_ms``.

    Why a grid: ``GSI1SK`` is a key of the index, and a write that changes an index key costs
    the index a delete and a put (one more write unit) instead of an update. A counter item
    whose exact expiry moves on at every slice keeps its index key for a whole grid step this
    way. Rounding up is safe: cleanup and the reaper only find the item later, never before
    ``ExpiresAt``, which stays exact and is what every read and condition compares.
    """
    if grid_ms < 1:
        raise ValueError("grid_ms must be at least 1")
    return -(-expires_at_ms // grid_ms) * grid_ms


def ttl_of(expires_at_ms: int) -> datetime:
    """``TTL`` for an expiry: whole seconds rounded up, so the reaper never deletes a live item."""
    return datetime.fromtimestamp(math.ceil(expires_at_ms / 1000), tz=UTC)


def expiry_actions(
    model: type[StoreItem], expires_at_ms: int, *, moved_from_ms: int | None
) -> list[Action]:
    """Actions moving an item's expiry from ``moved_from_ms`` to ``expires_at_ms``.

    ``ExpiresAt`` is always set; ``TTL`` and ``GSI1SK`` only when the grid step changes, so the
    index key of a counter item moves once per ``INDEX_GRID_MS`` rather than at every write.
    """
    grid_ms = model.INDEX_GRID_MS
    actions: list[Action] = [model.expires_at_ms.set(expires_at_ms)]
    indexed = index_expiry_ms(expires_at_ms, grid_ms)
    if moved_from_ms is None or index_expiry_ms(moved_from_ms, grid_ms) != indexed:
        actions += [
            model.ttl.set(ttl_of(indexed)),
            model.gsi1sk.set(expiry_sort_key(indexed)),
        ]
    return actions


def ring_actions(
    ring: Any,
    *,
    size: int,
    from_slice: int,
    from_count: int,
    to_slice: int,
    to_count: int,
) -> list[Action]:
    """Update actions taking a stored ring of ``size`` slots (slice ``k`` in slot
    ``k mod size``) from newest slice ``from_slice`` holding ``from_count`` to ``to_slice``
    holding ``to_count``.

    Within one slice: add the difference to its slot. To a newer slice: zero the slots the
    slices in between reuse and write the new slot. Either way no other count is sent, so
    whatever other writers added to the slots meanwhile stays.
    """
    if to_slice == from_slice:
        slot = ring[to_slice % size]
        added = to_count - from_count
        return [slot.set(slot + added)] if added else []
    if to_slice < from_slice:
        raise ValueError("a ring never moves backwards")
    moved = to_slice - from_slice
    reused = (
        range(size)
        if moved >= size
        else sorted({(from_slice + s) % size for s in range(1, moved + 1)})
    )
    newest = to_slice % size
    return [ring[slot].set(to_count if slot == newest else 0) for slot in reused]
