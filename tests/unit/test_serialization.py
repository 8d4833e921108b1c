"""The value codec: strict JSON round trips, compression, DynamoDB item sizes."""

from __future__ import annotations

import datetime as dt
import enum
import math
import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter

from comic_vine_dynamodb_store.errors import ItemTooLargeError
from comic_vine_dynamodb_store.serialization import (
    MAX_ITEM_BYTES,
    CorruptValueError,
    Encoding,
    attribute_value_size,
    check_item_size,
    decode_value,
    encode_value,
    item_size,
    to_json_value,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


class Issue(BaseModel):
    id: int
    name: str
    volume: dict[str, Any] | None = None


@given(value=json_values)
def test_json_values_round_trip_exactly(value: Any) -> None:
    encoded = encode_value(value)
    assert decode_value(encoded.payload, encoded.encoding) == value


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, [1.0, math.nan], {"a": math.inf}])
def test_non_finite_numbers_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="finite"):
        encode_value(bad)


class Colour(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    "bad",
    [
        {1: "int key"},
        {("tuple",): "key"},
        (1, 2),
        {1, 2},
        b"bytes",
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        object(),
        Colour.RED,
        {"nested": [{"deep": {3}}]},
    ],
)
def test_values_json_would_coerce_or_reject_are_refused(bad: Any) -> None:
    with pytest.raises(TypeError):
        encode_value(bad)


def test_lone_surrogates_in_values_are_refused() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        encode_value({"name": "bad \ud800"})


def test_pydantic_models_are_stored_as_json_and_validated_back() -> None:
    issue = Issue(id=7, name="Saga #1", volume={"id": 3})
    encoded = encode_value(issue)
    assert decode_value(encoded.payload, encoded.encoding) == issue.model_dump(mode="json")
    assert decode_value(encoded.payload, encoded.encoding, TypeAdapter(Issue)) == issue
    # Models nested inside plain containers are converted too.
    nested = encode_value({"results": [issue]})
    assert decode_value(nested.payload, nested.encoding, TypeAdapter(dict[str, list[Issue]])) == {
        "results": [issue]
    }


def test_a_value_failing_value_type_is_corrupt_not_a_crash() -> None:
    encoded = encode_value({"id": "not a number", "name": 1})
    with pytest.raises(CorruptValueError, match="value_type"):
        decode_value(encoded.payload, encoded.encoding, TypeAdapter(Issue))


def test_large_repetitive_values_are_compressed_and_small_ones_are_not() -> None:
    page = {"results": [{"id": i, "name": f"Issue {i}", "deck": "x" * 200} for i in range(200)]}
    encoded = encode_value(page)
    assert encoded.encoding is Encoding.ZLIB_JSON
    assert encoded.size * 4 < encoded.json_size
    assert decode_value(encoded.payload, encoded.encoding) == page
    small = encode_value({"id": 1})
    assert small.encoding is Encoding.JSON
    assert small.payload == b'{"id":1}'


def test_incompressible_values_stay_uncompressed() -> None:
    noise = os.urandom(6000).hex()  # hex of random bytes: zlib cannot shrink much below it
    encoded = encode_value(noise)
    # Either way the payload must never be larger than the plain JSON text.
    assert encoded.size <= encoded.json_size
    assert decode_value(encoded.payload, encoded.encoding) == noise


@pytest.mark.parametrize(
    ("payload", "encoding"),
    [
        (b"\x78\x9cnot zlib", "zlib+json"),
        (b"{not json", "json"),
        (b"\xff\xfe", "json"),
        (b"{}", "br"),
    ],
)
def test_undecodable_payloads_raise_corrupt_value_error(payload: bytes, encoding: str) -> None:
    with pytest.raises(CorruptValueError):
        decode_value(payload, encoding)


def test_to_json_value_is_iterative_and_too_deep_values_are_a_value_error() -> None:
    deep: Any = "leaf"
    for _ in range(5000):
        deep = [deep]
    converted: Any = to_json_value(deep)  # no RecursionError in the walk itself
    for _ in range(5000):
        converted = converted[0]
    assert converted == "leaf"
    with pytest.raises(ValueError, match="nested"):
        encode_value(deep)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ({"S": "abc"}, 3),
        ({"S": "é"}, 2),
        ({"B": b"\x00\x01"}, 2),
        ({"BOOL": True}, 1),
        ({"NULL": True}, 1),
        # Numbers: base-100 pairs aligned on the decimal point, + 1, + 1 if negative; each
        # figure measured against DynamoDB Local at the 400 KB item limit.
        ({"N": "12345"}, 4),  # 1|23|45
        ({"N": "1234"}, 3),  # 12|34
        ({"N": "1795641234560"}, 8),  # 1|79|56|41|23|45|60
        ({"N": "100"}, 2),  # 1|00: trailing zero pairs are trimmed
        ({"N": "0.0100"}, 2),  # .01
        ({"N": "1.5"}, 3),  # 1|.50
        ({"N": "123.456"}, 5),  # 1|23|.45|60
        ({"N": "-1"}, 3),
        ({"N": "-12345"}, 5),
        ({"N": "0"}, 1),
        ({"N": "9" * 38}, 20),
        ({"L": [{"S": "a"}, {"S": "bc"}]}, 3 + (1 + 1) + (2 + 1)),
        ({"M": {"k": {"S": "v"}}}, 3 + 1 + 1 + 1),
        ({"SS": ["a", "bb"]}, 3),
    ],
)
def test_attribute_sizes_follow_dynamodbs_accounting(value: dict[str, Any], size: int) -> None:
    assert attribute_value_size(value) == size


def test_item_size_counts_attribute_names_and_the_limit_is_enforced() -> None:
    item: dict[str, Any] = {"PK": {"S": "abc"}, "Data": {"B": b"x" * 10}}
    assert item_size(item) == 2 + 3 + 4 + 10
    at_limit: dict[str, Any] = {
        "PK": {"S": "k"},
        "Data": {"B": b"x" * (MAX_ITEM_BYTES - 2 - 1 - 4)},
    }
    assert check_item_size(at_limit) == MAX_ITEM_BYTES
    over: dict[str, Any] = {
        "PK": {"S": "k"},
        "Data": {"B": b"x" * (MAX_ITEM_BYTES - 2 - 1 - 4 + 1)},
    }
    with pytest.raises(ItemTooLargeError) as caught:
        check_item_size(over, operation="PutItem", table="t")
    assert caught.value.size_bytes == MAX_ITEM_BYTES + 1
    assert caught.value.limit_bytes == MAX_ITEM_BYTES
    assert caught.value.table == "t"
