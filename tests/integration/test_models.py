"""The entities against a real DynamoDB Local: binding, expiry, GSI1, conditions, sizes."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from pynamodb.exceptions import PutError

from comic_vine_dynamodb_store.clock import system_clock_ms
from comic_vine_dynamodb_store.config import StoreOptions
from comic_vine_dynamodb_store.keys import GSI1_SHARDS, shard_of
from comic_vine_dynamodb_store.models import (
    AdaptiveStats,
    CacheItem,
    DedupeJob,
    RateLimitEvent,
    StoreItem,
    TableBinding,
)
from comic_vine_dynamodb_store.resilience.transport import RequestMeter, metering
from comic_vine_dynamodb_store.serialization import MAX_ITEM_BYTES, encode_value, item_size
from comic_vine_dynamodb_store.table import create_table

REGION = "us-east-1"


def bound(endpoint: str, table: str, entity: type[Any], **options: Any) -> Any:
    binding = TableBinding.from_options(
        StoreOptions(table_name=table, endpoint=endpoint, region=REGION, **options)
    )
    return binding.model(entity)


def raw_item(model: type[StoreItem], pk: str, sk: str) -> dict[str, Any]:
    """The item as DynamoDB holds it, bypassing every helper (expired or not)."""
    connection = model._get_connection()
    response = connection.get_item(pk, range_key=sk, consistent_read=True)
    return dict(response.get("Item", {}))


def test_two_bindings_in_one_process_talk_to_two_tables(
    endpoint: str, table_name: str, make_table_name: Any
) -> None:
    other = make_table_name()
    create_table(other, endpoint=endpoint, region=REGION)
    cache_a = bound(endpoint, table_name, CacheItem)
    cache_b = bound(endpoint, other, CacheItem)
    assert cache_a is not cache_b
    now = system_clock_ms()
    cache_a.build("", "shared-key", encode_value("in A"), now_ms=now, ttl_seconds=0).save()
    cache_b.build("", "shared-key", encode_value("in B"), now_ms=now, ttl_seconds=0).save()
    key = CacheItem.key_of("", "shared-key")
    assert cache_a.get_live(*key).data == b'"in A"'
    assert cache_b.get_live(*key).data == b'"in B"'
    # Index queries follow the binding too, not the unbound base class.
    assert [item.data for item in cache_a.iter_index("")] == [b'"in A"']
    assert [item.data for item in cache_b.iter_index("")] == [b'"in B"']


def test_equal_bindings_share_one_class_and_settings_reach_the_connection(endpoint: str) -> None:
    first = bound(endpoint, "settings-table", CacheItem, max_retries=7)
    assert bound(endpoint, "settings-table", CacheItem, max_retries=7) is first
    assert bound(endpoint, "settings-table", CacheItem, max_retries=1) is not first
    connection = first._get_connection().connection
    assert connection.host == endpoint
    assert connection._max_retry_attempts_exception == 7
    timed = bound(endpoint, "settings-table", CacheItem, circuit_breaker={"timeout_ms": 1500})
    config = timed._get_connection().connection.client.meta.config
    # Each attempt gets half of timeout_ms to read and a quarter to connect.
    assert (config.read_timeout, config.connect_timeout) == (0.75, 0.375)


def test_bindings_work_from_many_threads_at_once(endpoint: str, table_name: str) -> None:
    cache = bound(endpoint, table_name, CacheItem)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                item = cache.build(
                    "", f"t{n}-{i}", encode_value(i), now_ms=system_clock_ms(), ttl_seconds=60
                )
                item.save()
                assert cache.get_live(*CacheItem.key_of("", f"t{n}-{i}")).data == str(i).encode()
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(1 for _ in cache.iter_index("")) == 80


def test_each_entity_round_trips(endpoint: str, table_name: str) -> None:
    now = system_clock_ms()
    cache = bound(endpoint, table_name, CacheItem)
    cache.build("ns", "k", encode_value({"id": 1}), now_ms=now, ttl_seconds=60).save()
    got = cache.get_live(*CacheItem.key_of("ns", "k"), now_ms=now)
    assert (got.data, got.encoding, got.expires_at_ms_int) == (b'{"id":1}', "json", now + 60_000)

    dedupe = bound(endpoint, table_name, DedupeJob)
    dedupe.build_pending("ns", "k", job_id="j1", owner_token="o1", now_ms=now, lease_ms=5000).save()
    job = dedupe.get_live(*DedupeJob.key_of("ns", "k"), now_ms=now)
    assert (job.job_id, job.owner_token, job.status) == ("j1", "o1", "pending")

    windows = bound(endpoint, table_name, RateLimitEvent)
    windows.build(
        "ns",
        "r",
        window_ms=3000,
        slice_ms=1000,
        current_slice=now // 1000,
        counts=[0, 5, 7, 3],
        expires_at_ms=now + 10_000,
    ).save()
    window = list(windows.query_live(RateLimitEvent.key_of("ns", "r")[0], now_ms=now))
    assert [w.ring() for w in window] == [(now // 1000, (0, 5, 7, 3))]

    stats = bound(endpoint, table_name, AdaptiveStats)
    item = stats.build(
        "ns",
        "r",
        expires_at_ms=now + 10_000,
        window_ms=3000,
        current_slice=now // 1000,
        activity_ms=9000,
        activity_slice=now // 3000,
    )
    item.user_reserved, item.background_paused, item.reason = 60, True, "high activity"
    item.save()
    got_stats = stats.get_live(*AdaptiveStats.key_of("ns", "r"))
    assert (got_stats.user_reserved, got_stats.background_paused, got_stats.reason) == (
        60,
        True,
        "high activity",
    )
    # Entities never see each other's items, though they share user keys and the table.
    assert cache.get_live(*CacheItem.key_of("ns", "k")).data == b'{"id":1}'
    with pytest.raises(ValueError, match="not a CACHE key"):
        cache.get_live(*DedupeJob.key_of("ns", "k"))
    with pytest.raises(ValueError, match="not a DEDUPE key"):
        list(dedupe.query_live(CacheItem.key_of("ns", "k")[0]))


def test_an_expired_item_not_yet_deleted_is_invisible_to_every_helper(
    endpoint: str, table_name: str
) -> None:
    cache = bound(endpoint, table_name, CacheItem)
    now = system_clock_ms()
    cache.build("", "stale", encode_value("old"), now_ms=now, ttl_seconds=1).save()
    cache.build("", "fresh", encode_value("new"), now_ms=now, ttl_seconds=3600).save()
    later = now + 1000  # exactly at the expiry of "stale": expired
    pk, sk = CacheItem.key_of("", "stale")
    # It is still in the table (TTL deletion is days late in DynamoDB) ...
    assert raw_item(cache, pk, sk)["ExpiresAt"] == {"N": str(now + 1000)}
    # ... but no helper returns it.
    assert cache.get_live(pk, sk, now_ms=later) is None
    assert list(cache.query_live(pk, now_ms=later)) == []
    assert [i.pk for i in cache.iter_index("", live_at_ms=later)] == [
        CacheItem.key_of("", "fresh")[0]
    ]
    # Store-wide cleanup finds exactly the expired one through GSI1.
    assert [i.pk for i in cache.iter_index("", expired_at_ms=later)] == [pk]
    # One ms earlier it was live everywhere.
    assert cache.get_live(pk, sk, now_ms=later - 1) is not None
    assert len(list(cache.query_live(pk, now_ms=later - 1))) == 1


def test_conditional_writes_treat_an_expired_item_as_absent(endpoint: str, table_name: str) -> None:
    jobs = bound(endpoint, table_name, DedupeJob)
    now = system_clock_ms()
    jobs.build_pending("", "k", job_id="first", owner_token="a", now_ms=now, lease_ms=1000).save()
    second = jobs.build_pending(
        "", "k", job_id="second", owner_token="b", now_ms=now, lease_ms=1000
    )
    with pytest.raises(PutError) as caught:
        second.save(condition=jobs.absent_or_expired_condition(now + 999))
    assert caught.value.cause_response_code == "ConditionalCheckFailedException"
    second.save(condition=jobs.absent_or_expired_condition(now + 1000))
    assert jobs.get_live(*DedupeJob.key_of("", "k"), now_ms=now).job_id == "second"
    # A missing item passes the same condition.
    fresh = jobs.build_pending("", "new", job_id="x", owner_token="c", now_ms=now, lease_ms=1000)
    fresh.save(condition=jobs.absent_or_expired_condition(now))
    # live_condition is the complement for an existing item.
    with pytest.raises(PutError):
        fresh.save(condition=jobs.live_condition(now + 1000))
    fresh.save(condition=jobs.live_condition(now + 999))


def test_long_keys_are_hashed_and_still_address_one_item(endpoint: str, table_name: str) -> None:
    cache = bound(endpoint, table_name, CacheItem)
    now = system_clock_ms()
    long_a, long_b = "a" * 5000, "a" * 4999 + "b"
    cache.build("", long_a, encode_value("A"), now_ms=now, ttl_seconds=0).save()
    cache.build("", long_b, encode_value("B"), now_ms=now, ttl_seconds=0).save()
    assert cache.get_live(*CacheItem.key_of("", long_a)).data == b'"A"'
    assert cache.get_live(*CacheItem.key_of("", long_b)).data == b'"B"'
    unicode_key = "€" * 1000  # 3000 bytes in UTF-8, only 1000 characters
    cache.build("", unicode_key, encode_value("U"), now_ms=now, ttl_seconds=0).save()
    assert cache.get_live(*CacheItem.key_of("", unicode_key)).data == b'"U"'


def _item_of_size(cache: Any, target: int, created_at_ms: int) -> Any:
    item = cache.build("", "big", encode_value(""), now_ms=created_at_ms, ttl_seconds=60)
    overhead = item_size(item.serialize())
    item.data = b"x" * (len(item.data) + target - overhead)
    assert item_size(item.serialize()) == target
    return item


# Numbers are sized in base-100 pairs: a trailing 0, a 1-digit tail, an odd digit count.
@pytest.mark.parametrize("created_at_ms", [1_795_641_234_560, 1_795_641_234_561, 10**12 + 5])
def test_item_size_accounting_matches_dynamodbs_limit(
    endpoint: str, table_name: str, created_at_ms: int
) -> None:
    cache = bound(endpoint, table_name, CacheItem)
    # Exactly at the limit: DynamoDB accepts it.
    _item_of_size(cache, MAX_ITEM_BYTES, created_at_ms).save()
    with pytest.raises(PutError) as caught:
        _item_of_size(cache, MAX_ITEM_BYTES + 1, created_at_ms).save()
    assert "size" in str(caught.value).lower()


def test_store_wide_reads_page_through_every_shard(endpoint: str, table_name: str) -> None:
    cache = bound(endpoint, table_name, CacheItem)
    now = system_clock_ms()
    for i in range(40):
        cache.build("", f"k{i}", encode_value(i), now_ms=now, ttl_seconds=60).save()
    with metering(RequestMeter()) as meter:
        keys = {item.pk for item in cache.iter_index("", page_size=3)}
    assert keys == {CacheItem.key_of("", f"k{i}")[0] for i in range(40)}
    # One Query per page: k items in a shard take k // 3 + 1 requests at 3 per page (the
    # last page is the one that comes back without LastEvaluatedKey).
    per_shard = Counter(shard_of(pk) for pk in keys)
    assert meter.requests == sum(per_shard[s] // 3 + 1 for s in range(GSI1_SHARDS))
