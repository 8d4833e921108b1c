"""The value codec: what a stored value looks like in an item, and how big that item is.

A value is JSON (plus pydantic models, stored as their JSON form). The codec is strict on the
way in, so what comes back out equals what went in: NaN and infinities, dict keys that are not
str, tuples, sets, bytes, datetimes and every other type JSON would coerce or reject raise
``TypeError``/``ValueError`` before anything is written. JSON text above
:data:`COMPRESSION_MIN_BYTES` is zlib-compressed when that makes it smaller; API responses
(the main use) typically shrink 4-6x.

Item sizes follow DynamoDB's own accounting (attribute names count, numbers by significant
digits, 3 bytes per list/map plus 1 per element), so :func:`check_item_size` refuses an item
before DynamoDB would, with :class:`ItemTooLargeError` instead of a ``ValidationException``.
"""

from __future__ import annotations

import enum
import json
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeAlias

from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from comic_vine_dynamodb_store.errors import ConfigurationError, ItemTooLargeError

__all__ = [
    "COMPRESSION_MIN_BYTES",
    "MAX_ITEM_BYTES",
    "CorruptValueError",
    "EncodedValue",
    "Encoding",
    "JSONValue",
    "attribute_value_size",
    "check_item_size",
    "decode_value",
    "encode_value",
    "item_size",
    "to_json_value",
]

JSONValue: TypeAlias = dict[str, "JSONValue"] | list["JSONValue"] | str | int | float | bool | None

MAX_ITEM_BYTES = 400 * 1024
"""DynamoDB's item size limit, attribute names included."""

COMPRESSION_MIN_BYTES = 1024
"""Below this, compression rarely pays for its header and CPU."""

_ZLIB_LEVEL = 6


class Encoding(enum.StrEnum):
    """How ``payload`` holds the JSON text; stored in the item beside it."""

    JSON = "json"
    ZLIB_JSON = "zlib+json"


class CorruptValueError(ValueError):
    """Stored bytes that do not decode: callers treat them as a miss, never a crash."""


@dataclass(frozen=True, slots=True)
class EncodedValue:
    """A value ready for an item: ``payload`` bytes, their ``encoding``, the JSON size."""

    payload: bytes
    encoding: Encoding
    json_size: int

    @property
    def size(self) -> int:
        """Bytes the payload takes in the item."""
        return len(self.payload)


def to_json_value(value: object) -> JSONValue:
    """Return ``value`` as plain JSON data, refusing anything that would not round-trip.

    Pydantic models (at any depth) become their ``model_dump(mode="json")``. Iterative, so
    deeply nested values cannot exhaust the stack.
    """
    root: list[JSONValue] = [None]
    # Each entry: (value to convert, container to write into, index or key in it).
    stack: list[tuple[object, Any, Any]] = [(value, root, 0)]
    while stack:
        current, parent, slot = stack.pop()
        if isinstance(current, BaseModel):
            current = current.model_dump(mode="json")
        if current is None or isinstance(current, str | bool):
            parent[slot] = current
        elif isinstance(current, int):
            parent[slot] = int(current)  # an IntEnum is stored as its number
        elif isinstance(current, float):
            if not math.isfinite(current):
                raise ValueError(f"{current!r} is not a finite number; JSON cannot hold it")
            parent[slot] = float(current)
        elif isinstance(current, dict):
            converted: dict[str, JSONValue] = {}
            for key, item in current.items():
                if not isinstance(key, str):
                    raise TypeError(
                        f"dict keys must be str to round-trip through JSON, "
                        f"got {type(key).__name__}"
                    )
                converted[key] = None
                stack.append((item, converted, key))
            parent[slot] = converted
        elif isinstance(current, list):
            items: list[JSONValue] = [None] * len(current)
            stack.extend((item, items, index) for index, item in enumerate(current))
            parent[slot] = items
        else:
            raise TypeError(
                f"{type(current).__name__} is not JSON data (dict, list, str, int, float, "
                "bool, None) or a pydantic model"
            )
    return root[0]


def encode_value(value: object, *, compress_min_bytes: int = COMPRESSION_MIN_BYTES) -> EncodedValue:
    """Encode ``value`` for storage, compressing when it is large and that helps."""
    data = to_json_value(value)
    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("value holds a string that is not valid UTF-8 (lone surrogate)") from exc
    except RecursionError as exc:
        raise ValueError("value is nested too deeply to encode as JSON") from exc
    if len(raw) >= compress_min_bytes:
        packed = zlib.compress(raw, _ZLIB_LEVEL)
        if len(packed) < len(raw):
            return EncodedValue(packed, Encoding.ZLIB_JSON, len(raw))
    return EncodedValue(raw, Encoding.JSON, len(raw))


def decode_value(payload: bytes, encoding: str, value_type: TypeAdapter[Any] | None = None) -> Any:
    """Decode stored bytes; with ``value_type``, validate them into that type.

    Raises :class:`CorruptValueError` for anything that does not decode or validate.
    """
    try:
        if encoding == Encoding.ZLIB_JSON:
            payload = zlib.decompress(payload)
        elif encoding != Encoding.JSON:
            raise CorruptValueError(f"unknown encoding {encoding!r}")
        data = json.loads(payload.decode("utf-8"))
        if value_type is not None:
            return value_type.validate_python(data)
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptValueError(f"stored value does not decode: {exc}") from exc
    except PydanticValidationError as exc:
        raise CorruptValueError(f"stored value does not match value_type: {exc}") from exc
    return data


def _number_size(text: str) -> int:
    """Bytes DynamoDB stores a number in: base-100 digit pairs aligned on the decimal point.

    Pairs from the highest to the lowest non-zero one, plus one byte, plus one more for a
    negative number (measured against DynamoDB Local at the item size limit).
    """
    # as_tuple() of the exact value: normalize() would round to 28 digits, DynamoDB keeps 38.
    sign, digit_tuple, exponent = Decimal(text).as_tuple()
    assert isinstance(exponent, int)  # finite: DynamoDB has no NaN or infinity
    digits = list(digit_tuple)
    while digits and digits[-1] == 0:
        digits.pop()
        exponent += 1
    while digits and digits[0] == 0:
        digits.pop(0)
    if not digits:
        return 1
    highest_power = exponent + len(digits) - 1
    lowest_power = exponent
    pairs = highest_power // 2 - lowest_power // 2 + 1
    return pairs + 1 + sign


def attribute_value_size(value: Mapping[str, Any]) -> int:
    """Size in bytes of one DynamoDB attribute value (``{"S": ...}``, ``{"M": ...}``, ...)."""
    ((kind, inner),) = value.items()
    match kind:
        case "S":
            size = len(inner.encode("utf-8"))
        case "N":
            size = _number_size(inner)
        case "B":
            size = len(inner)
        case "BOOL" | "NULL":
            size = 1
        case "SS":
            size = sum(len(s.encode("utf-8")) for s in inner)
        case "NS":
            size = sum(_number_size(n) for n in inner)
        case "BS":
            size = sum(len(b) for b in inner)
        case "L":
            size = 3 + sum(attribute_value_size(v) + 1 for v in inner)
        case "M":
            size = 3 + sum(
                len(k.encode("utf-8")) + attribute_value_size(v) + 1 for k, v in inner.items()
            )
        case _:
            raise ValueError(f"unknown DynamoDB attribute type {kind!r}")
    return size


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """Size in bytes of a serialized item, as DynamoDB counts it against the 400 KB limit."""
    return sum(len(name.encode("utf-8")) + attribute_value_size(v) for name, v in item.items())


def check_item_size(
    item: Mapping[str, Mapping[str, Any]],
    *,
    limit_bytes: int = MAX_ITEM_BYTES,
    operation: str | None = None,
    table: str | None = None,
) -> int:
    """Return the item's size, or raise :class:`ItemTooLargeError` above ``limit_bytes``."""
    size = item_size(item)
    if size > limit_bytes:
        raise ItemTooLargeError(
            f"item is {size} bytes, above DynamoDB's {limit_bytes}-byte item limit",
            size_bytes=size,
            limit_bytes=limit_bytes,
            operation=operation,
            table=table,
        )
    return size


def type_adapter_for(value_type: Any) -> TypeAdapter[Any] | None:
    """The validator of a store's ``value_type`` (``None``: values are not validated).

    A ``value_type`` pydantic cannot build a validator for raises
    :class:`~comic_vine_dynamodb_store.errors.ConfigurationError` when the store is made,
    not a pydantic (or ``SyntaxError``, for a string) error at its first use.
    """
    if value_type is None:
        return None
    try:
        return TypeAdapter(value_type)
    except Exception as exc:  # pydantic's schema errors, and NameError/SyntaxError of a str
        raise ConfigurationError(
            f"value_type {value_type!r} is not a type values can be validated against: {exc}",
            field="value_type",
        ) from exc
