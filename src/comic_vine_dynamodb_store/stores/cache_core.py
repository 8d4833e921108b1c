"""The cache rules both cache stores share, with no I/O: what may be stored, what a read yields.

Keeping them in one place is what makes the in-memory twin behave like the DynamoDB store: the
same values are refused with the same errors, and a read reports hit, miss or decode error the
same way.
"""

from __future__ import annotations

from typing import Any

from blinker import NamedSignal
from pydantic import TypeAdapter

from comic_vine_dynamodb_store.errors import ItemTooLargeError
from comic_vine_dynamodb_store.keys import validate_key
from comic_vine_dynamodb_store.models.cache import expiry_for_ttl
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.serialization import (
    CorruptValueError,
    EncodedValue,
    decode_value,
    encode_value,
)

__all__ = ["encode_for_set", "read_value"]


def encode_for_set(
    key: str, value: object, ttl_seconds: float, *, max_value_bytes: int, table: str
) -> EncodedValue:
    """Check a ``set`` before anything is written, in the order users see the errors.

    Bad key: ``InvalidKeyError``; negative TTL: ``ValueError``; a value JSON cannot hold:
    ``TypeError``/``ValueError``; above ``max_value_bytes``: ``ItemTooLargeError``.
    """
    validate_key(key)
    expiry_for_ttl(0, ttl_seconds)
    encoded = encode_value(value)
    if encoded.size > max_value_bytes:
        raise ItemTooLargeError(
            f"value is {encoded.size} bytes stored, above max_value_bytes ({max_value_bytes})",
            size_bytes=encoded.size,
            limit_bytes=max_value_bytes,
            operation="set",
            table=table,
        )
    return encoded


def read_value(
    sender: object,
    *,
    store: str,
    table: str,
    key: str,
    stored: tuple[bytes, str] | None,
    value_type: TypeAdapter[Any] | None,
    broken: str | None = None,
) -> Any:
    """The value a ``get`` returns for ``stored`` (payload and encoding, None if nothing live),
    announcing a hit, a miss, or a decode error (which reads as a miss). ``broken`` says why
    a value that is there could not be read whole (reported as a decode error)."""

    def announce(signal: NamedSignal, error: str | None = None) -> None:
        signals.send(
            signal,
            sender,
            lambda: signals.CacheEvent(store=store, table=table, key=key, error=error),
        )

    if broken is not None:
        announce(signals.cache_decode_error, broken)
        return None
    if stored is None:
        announce(signals.cache_miss)
        return None
    try:
        value = decode_value(stored[0], stored[1], value_type)
    except CorruptValueError as exc:
        announce(signals.cache_decode_error, str(exc))
        return None
    announce(signals.cache_hit)
    return value
