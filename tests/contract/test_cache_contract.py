"""The cache contract, one suite run on every implementation: in memory and on DynamoDB Local.

Each test states behaviour a user relies on and runs it against ``InMemoryCacheStore`` and
``DynamoDBCacheStore`` alike, so the in-memory twin cannot drift from the real store. Both get
the same fake clock, so expiry is tested to the millisecond without sleeping; it starts at the
real time so the ``TTL`` attribute DynamoDB's reaper reads stays in the near future.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import random
import string
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

import pytest
from blinker import NamedSignal
from pydantic import BaseModel

from comic_vine_dynamodb_store.errors import (
    ConfigurationError,
    InvalidKeyError,
    ItemTooLargeError,
    StoreClosedError,
)
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.serialization import MAX_ITEM_BYTES
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore
from comic_vine_dynamodb_store.stores.contracts import CacheStore
from comic_vine_dynamodb_store.stores.memory_cache import InMemoryCacheStore
from tests.conftest import DYNAMODB_TARGETS, dynamodb_target
from tests.support import FakeClock

REGION = "us-east-1"
SECOND_MS = 1000
YEAR_MS = 365 * 24 * 3600 * SECOND_MS

AnyStore: TypeAlias = InMemoryCacheStore[Any] | DynamoDBCacheStore[Any]
StoreFactory: TypeAlias = Callable[..., AnyStore]


class Issue(BaseModel):
    id: int
    name: str
    tags: list[str]
    rating: float | None = None


@pytest.fixture(params=["memory", *DYNAMODB_TARGETS])
def make_store(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[StoreFactory]:
    """Builds stores of the implementation under test; on DynamoDB (either provider) they
    share one fresh table."""
    made: list[AnyStore] = []
    if request.param != "memory":
        # Resolved here, not at module level, so the memory run never needs DynamoDB Local.
        table_name, endpoint = dynamodb_target(request)

    def make(**options: Any) -> AnyStore:
        store: AnyStore
        if request.param == "memory":
            store = InMemoryCacheStore(clock=clock, **options)
        else:
            store = DynamoDBCacheStore(
                table_name=table_name,
                endpoint=endpoint,
                region=REGION,
                clock=clock,
                **{"cleanup_interval_ms": 0, **options},
            )
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> AnyStore:
    return make_store()


class Recorder:
    """The cache events one store sent, by kind."""

    def __init__(self) -> None:
        self.hits: list[signals.CacheEvent] = []
        self.misses: list[signals.CacheEvent] = []
        self.decode_errors: list[signals.CacheEvent] = []


@contextmanager
def recording(store: AnyStore) -> Iterator[Recorder]:
    """Collect the hit/miss/decode-error events ``store`` sends inside the block."""
    recorder = Recorder()

    def collector(into: list[signals.CacheEvent]) -> Callable[..., None]:
        def receive(sender: object, *, event: signals.CacheEvent) -> None:
            if sender is store:
                into.append(event)

        return receive

    hit, miss, decode_error = (
        collector(recorder.hits),
        collector(recorder.misses),
        collector(recorder.decode_errors),
    )
    wiring: list[tuple[NamedSignal, Callable[..., None]]] = [
        (signals.cache_hit, hit),
        (signals.cache_miss, miss),
        (signals.cache_decode_error, decode_error),
    ]
    for signal, receiver in wiring:
        signal.connect(receiver)
    try:
        yield recorder
    finally:
        for signal, receiver in wiring:
            signal.disconnect(receiver)


def exact(value: object) -> str:
    """A form that tells ``1`` from ``1.0`` from ``True``, which ``==`` does not."""
    return json.dumps(value, allow_nan=False)


def incompressible_text(chars: int, seed: int = 0) -> str:
    """Text zlib shrinks only to about 3/4, so its stored size is predictable from its length."""
    alphabet = string.ascii_letters + string.digits
    return "".join(random.Random(seed).choices(alphabet, k=chars))


def stats_tuple(store: AnyStore) -> tuple[int, int, int]:
    stats = store.get_stats()
    return stats.total_items, stats.expired_items, stats.estimated_size_bytes


# -- shape ---------------------------------------------------------------------------------------


def test_store_implements_the_cache_protocol(store: AnyStore) -> None:
    assert isinstance(store, CacheStore)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_value_bytes", 0),
        ("max_value_bytes", -1),
        ("max_value_bytes", "1024"),
        ("max_value_bytes", True),
        ("cleanup_interval_ms", -1),
        ("cleanup_interval_ms", 1.5),
    ],
)
def test_bad_option_is_refused_at_construction(
    make_store: StoreFactory, option: str, value: object
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_store(**{option: value})
    assert caught.value.field == option


# -- values --------------------------------------------------------------------------------------

ROUND_TRIP_VALUES: list[Any] = [
    {"id": 4050, "name": "Spider-Man", "aliases": ["Spidey", "Web-Head"]},
    [1, "two", 3.5, None, True, {"six": [7]}],
    "",
    "plain text",
    "ünïcødé ✓ 🦸\u200d♀️ 中文",
    0,
    -17,
    2**70,
    1.0,
    -0.5,
    3.141592653589793,
    1e300,
    5e-324,
    True,
    False,
    {},
    [],
    {"": "", "ключ": {"nested": [[], {}, [None]]}},
    {"level": {"level": {"level": {"level": {"level": [1, [2, [3, [4]]]]}}}}},
    {"results": [{"id": i, "name": f"issue {i}", "cover": None} for i in range(200)]},
]


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=lambda value: exact(value)[:24])
def test_value_round_trips_with_its_exact_types(store: AnyStore, value: Any) -> None:
    store.set("key", value, 60)
    result = store.get("key")
    assert result == value
    assert exact(result) == exact(value)


def test_none_is_stored_as_a_value_and_read_as_a_hit(store: AnyStore) -> None:
    store.set("nothing", None, 60)
    with recording(store) as seen:
        assert store.get("nothing") is None
    assert [event.key for event in seen.hits] == ["nothing"]
    assert seen.misses == []
    assert store.get_stats().total_items == 1


def test_missing_key_reads_none(store: AnyStore) -> None:
    assert store.get("never-set") is None
    store.set("other", "value", 0)
    assert store.get("never-set") is None


def test_set_replaces_value_and_ttl(store: AnyStore, clock: FakeClock) -> None:
    store.set("key", "first", 1)
    store.set("key", {"second": 2}, 0)
    clock.advance(10 * SECOND_MS)
    assert store.get("key") == {"second": 2}
    store.set("key", "third", 5)
    clock.advance(5 * SECOND_MS)
    assert store.get("key") is None
    assert stats_tuple(store)[:2] == (0, 1)


def test_mutating_a_value_after_set_does_not_change_the_cached_one(store: AnyStore) -> None:
    value: dict[str, Any] = {"tags": ["a"], "count": 1}
    store.set("key", value, 0)
    value["tags"].append("b")
    value["count"] = 2
    assert store.get("key") == {"tags": ["a"], "count": 1}


def test_mutating_a_read_value_does_not_change_the_cached_one(store: AnyStore) -> None:
    store.set("key", {"tags": ["a"]}, 0)
    first = store.get("key")
    assert first is not None
    first["tags"].append("b")
    assert store.get("key") == {"tags": ["a"]}


def test_large_value_below_the_item_limit_round_trips(store: AnyStore) -> None:
    value = {"text": incompressible_text(200_000), "repeated": "x" * 100_000}
    store.set("big", value, 0)
    assert store.get("big") == value


# -- delete --------------------------------------------------------------------------------------


def test_delete_removes_only_that_key(store: AnyStore) -> None:
    store.set("a", 1, 0)
    store.set("b", 2, 0)
    store.delete("a")
    assert store.get("a") is None
    assert store.get("b") == 2
    assert store.get_stats().total_items == 1


def test_deleting_an_absent_key_is_not_an_error(store: AnyStore) -> None:
    store.delete("never-set")
    store.set("a", 1, 0)
    store.delete("a")
    store.delete("a")
    assert store.get("a") is None


# -- expiry --------------------------------------------------------------------------------------


def test_ttl_zero_never_expires(store: AnyStore, clock: FakeClock) -> None:
    store.set("forever", "value", 0)
    clock.advance(50 * YEAR_MS)
    assert store.get("forever") == "value"
    assert store.cleanup() == 0
    assert stats_tuple(store)[:2] == (1, 0)


@pytest.mark.parametrize(
    ("ttl_seconds", "expires_after_ms"), [(1, 1000), (1.5, 1500), (0.25, 250), (60, 60_000)]
)
def test_ttl_expires_at_the_exact_millisecond(
    store: AnyStore, clock: FakeClock, ttl_seconds: float, expires_after_ms: int
) -> None:
    store.set("key", "value", ttl_seconds)
    clock.advance(expires_after_ms - 1)
    assert store.get("key") == "value"
    assert stats_tuple(store)[:2] == (1, 0)
    clock.advance(1)
    assert store.get("key") is None
    assert stats_tuple(store)[:2] == (0, 1)


def test_expired_key_can_be_set_again(store: AnyStore, clock: FakeClock) -> None:
    store.set("key", "old", 1)
    clock.advance(2 * SECOND_MS)
    assert store.get("key") is None
    store.set("key", "new", 1)
    assert store.get("key") == "new"
    assert stats_tuple(store)[:2] == (1, 0)


@pytest.mark.parametrize("ttl_seconds", [-1, -0.001, -3600])
def test_negative_ttl_is_refused_and_nothing_is_written(
    store: AnyStore, ttl_seconds: float
) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        store.set("new", "value", ttl_seconds)
    store.set("old", "kept", 0)
    with pytest.raises(ValueError, match="ttl_seconds"):
        store.set("old", "replacement", ttl_seconds)
    assert store.get("new") is None
    assert store.get("old") == "kept"
    assert store.get_stats().total_items == 1


# -- refused values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-math.inf, ValueError),
        ({"nested": [1.0, math.nan]}, ValueError),
        ({1, 2}, TypeError),
        (b"bytes", TypeError),
        ((1, 2), TypeError),
        ({1: "int key"}, TypeError),
        (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), TypeError),
        ([object()], TypeError),
        ("lone surrogate \udcff", ValueError),
    ],
    ids=[
        "nan",
        "inf",
        "-inf",
        "nested-nan",
        "set",
        "bytes",
        "tuple",
        "int-dict-key",
        "datetime",
        "object",
        "lone-surrogate",
    ],
)
def test_value_json_cannot_hold_is_refused_and_nothing_is_written(
    store: AnyStore, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        store.set("new", value, 0)
    store.set("old", "kept", 0)
    with pytest.raises(error):
        store.set("old", value, 0)
    assert store.get("new") is None
    assert store.get("old") == "kept"
    assert store.get_stats().total_items == 1


def test_value_above_max_value_bytes_is_refused(make_store: StoreFactory) -> None:
    store = make_store(max_value_bytes=1000)
    store.set("fits", incompressible_text(900), 0)
    store.set("key", "kept", 0)
    with pytest.raises(ItemTooLargeError) as caught:
        store.set("key", incompressible_text(1500), 0)
    assert caught.value.limit_bytes == 1000
    assert caught.value.size_bytes > 1000
    assert store.get("key") == "kept"
    assert store.get("fits") == incompressible_text(900)


def test_a_value_above_one_dynamodb_item_round_trips(store: AnyStore) -> None:
    # ~3/4 of 700k stays above 400 KB after compression: the DynamoDB store chunks it.
    value = incompressible_text(700_000)
    store.set("key", "kept", 0)
    store.set("key", value, 0)
    assert store.get("key") == value
    assert store.get_stats().total_items == 1
    stats = store.get_stats()
    assert stats.estimated_size_bytes > MAX_ITEM_BYTES
    store.set("key", "small again", 0)
    assert store.get("key") == "small again"
    store.delete("key")
    assert store.get("key") is None
    assert store.get_stats().total_items == 0


# -- keys ----------------------------------------------------------------------------------------

INVALID_KEYS: list[Any] = ["", 42, None, b"key", ("k",), "lone \ud800 surrogate"]


@pytest.mark.parametrize("key", INVALID_KEYS, ids=repr)
def test_invalid_key_is_refused_by_get_set_and_delete(store: AnyStore, key: Any) -> None:
    store.set("valid", "untouched", 0)
    with pytest.raises(InvalidKeyError):
        store.get(key)
    with pytest.raises(InvalidKeyError):
        store.set(key, "value", 0)
    with pytest.raises(InvalidKeyError):
        store.delete(key)
    assert stats_tuple(store)[:2] == (1, 0)
    assert store.get("valid") == "untouched"


LONG_KEY = "k" * 3000
AWKWARD_KEYS = [
    "a",
    "A",
    " a",
    "a ",
    "ключ",
    "🦸\u200d♀️ hero",
    unicodedata.normalize("NFC", "café"),
    unicodedata.normalize("NFD", "café"),
    "#",
    "##",
    "a#b#c",
    "CACHE##=a",  # what the literal key "a" looks like inside the table
    "=a",
    "~a",
    "!health",  # what the health probe reads
    "tab\tnew\nline",
    LONG_KEY,
    "k" * 2999 + "l",  # same length, differs only at the end, past any truncation
    "é" * 1500,  # 3000 bytes, 1500 characters
    "~" + hashlib.sha256(LONG_KEY.encode()).hexdigest(),  # the hashed form of LONG_KEY
    "x" * 2100,  # just past where a literal partition key stops fitting
]


def test_awkward_keys_work_and_never_collide(store: AnyStore) -> None:
    assert len(set(AWKWARD_KEYS)) == len(AWKWARD_KEYS)
    for index, key in enumerate(AWKWARD_KEYS):
        store.set(key, {"index": index}, 0)
    for index, key in enumerate(AWKWARD_KEYS):
        assert store.get(key) == {"index": index}, key
    assert store.get_stats().total_items == len(AWKWARD_KEYS)
    for key in AWKWARD_KEYS[::2]:
        store.delete(key)
    for index, key in enumerate(AWKWARD_KEYS):
        expected = None if index % 2 == 0 else {"index": index}
        assert store.get(key) == expected, key


# -- value_type ----------------------------------------------------------------------------------


def test_pydantic_model_round_trips_with_value_type(make_store: StoreFactory) -> None:
    store = make_store(value_type=Issue)
    issue = Issue(id=1, name="Amazing Fantasy #15", tags=["first", "spider"], rating=9.5)
    store.set("issue", issue, 0)
    result = store.get("issue")
    assert isinstance(result, Issue)
    assert result == issue


def test_list_of_models_round_trips_with_value_type(make_store: StoreFactory) -> None:
    store = make_store(value_type=list[Issue])
    issues = [Issue(id=i, name=f"#{i}", tags=[]) for i in range(3)]
    store.set("issues", issues, 0)
    assert store.get("issues") == issues


def test_model_without_value_type_reads_back_as_its_json(store: AnyStore) -> None:
    store.set("issue", Issue(id=2, name="x", tags=["t"]), 0)
    assert store.get("issue") == {"id": 2, "name": "x", "tags": ["t"], "rating": None}


def test_value_type_mismatch_is_a_miss_with_a_decode_error(make_store: StoreFactory) -> None:
    store = make_store(value_type=Issue)
    store.set("wrong", {"id": "not a number", "title": "no name"}, 0)
    with recording(store) as seen:
        assert store.get("wrong") is None
    assert [event.key for event in seen.decode_errors] == ["wrong"]
    error = seen.decode_errors[0].error
    assert error is not None
    assert "value_type" in error
    assert seen.hits == []
    # The item is still there: a decode error is reported, never "fixed" by deleting data.
    assert store.get_stats().total_items == 1


# -- signals -------------------------------------------------------------------------------------


def test_get_sends_hit_and_miss_signals(store: AnyStore, clock: FakeClock) -> None:
    with recording(store) as seen:
        store.get("absent")
        store.set("present", [1], 1)
        store.get("present")
        clock.advance(SECOND_MS)
        store.get("present")
    assert [event.key for event in seen.misses] == ["absent", "present"]
    assert [event.key for event in seen.hits] == ["present"]
    assert seen.decode_errors == []
    assert all(event.error is None for event in seen.hits + seen.misses)


def test_set_delete_and_stats_send_no_cache_signals(store: AnyStore) -> None:
    with recording(store) as seen:
        store.set("key", 1, 0)
        store.delete("key")
        store.get_stats()
    assert (seen.hits, seen.misses, seen.decode_errors) == ([], [], [])


# -- clear, cleanup, stats -----------------------------------------------------------------------


def test_clear_removes_live_and_expired_items(store: AnyStore, clock: FakeClock) -> None:
    store.clear()  # clearing an empty store is fine
    for index in range(5):
        store.set(f"live-{index}", index, 0)
        store.set(f"expiring-{index}", index, 60)
    clock.advance(60 * SECOND_MS)
    store.clear()
    assert stats_tuple(store) == (0, 0, 0)
    assert store.get("live-0") is None
    store.set("after", "usable", 0)
    assert store.get("after") == "usable"


def test_cleanup_removes_exactly_the_expired_items(store: AnyStore, clock: FakeClock) -> None:
    for index in range(3):
        store.set(f"forever-{index}", index, 0)
    store.set("later", "value", 61)
    for index in range(4):
        store.set(f"soon-{index}", index, 60)
    store.set("renewed", "old", 60)
    store.set("renewed", "new", 120)
    clock.advance(60 * SECOND_MS)
    assert store.cleanup() == 4
    assert stats_tuple(store)[:2] == (5, 0)
    assert store.cleanup() == 0
    assert store.get("renewed") == "new"
    assert store.get("later") == "value"
    clock.advance(SECOND_MS)
    assert store.cleanup() == 1
    assert stats_tuple(store)[:2] == (4, 0)


def test_stats_count_live_and_expired_items(store: AnyStore, clock: FakeClock) -> None:
    assert stats_tuple(store) == (0, 0, 0)
    for index in range(10):
        store.set(f"live-{index}", {"index": index}, 0 if index % 2 else 3600)
    for index in range(5):
        store.set(f"expired-{index}", {"index": index}, 30)
    clock.advance(30 * SECOND_MS)
    stats = store.get_stats()
    assert stats.total_items == 10
    assert stats.expired_items == 5


def test_size_estimate_grows_with_values_and_counts_live_items_only(
    store: AnyStore, clock: FakeClock
) -> None:
    store.set("small", "x", 0)
    small = store.get_stats().estimated_size_bytes
    assert small > 0
    store.set("large", incompressible_text(5000), 60)
    large = store.get_stats().estimated_size_bytes
    assert large > small + 3000
    clock.advance(60 * SECOND_MS)
    assert store.get_stats().estimated_size_bytes == small
    store.delete("small")
    assert store.get_stats().estimated_size_bytes == 0


def test_replacing_a_value_replaces_its_size(store: AnyStore) -> None:
    store.set("probe", "x", 0)
    one_small_value = store.get_stats().estimated_size_bytes
    store.set("key", incompressible_text(5000), 0)
    store.set("key", "x", 0)
    stats = store.get_stats()
    assert stats.total_items == 2
    assert stats.estimated_size_bytes == 2 * one_small_value


# -- lifecycle -----------------------------------------------------------------------------------


def test_health_check_reports_healthy_with_a_closed_breaker(store: AnyStore) -> None:
    result = store.health_check()
    assert result.healthy
    assert result.circuit_state == "closed"
    assert result.error is None
    assert result.latency_ms >= 0


def test_closed_store_refuses_every_operation(store: AnyStore) -> None:
    store.set("key", "value", 0)
    store.close()
    store.close()  # idempotent
    operations: list[Callable[[], object]] = [
        lambda: store.get("key"),
        lambda: store.set("key", "value", 0),
        lambda: store.delete("key"),
        store.clear,
        store.cleanup,
        store.get_stats,
    ]
    for operation in operations:
        with pytest.raises(StoreClosedError):
            operation()
    health = store.health_check()  # never raises, but is not healthy any more
    assert not health.healthy
    assert health.error is not None
    assert "StoreClosedError" in health.error


def test_context_manager_closes_the_store(make_store: StoreFactory) -> None:
    with make_store() as store:
        store.set("key", "value", 0)
        assert store.get("key") == "value"
    with pytest.raises(StoreClosedError):
        store.get("key")


def test_background_cleanup_removes_expired_items_until_close(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    store = make_store(cleanup_interval_ms=20)
    store.set("forever", "value", 0)
    store.set("expiring", "value", 60)
    clock.advance(60 * SECOND_MS)
    deadline = time.monotonic() + 10
    while store.get_stats().expired_items and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stats_tuple(store)[:2] == (1, 0)
    assert store.get("forever") == "value"
    store.close()  # stops the background thread; closing must not wait for another interval


def test_concurrent_writers_and_readers_lose_nothing(store: AnyStore) -> None:
    writers, per_writer = 4, 25
    failures: list[BaseException] = []
    start = threading.Barrier(writers)

    def work(writer: int) -> None:
        try:
            start.wait()
            for index in range(per_writer):
                key = f"w{writer}-{index}"
                store.set(key, {"writer": writer, "index": index}, 0)
                if store.get(key) != {"writer": writer, "index": index}:
                    raise AssertionError(f"{key} not read back")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(writer,)) for writer in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert store.get_stats().total_items == writers * per_writer
