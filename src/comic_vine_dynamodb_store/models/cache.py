"""``CacheItem``: one cached value under a user key."""

from __future__ import annotations

from typing import Self

from pynamodb.attributes import BinaryAttribute, NumberAttribute, UnicodeAttribute

from comic_vine_dynamodb_store.keys import Entity, partition_key
from comic_vine_dynamodb_store.models.base import StoreItem
from comic_vine_dynamodb_store.serialization import EncodedValue, Encoding

__all__ = ["CacheChunk", "CacheItem", "expiry_for_ttl"]


MAX_TTL_SECONDS = 100 * 366 * 86_400
"""The longest ``ttl_seconds`` a cache takes: a century (0 is the way to say "never")."""


def expiry_for_ttl(now_ms: int, ttl_seconds: float) -> int | None:
    """Exact expiry of a value set at ``now_ms``: ``None`` (never) for 0.

    A TTL that is not a number raises ``TypeError``; a negative one, NaN, or one above
    :data:`MAX_TTL_SECONDS` (which no date, and no DynamoDB TTL, could hold) ``ValueError``.
    """
    if not isinstance(ttl_seconds, int | float):
        raise TypeError(f"ttl_seconds must be a number of seconds, got {ttl_seconds!r}")
    if not 0 <= ttl_seconds <= MAX_TTL_SECONDS:  # NaN fails both comparisons
        raise ValueError(
            f"ttl_seconds must be 0 (never expires) to {MAX_TTL_SECONDS} (a century), "
            f"got {ttl_seconds}"
        )
    if ttl_seconds == 0:
        return None
    return now_ms + round(ttl_seconds * 1000)


class CacheItem(StoreItem):
    """A cached value: the encoded payload, its encoding and the exact expiry.

    Key: ``PK = CACHE#<namespace>#=<key>`` (hashed when too long), ``SK = VALUE``. A payload
    too large for one item is not in ``Data``: the item is then the head of a chunked value,
    naming its ``Version``, how many ``Chunks`` hold it and the SHA-256 ``Digest`` of the
    whole payload (see :class:`CacheChunk`).
    """

    entity = Entity.CACHE
    VALUE_SORT_KEY = "VALUE"

    data = BinaryAttribute(attr_name="Data", legacy_encoding=False, null=True)
    encoding = UnicodeAttribute(attr_name="Enc")
    stored_bytes = NumberAttribute(attr_name="Size")
    created_at_ms = NumberAttribute(attr_name="CreatedAt")
    chunk_count = NumberAttribute(attr_name="Chunks", null=True)
    version = UnicodeAttribute(attr_name="Version", null=True)
    digest = UnicodeAttribute(attr_name="Digest", null=True)

    @classmethod
    def key_of(cls, namespace: str, key: str) -> tuple[str, str]:
        """The ``(PK, SK)`` of ``key``; raises ``InvalidKeyError`` for a bad key."""
        return partition_key(cls.entity, namespace, key), cls.VALUE_SORT_KEY

    @classmethod
    def build(
        cls,
        namespace: str,
        key: str,
        value: EncodedValue,
        *,
        now_ms: int,
        ttl_seconds: float,
    ) -> Self:
        """A ready-to-save item for ``key`` holding ``value``, indexed in GSI1."""
        pk, sk = cls.key_of(namespace, key)
        item = cls(
            pk,
            sk,
            data=value.payload,
            encoding=value.encoding.value,
            stored_bytes=value.size,
            created_at_ms=now_ms,
        )
        item.set_expiry(expiry_for_ttl(now_ms, ttl_seconds))
        item.index_under(namespace)
        return item

    @property
    def value_encoding(self) -> Encoding | str:
        """The payload's encoding (a str if written by a newer version of the library)."""
        try:
            return Encoding(self.encoding)
        except ValueError:
            return self.encoding


class CacheChunk(StoreItem):
    """One piece of a chunked value's payload.

    Key: the value's ``PK``, ``SK = CHUNK#<version>#<index>`` (index zero-padded, so a Query
    returns the pieces in order). Chunks are written before the head that names their
    version, so a reader that finds the head finds its chunks; they expire with the value, and
    the chunks of a replaced version are deleted by the writer that replaced it.
    """

    entity = Entity.CACHE
    CHUNK_PREFIX = "CHUNK#"

    data = BinaryAttribute(attr_name="Data", legacy_encoding=False)

    @classmethod
    def sort_key_prefix(cls, version: str) -> str:
        """The prefix every chunk of ``version`` has in ``SK``."""
        return f"{cls.CHUNK_PREFIX}{version}#"

    @classmethod
    def build(
        cls,
        namespace: str,
        key: str,
        *,
        version: str,
        index: int,
        data: bytes,
        expires_at_ms: int | None,
    ) -> Self:
        """Chunk ``index`` of ``version`` of ``key``'s value.

        Not in GSI1: the index projects every attribute, so an indexed chunk would be written
        (and billed) twice. ``clear`` and ``cleanup`` reach chunks through their head, and
        DynamoDB's TTL reaper through ``TTL``.
        """
        pk = partition_key(cls.entity, namespace, key)
        item = cls(pk, f"{cls.sort_key_prefix(version)}{index:05d}", data=data)
        item.set_expiry(expires_at_ms)
        return item
