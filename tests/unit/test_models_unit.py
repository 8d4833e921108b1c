"""Entity builders and expiry arithmetic, without a table."""

from __future__ import annotations

import pytest

from comic_vine_dynamodb_store.keys import GSI1_SHARDS, NEVER_EXPIRES_SORT_KEY
from comic_vine_dynamodb_store.models import (
    AdaptiveStats,
    CacheItem,
    DedupeJob,
    JobStatus,
    RateLimitEvent,
)
from comic_vine_dynamodb_store.models.cache import expiry_for_ttl
from comic_vine_dynamodb_store.serialization import encode_value

NOW_MS = 1_700_000_000_123


def test_ttl_seconds_give_an_exact_expiry_and_zero_never_expires() -> None:
    assert expiry_for_ttl(NOW_MS, 1) == NOW_MS + 1000
    assert expiry_for_ttl(NOW_MS, 0.25) == NOW_MS + 250
    assert expiry_for_ttl(NOW_MS, 0) is None
    with pytest.raises(ValueError, match="ttl_seconds"):
        expiry_for_ttl(NOW_MS, -1)


def test_cache_item_expiry_keeps_ms_precision_and_rounds_ttl_up() -> None:
    item = CacheItem.build("", "k", encode_value("v"), now_ms=NOW_MS, ttl_seconds=1)
    assert item.expires_at_ms_int == NOW_MS + 1000
    assert item.ttl is not None
    # The reaper's whole seconds never fall before the exact expiry.
    assert item.ttl.timestamp() == 1_700_000_002
    assert item.ttl.timestamp() * 1000 >= NOW_MS + 1000
    assert not item.is_expired(NOW_MS + 999)
    assert item.is_expired(NOW_MS + 1000)
    assert item.gsi1sk == f"{NOW_MS + 1000:015d}"


def test_an_item_that_never_expires_has_no_ttl_and_sorts_last_in_gsi1() -> None:
    item = CacheItem.build("", "k", encode_value("v"), now_ms=NOW_MS, ttl_seconds=0)
    assert item.ttl is None
    assert item.expires_at_ms is None
    assert item.gsi1sk == NEVER_EXPIRES_SORT_KEY
    assert not item.is_expired(10**15)


def test_every_entity_lands_in_its_own_gsi1_shards() -> None:
    items = [
        CacheItem.build("ns", "k", encode_value(1), now_ms=NOW_MS, ttl_seconds=5),
        DedupeJob.build_pending("ns", "k", job_id="j", owner_token="o", now_ms=NOW_MS, lease_ms=10),
        RateLimitEvent.build(
            "ns",
            "k",
            window_ms=60_000,
            slice_ms=1000,
            current_slice=0,
            counts=[],
            expires_at_ms=NOW_MS,
        ),
        AdaptiveStats.build(
            "ns",
            "k",
            expires_at_ms=NOW_MS,
            window_ms=60_000,
            current_slice=0,
            activity_ms=900_000,
            activity_slice=0,
        ),
    ]
    tags = ["CACHE", "DEDUPE", "RATELIMIT", "ADAPTIVE"]
    for item, tag in zip(items, tags, strict=True):
        assert item.pk == f"{tag}#ns#=k"
        assert item.gsi1pk is not None
        assert item.gsi1pk.startswith(f"{tag}#ns#SHARD#")
        assert 0 <= int(item.gsi1pk.rsplit("#", 1)[1]) < GSI1_SHARDS
    assert len({item.pk for item in items}) == 4


def test_dedupe_job_starts_pending_with_its_lease_as_expiry() -> None:
    job = DedupeJob.build_pending(
        "", "k", job_id="j1", owner_token="me", now_ms=NOW_MS, lease_ms=300_000
    )
    assert job.job_status is JobStatus.PENDING
    assert job.lease_expires_at_ms == NOW_MS + 300_000
    assert job.expires_at_ms_int == NOW_MS + 300_000
    with pytest.raises(ValueError, match="lease_ms"):
        DedupeJob.build_pending("", "k", job_id="j", owner_token="o", now_ms=NOW_MS, lease_ms=0)


def test_a_rate_limit_window_is_one_item_per_resource() -> None:
    assert RateLimitEvent.key_of("", "issues") == ("RATELIMIT##=issues", "WINDOW")
    window = RateLimitEvent.build(
        "",
        "issues",
        window_ms=60_000,
        slice_ms=1000,
        current_slice=NOW_MS // 1000,
        counts=[1, 2, 4],
        expires_at_ms=NOW_MS + 61_000,
    )
    assert window.ring() == (NOW_MS // 1000, (1, 2, 4))
    assert window.expires_at_ms_int == NOW_MS + 61_000
