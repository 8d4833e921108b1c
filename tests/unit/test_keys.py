"""Key layout: validation, injectivity across entities and namespaces, hashing at the limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comic_vine_dynamodb_store.errors import ConfigurationError, InvalidKeyError
from comic_vine_dynamodb_store.keys import (
    GSI1_SHARDS,
    MAX_PARTITION_KEY_BYTES,
    Entity,
    expiry_sort_key,
    gsi1_partition_key,
    gsi1_partition_keys,
    partition_key,
    shard_of,
    validate_key,
    validate_namespace,
)

namespaces = st.from_regex(r"[A-Za-z0-9_.-]{0,8}", fullmatch=True)
# Any str that is valid UTF-8 (no lone surrogates), including '#', '=', '~' and long ones.
user_keys = (
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40)
    | st.text(alphabet="#=~a", min_size=1, max_size=12)
    | st.just("x" * 3000)
)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", "empty"),
        (None, "str"),
        (b"bytes", "str"),
        (42, "str"),
        ("lone \udc80 surrogate", "UTF-8"),
    ],
)
def test_invalid_keys_are_refused_with_a_typed_error(bad: object, message: str) -> None:
    with pytest.raises(InvalidKeyError, match=message):
        validate_key(bad)
    with pytest.raises(InvalidKeyError):
        partition_key(Entity.CACHE, "", bad)  # type: ignore[arg-type]


def test_invalid_key_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        validate_key("")


@given(
    first=st.tuples(st.sampled_from(Entity), namespaces, user_keys),
    second=st.tuples(st.sampled_from(Entity), namespaces, user_keys),
)
def test_distinct_entity_namespace_key_triples_never_share_a_partition_key(
    first: tuple[Entity, str, str], second: tuple[Entity, str, str]
) -> None:
    if first != second:
        assert partition_key(*first) != partition_key(*second)
    else:
        assert partition_key(*first) == partition_key(*second)


def test_a_key_spelling_another_entity_or_namespace_stays_in_its_own() -> None:
    # A user key crafted to look like a cache key of namespace "ns" must not reach it.
    forged = partition_key(Entity.CACHE, "", "ns#=k")
    assert forged != partition_key(Entity.CACHE, "ns", "k")
    assert partition_key(Entity.DEDUPE, "", "k") != partition_key(Entity.CACHE, "", "k")
    # ... and a namespace that could blur the boundary is refused outright.
    with pytest.raises(ConfigurationError):
        partition_key(Entity.CACHE, "a#=b", "c")


@given(key=user_keys, namespace=namespaces, entity=st.sampled_from(Entity))
def test_partition_keys_always_fit_dynamodb_limits(
    key: str, namespace: str, entity: Entity
) -> None:
    assert len(partition_key(entity, namespace, key).encode("utf-8")) <= MAX_PARTITION_KEY_BYTES


def test_keys_are_hashed_exactly_when_they_would_exceed_the_limit() -> None:
    head = len(b"CACHE##=")
    fits = "k" * (MAX_PARTITION_KEY_BYTES - head)
    too_long = fits + "k"
    assert partition_key(Entity.CACHE, "", fits) == f"CACHE##={fits}"
    hashed = partition_key(Entity.CACHE, "", too_long)
    assert hashed.startswith("CACHE##~")
    assert len(hashed) == head + 64
    # Multi-byte characters count as bytes, not characters.
    wide = "é" * ((MAX_PARTITION_KEY_BYTES - head) // 2 + 1)
    assert partition_key(Entity.CACHE, "", wide).startswith("CACHE##~")


def test_a_literal_key_cannot_equal_a_hashed_one() -> None:
    too_long = "z" * 5000
    hashed = partition_key(Entity.CACHE, "", too_long)
    digest = hashed.removeprefix("CACHE##~")
    assert partition_key(Entity.CACHE, "", "~" + digest) != hashed
    assert partition_key(Entity.CACHE, "", digest) != hashed


@pytest.mark.parametrize("bad", ["a#b", "x" * 65, "spaces not allowed", "é"])
def test_namespaces_with_separators_or_odd_characters_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        validate_namespace(bad)
    assert caught.value.field == "key_prefix"


def test_shards_are_stable_and_in_range() -> None:
    pks = [partition_key(Entity.CACHE, "", f"key-{i}") for i in range(2000)]
    shards = [shard_of(pk) for pk in pks]
    assert all(0 <= shard < GSI1_SHARDS for shard in shards)
    assert shards == [shard_of(pk) for pk in pks]
    # Spread: every shard gets a fair share of 2000 keys (expected 125 each).
    counts = [shards.count(shard) for shard in range(GSI1_SHARDS)]
    assert min(counts) > 60
    # Pinned values: every process and every release must put an item in the same shard,
    # or store-wide operations over an existing table would miss items.
    assert [shard_of(f"CACHE##=key-{i}") for i in range(5)] == [14, 4, 10, 6, 4]


def test_gsi1_partitions_cover_every_shard_once_per_entity_and_namespace() -> None:
    keys = gsi1_partition_keys(Entity.CACHE, "ns")
    assert len(set(keys)) == GSI1_SHARDS
    assert set(keys).isdisjoint(gsi1_partition_keys(Entity.DEDUPE, "ns"))
    assert set(keys).isdisjoint(gsi1_partition_keys(Entity.CACHE, ""))
    with pytest.raises(ValueError, match="shard"):
        gsi1_partition_key(Entity.CACHE, "", GSI1_SHARDS)


@given(a=st.integers(0, 10**15 - 1), b=st.integers(0, 10**15 - 1))
def test_expiry_sort_keys_sort_like_the_times_they_hold(a: int, b: int) -> None:
    assert (expiry_sort_key(a) < expiry_sort_key(b)) == (a < b)
    assert expiry_sort_key(a) < expiry_sort_key(None)


def test_negative_expiry_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        expiry_sort_key(-1)
