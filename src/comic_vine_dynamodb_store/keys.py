"""Key layout of the single table: how a user key or resource becomes a ``PK``/``SK`` pair.

Every item key has the shape ``<ENTITY>#<namespace>#<form><body>``:

* ``ENTITY`` is one of the fixed tags of :class:`Entity` (``CACHE``, ``DEDUPE``, ...), none
  containing ``#``, so two entities can never address the same item;
* ``namespace`` is the optional ``key_prefix`` option, restricted to ``[A-Za-z0-9_.-]`` (no
  ``#``), so the second ``#`` always ends it; it is empty by default;
* ``form`` is ``=`` when ``body`` is the user key itself and ``~`` when ``body`` is the SHA-256
  of a key too long for DynamoDB's key limits, so a hashed key can never equal a literal one.

The mapping (entity, namespace, key) -> PK is therefore injective: no user key, however it is
chosen, reaches another entity's or another namespace's items.

GSI1 serves the store-wide operations (stats, cleanup, clear). Its partition key spreads an
entity's items over :data:`GSI1_SHARDS` shards (chosen from a hash of the PK, so no index
partition is hot), and its sort key is the item's expiry, zero-padded, so "every expired item"
is a range query (``GSI1SK < now``) instead of a scan.
"""

from __future__ import annotations

import enum
import hashlib
import re

from comic_vine_dynamodb_store.errors import ConfigurationError, InvalidKeyError

__all__ = [
    "GSI1_SHARDS",
    "MAX_PARTITION_KEY_BYTES",
    "MAX_SORT_KEY_BYTES",
    "NEVER_EXPIRES_SORT_KEY",
    "Entity",
    "expiry_sort_key",
    "gsi1_partition_key",
    "gsi1_partition_keys",
    "health_probe_key",
    "partition_key",
    "shard_of",
    "validate_key",
    "validate_namespace",
]

MAX_PARTITION_KEY_BYTES = 2048
"""DynamoDB's limit on a partition key value (UTF-8 bytes)."""

MAX_SORT_KEY_BYTES = 1024
"""DynamoDB's limit on a sort key value (UTF-8 bytes)."""

GSI1_SHARDS = 16
"""Shards per entity and namespace in GSI1.

Fixed rather than configurable: every process sharing a table must agree on it, or a
store-wide operation would miss the shards it does not know about.
"""

_EXPIRY_DIGITS = 15
NEVER_EXPIRES_SORT_KEY = "~"
"""GSI1SK of an item that never expires: sorts after every zero-padded expiry."""

_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.-]{0,64}")


class Entity(enum.StrEnum):
    """The item kinds sharing the table; the value is the key tag."""

    CACHE = "CACHE"
    DEDUPE = "DEDUPE"
    RATE_LIMIT = "RATELIMIT"
    ADAPTIVE = "ADAPTIVE"


def validate_key(key: object, *, what: str = "key") -> str:
    """Return ``key`` if it can address an item, else raise :class:`InvalidKeyError`.

    Runs before any request, so a bad key never reaches DynamoDB. A str with a lone
    surrogate (e.g. from ``os.fsdecode`` of bad bytes) is not valid UTF-8 and DynamoDB would
    reject it mid-operation; it is refused here instead.
    """
    if not isinstance(key, str):
        raise InvalidKeyError(f"{what} must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKeyError(f"{what} must not be empty")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"{what} is not valid UTF-8 (lone surrogate)") from exc
    return key


def validate_namespace(namespace: str) -> str:
    """Check a ``key_prefix``: up to 64 of ``[A-Za-z0-9_.-]``, empty meaning none."""
    if not isinstance(namespace, str) or not _NAMESPACE_RE.fullmatch(namespace):
        raise ConfigurationError(
            "key_prefix must be up to 64 characters of A-Z, a-z, 0-9, '_', '.', '-'",
            field="key_prefix",
        )
    return namespace


def partition_key(entity: Entity, namespace: str, key: str) -> str:
    """Build the PK of ``key`` for ``entity``, hashing keys that would exceed 2048 bytes.

    Raises :class:`InvalidKeyError` for a bad key and :class:`ConfigurationError` for a bad
    namespace, before any request is sent.
    """
    validate_key(key)
    validate_namespace(namespace)
    head = f"{entity.value}#{namespace}#"
    literal = f"{head}={key}"
    if len(literal.encode("utf-8")) <= MAX_PARTITION_KEY_BYTES:
        return literal
    return f"{head}~{hashlib.sha256(key.encode('utf-8')).hexdigest()}"


def health_probe_key(entity: Entity, namespace: str) -> str:
    """A PK no user key can produce (``!`` is neither ``=`` nor ``~``): health checks read it."""
    validate_namespace(namespace)
    return f"{entity.value}#{namespace}#!health"


def shard_of(pk: str) -> int:
    """The GSI1 shard of an item: stable across processes and Python runs (not ``hash()``)."""
    digest = hashlib.blake2b(pk.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") % GSI1_SHARDS


def gsi1_partition_key(entity: Entity, namespace: str, shard: int) -> str:
    """GSI1PK of one shard of an entity's items in a namespace."""
    if not 0 <= shard < GSI1_SHARDS:
        raise ValueError(f"shard must be in [0, {GSI1_SHARDS}), got {shard}")
    return f"{entity.value}#{namespace}#SHARD#{shard:02d}"


def gsi1_partition_keys(entity: Entity, namespace: str) -> list[str]:
    """Every GSI1PK of an entity in a namespace: what a store-wide operation queries."""
    return [gsi1_partition_key(entity, namespace, shard) for shard in range(GSI1_SHARDS)]


def expiry_sort_key(expires_at_ms: int | None) -> str:
    """GSI1SK for an expiry: zero-padded ms so string order is time order; ``~`` for never."""
    if expires_at_ms is None:
        return NEVER_EXPIRES_SORT_KEY
    if expires_at_ms < 0:
        raise ValueError("expires_at_ms must not be negative")
    return f"{expires_at_ms:0{_EXPIRY_DIGITS}d}"
