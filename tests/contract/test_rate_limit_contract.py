"""The rate-limit contract, one suite run on every implementation: in memory and on DynamoDB Local.

Each test states behaviour a user relies on and runs it against ``InMemoryRateLimitStore`` (an
exact sliding log) and ``DynamoDBRateLimitStore`` (a sliced window, see
:mod:`comic_vine_dynamodb_store.stores.rate_limit_core`) alike. A "peer" is another user of the
same windows: a second store on the same table for DynamoDB (another process, in production),
the same store for the in-memory twin.

The sliced window may admit less than the exact log, by up to one slice (``ceil(window / 60)``
ms) of time. Where that matters the assertions are written so both must hold: bursts happen at
one instant (inside one slice, where both are exact), waits and reset times are checked by what
they promise (room at the instant they name, none a millisecond before) rather than by value,
and value bounds allow one slice. Time is the shared fake clock: nothing sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeAlias

import pytest

from comic_vine_dynamodb_store.config import RateLimitConfig
from comic_vine_dynamodb_store.errors import ConfigurationError, InvalidKeyError, StoreClosedError
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.contracts import RateLimitStatus, RateLimitStore
from comic_vine_dynamodb_store.stores.memory_rate_limit import InMemoryRateLimitStore
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore
from comic_vine_dynamodb_store.stores.rate_limit_core import SliceLayout
from tests.conftest import DYNAMODB_TARGETS, dynamodb_target
from tests.support import FakeClock

REGION = "us-east-1"
MINUTE_MS = 60_000

AnyStore: TypeAlias = InMemoryRateLimitStore | DynamoDBRateLimitStore


class Stores:
    """Makes stores of the implementation under test, and peers of a store."""

    def __init__(
        self, kind: str, clock: FakeClock, table_name: str | None, endpoint: str | None
    ) -> None:
        self.kind = kind
        self.clock = clock
        self.table_name = table_name
        self.endpoint = endpoint
        self.made: list[AnyStore] = []
        self._options: dict[int, dict[str, Any]] = {}

    def __call__(self, **options: Any) -> AnyStore:
        store: AnyStore
        if self.kind == "memory":
            store = InMemoryRateLimitStore(clock=self.clock, **options)
        else:
            store = DynamoDBRateLimitStore(
                table_name=self.table_name,
                endpoint=self.endpoint,
                region=REGION,
                clock=self.clock,
                **options,
            )
        self.made.append(store)
        self._options[id(store)] = options
        return store

    def limited(self, limit: int, window_ms: int = MINUTE_MS) -> AnyStore:
        """A store whose default config is ``limit`` per ``window_ms``."""
        return self(default_config={"limit": limit, "window_ms": window_ms})

    def peer(self, store: AnyStore) -> AnyStore:
        """Another user of ``store``'s windows: a second store on the same table, or the same
        in-memory store."""
        if self.kind == "memory":
            return store
        return self(**self._options[id(store)])


@pytest.fixture(params=["memory", *DYNAMODB_TARGETS])
def stores(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Stores]:
    """Store maker of the implementation under test; on DynamoDB (either provider) one fresh
    table per test."""
    table_name: str | None = None
    endpoint: str | None = None
    if request.param != "memory":
        # Resolved here, not at module level, so the memory run never needs DynamoDB Local.
        table_name, endpoint = dynamodb_target(request)
    maker = Stores(
        "memory" if request.param == "memory" else "dynamodb", clock, table_name, endpoint
    )
    yield maker
    for store in maker.made:
        store.close()


@pytest.fixture
def store(stores: Stores) -> AnyStore:
    return stores()


def slice_ms(window_ms: int) -> int:
    """How much later than the exact log the sliced window may let an admission leave."""
    return SliceLayout.for_window(window_ms).slice_ms


def burst(store: AnyStore, resource: str, attempts: int) -> list[bool]:
    return [store.acquire(resource) for _ in range(attempts)]


def reset_ms(status: RateLimitStatus) -> int:
    return round(status.reset_time.timestamp() * 1000)


def stats_tuple(store: AnyStore) -> tuple[int, int, int]:
    stats = store.get_stats()
    return stats.total_resources, stats.active_resources, stats.total_requests


def most_in_any_window(times: list[int], window_ms: int) -> int:
    """The most admissions any window holds: ``a`` counts at ``t`` iff ``t - a < window_ms``."""
    return max(
        (sum(1 for a in times if 0 <= t - a < window_ms) for t in times),
        default=0,
    )


def drive(
    store: AnyStore, clock: FakeClock, resource: str, offsets: list[int]
) -> tuple[list[int], list[int]]:
    """Acquire at each of ``offsets`` (ms from now, ascending); the admitted and refused times."""
    start = clock.now_ms
    admitted: list[int] = []
    refused: list[int] = []
    for offset in offsets:
        clock.now_ms = start + offset
        (admitted if store.acquire(resource) else refused).append(clock.now_ms)
    return admitted, refused


# -- shape ---------------------------------------------------------------------------------------


def test_store_implements_the_rate_limit_protocol(store: AnyStore) -> None:
    assert isinstance(store, RateLimitStore)


def test_default_config_is_200_per_minute(store: AnyStore, clock: FakeClock) -> None:
    assert store.get_resource_config("anything") == RateLimitConfig(limit=200, window_ms=MINUTE_MS)
    assert store.resource_configs == {}
    status = store.get_status("api")
    assert (status.remaining, status.limit) == (200, 200)
    assert burst(store, "api", 200) == [True] * 200
    assert store.acquire("api") is False
    assert store.get_status("api").remaining == 0


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("default_config", {"limit": -1}, "default_config.limit"),
        ("default_config", {"window_ms": 0}, "default_config.window_ms"),
        ("default_config", {"limit": "5"}, "default_config.limit"),
        ("default_config", {"limit": 5, "burst": 2}, "default_config.burst"),
        ("resource_configs", {"api": {"limit": -1}}, "resource_configs.api.limit"),
        ("resource_configs", {"api": {"window_ms": 0}}, "resource_configs.api.window_ms"),
    ],
)
def test_bad_option_is_refused_at_construction(
    stores: Stores, option: str, value: object, field: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        stores(**{option: value})
    assert caught.value.field == field


def test_options_accept_configs_or_mappings(stores: Stores) -> None:
    store = stores(
        default_config=RateLimitConfig(limit=7, window_ms=1000),
        resource_configs={"slow": {"limit": 1}, "fast": RateLimitConfig(limit=50)},
    )
    assert store.get_resource_config("other") == RateLimitConfig(limit=7, window_ms=1000)
    assert store.get_resource_config("slow") == RateLimitConfig(limit=1, window_ms=MINUTE_MS)
    assert store.resource_configs == {
        "slow": RateLimitConfig(limit=1, window_ms=MINUTE_MS),
        "fast": RateLimitConfig(limit=50, window_ms=MINUTE_MS),
    }


# -- admission -----------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 3, 10])
def test_a_burst_admits_exactly_the_limit(stores: Stores, limit: int) -> None:
    store = stores.limited(limit)
    assert burst(store, "api", limit + 3) == [True] * limit + [False] * 3
    assert not store.can_proceed("api")


@pytest.mark.parametrize("limit", [1, 4, 9])
def test_a_burst_shared_by_two_users_admits_exactly_the_limit(stores: Stores, limit: int) -> None:
    store = stores.limited(limit)
    peer = stores.peer(store)
    results = [(store if i % 2 == 0 else peer).acquire("api") for i in range(limit + 4)]
    assert results == [True] * limit + [False] * 4
    assert not store.can_proceed("api")
    assert not peer.can_proceed("api")
    assert store.get_status("api").remaining == 0


def test_concurrent_acquires_never_exceed_the_limit(stores: Stores) -> None:
    limit = 12
    first = stores.limited(limit)
    users = [first, *(stores.peer(first) for _ in range(3))]
    barrier = threading.Barrier(len(users))

    def hammer(user: AnyStore) -> int:
        barrier.wait(10)
        return sum(user.acquire("contended") for _ in range(8))

    with ThreadPoolExecutor(len(users)) as pool:
        admitted = sum(pool.map(hammer, users))
    # Never more than the limit; a writer that kept losing races may refuse early (the side
    # that never over-admits), so what is left is topped up one by one.
    assert admitted <= limit
    assert burst(first, "contended", limit - admitted + 1) == [True] * (limit - admitted) + [False]
    assert first.get_status("contended").remaining == 0


def test_can_proceed_reads_without_recording(stores: Stores) -> None:
    store = stores.limited(2)
    peer = stores.peer(store)
    for _ in range(5):
        assert store.can_proceed("api")
        assert peer.can_proceed("api")
    assert store.get_status("api").remaining == 2
    assert stats_tuple(store) == (0, 0, 0)
    assert burst(store, "api", 2) == [True, True]
    assert not store.can_proceed("api")
    assert not peer.can_proceed("api")


def test_record_counts_unconditionally(stores: Stores) -> None:
    store = stores.limited(2)
    peer = stores.peer(store)
    store.record("api")
    assert store.get_status("api").remaining == 1
    peer.record("api")
    store.record("api")  # past the limit: counted all the same
    peer.record("api")
    assert store.get_status("api").remaining == 0
    assert not store.can_proceed("api")
    assert not peer.acquire("api")
    assert stats_tuple(store) == (1, 1, 4)


def test_records_and_acquires_share_the_window(stores: Stores) -> None:
    store = stores.limited(3)
    store.record("api")
    assert burst(store, "api", 3) == [True, True, False]


def test_resources_have_independent_windows(stores: Stores) -> None:
    store = stores.limited(2)
    assert burst(store, "a", 3) == [True, True, False]
    assert store.can_proceed("b")
    assert burst(store, "b", 3) == [True, True, False]
    assert store.get_status("c").remaining == 2


def test_awkward_resource_names_have_separate_windows(stores: Stores) -> None:
    store = stores.limited(1)
    names = ["a", "A", "a ", "#", "RATELIMIT##=a", "ключ 🔑", "k" * 3000, "k" * 2999 + "l"]
    for name in names:
        assert store.acquire(name), name
    for name in names:
        assert not store.acquire(name), name
    assert stats_tuple(store) == (len(names), len(names), len(names))


# -- status and waiting --------------------------------------------------------------------------


def test_status_of_a_fresh_resource(stores: Stores, clock: FakeClock) -> None:
    store = stores.limited(5)
    status = store.get_status("api")
    assert (status.remaining, status.limit) == (5, 5)
    assert status.reset_time.utcoffset() == timedelta(0)
    assert reset_ms(status) == clock.now_ms  # nothing counted: now
    assert status.adaptive is None


def test_status_counts_down_and_resets_when_the_newest_admission_leaves(
    stores: Stores, clock: FakeClock
) -> None:
    store = stores.limited(5)
    t0 = clock.now_ms
    assert burst(store, "api", 2) == [True, True]
    clock.advance(30_000)
    assert store.acquire("api")
    status = store.get_status("api")
    assert (status.remaining, status.limit) == (2, 5)
    assert status.reset_time.utcoffset() == timedelta(0)
    # When the newest admission (at t0 + 30 s) leaves: exactly then for the exact log, up to one
    # slice later for the sliced window.
    newest_leaves = t0 + 30_000 + MINUTE_MS
    reset = reset_ms(status)
    assert newest_leaves <= reset <= newest_leaves + slice_ms(MINUTE_MS)
    # What it promises: every admission has left at reset_time, not one millisecond before.
    clock.now_ms = reset - 1
    assert store.get_status("api").remaining < 5
    clock.now_ms = reset
    status = store.get_status("api")
    assert status.remaining == 5
    assert reset_ms(status) == reset  # nothing counted: now


def test_wait_time_is_zero_while_a_request_may_proceed(stores: Stores) -> None:
    store = stores.limited(2)
    assert store.get_wait_time("api") == 0
    assert store.acquire("api")
    assert store.get_wait_time("api") == 0


def test_waiting_the_wait_time_lets_exactly_one_more_through(
    stores: Stores, clock: FakeClock
) -> None:
    store = stores.limited(3)
    peer = stores.peer(store)
    t0 = clock.now_ms
    # One admission per slice, so that exactly one leaves the window at a time in both stores.
    assert store.acquire("api")
    clock.advance(slice_ms(MINUTE_MS))
    assert store.acquire("api")
    clock.advance(slice_ms(MINUTE_MS))
    assert store.acquire("api")
    assert not store.acquire("api")
    wait = store.get_wait_time("api")
    assert peer.get_wait_time("api") == wait
    # The oldest admission (t0) leaves at t0 + 60 s (exact) or by the end of its slice.
    assert t0 + MINUTE_MS <= clock.now_ms + wait <= t0 + MINUTE_MS + slice_ms(MINUTE_MS)
    clock.advance(wait - 1)
    assert not peer.can_proceed("api")
    assert not peer.acquire("api")
    assert peer.get_wait_time("api") == 1
    clock.advance(1)
    assert peer.get_wait_time("api") == 0
    assert peer.acquire("api")
    assert not store.acquire("api")
    assert store.get_wait_time("api") > 0


def test_records_past_the_limit_must_all_leave_before_the_next_admission(
    stores: Stores, clock: FakeClock
) -> None:
    store = stores.limited(2)
    peer = stores.peer(store)
    step = slice_ms(MINUTE_MS)  # one record per slice: they leave one at a time in both stores
    t0 = clock.now_ms
    for _ in range(3):
        store.record("api")
        clock.advance(step)
    store.record("api")  # 4 counted, limit 2: the 3 oldest (t0, t0 + step, t0 + 2 step) must go
    wait = peer.get_wait_time("api")
    third_leaves = t0 + 2 * step + MINUTE_MS
    assert third_leaves <= clock.now_ms + wait <= third_leaves + step
    clock.advance(wait - 1)
    assert not peer.acquire("api")
    clock.advance(1)
    assert peer.acquire("api")
    assert not store.acquire("api")


@pytest.mark.parametrize("window_ms", [1, 7, 500, 1000, MINUTE_MS])
def test_after_waiting_the_wait_time_acquire_succeeds(
    stores: Stores, clock: FakeClock, window_ms: int
) -> None:
    store = stores.limited(2, window_ms)
    for _ in range(6):
        while store.acquire("api"):
            pass
        wait = store.get_wait_time("api")
        # Never longer than the window plus one slice; never zero while refused.
        assert 0 < wait <= window_ms + slice_ms(window_ms)
        clock.advance(wait)
        assert store.get_wait_time("api") == 0
        assert store.acquire("api")


@pytest.mark.parametrize(
    ("window_ms", "limit"),
    [(1, 1), (1, 3), (7, 2), (7, 5), (59, 4), (500, 3)],
)
def test_windows_below_one_second_limit_every_span(
    stores: Stores, clock: FakeClock, window_ms: int, limit: int
) -> None:
    """The original broke below 1 s. Here a request every millisecond (twice every third ms)
    over several windows never puts more than ``limit`` admissions in any window, and every
    refusal at ``t`` is justified: ``(t - window - slice, t]`` already held ``limit``
    admissions (exactly ``(t - window, t]`` for the exact log; one slice more for the sliced
    window)."""
    store = stores.limited(limit, window_ms)
    span = 10 * window_ms if window_ms < 100 else 2 * window_ms
    offsets = sorted([*range(span), *range(0, span, 3)])
    admitted, refused = drive(store, clock, "api", offsets)
    assert most_in_any_window(admitted, window_ms) <= limit
    reach = window_ms + slice_ms(window_ms)
    for t in refused:
        assert sum(1 for a in admitted if t - reach < a <= t) >= limit, t
    assert len(admitted) >= limit


# -- configuration -------------------------------------------------------------------------------


def test_resource_config_is_set_read_and_listed(stores: Stores) -> None:
    store = stores.limited(5)
    store.set_resource_config("slow", RateLimitConfig(limit=1, window_ms=1000))
    store.set_resource_config("mapped", {"limit": 3})
    assert store.get_resource_config("slow") == RateLimitConfig(limit=1, window_ms=1000)
    assert store.get_resource_config("mapped") == RateLimitConfig(limit=3, window_ms=MINUTE_MS)
    assert store.get_resource_config("other") == RateLimitConfig(limit=5, window_ms=MINUTE_MS)
    configs = store.resource_configs
    assert configs == {
        "slow": RateLimitConfig(limit=1, window_ms=1000),
        "mapped": RateLimitConfig(limit=3, window_ms=MINUTE_MS),
    }
    configs["slow"] = RateLimitConfig(limit=99)  # a copy: the store is unchanged
    assert store.get_resource_config("slow").limit == 1
    # The configs are in force.
    assert burst(store, "slow", 2) == [True, False]
    assert burst(store, "mapped", 4) == [True, True, True, False]
    assert burst(store, "other", 6) == [True] * 5 + [False]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"limit": -1}, "limit"),
        ({"window_ms": 0}, "window_ms"),
        ({"window_ms": -5}, "window_ms"),
        ({"limit": "5"}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"limit": 5, "burst": 2}, "burst"),
        (42, "config"),
        ([("limit", 5)], "config"),
    ],
    ids=repr,
)
def test_a_bad_resource_config_is_refused_before_anything_changes(
    stores: Stores, config: Any, field: str
) -> None:
    store = stores.limited(2)
    store.set_resource_config("api", {"limit": 1})
    with pytest.raises(ConfigurationError) as caught:
        store.set_resource_config("api", config)
    assert caught.value.field == field
    with pytest.raises(ConfigurationError):
        store.set_resource_config("new", config)
    assert store.resource_configs == {"api": RateLimitConfig(limit=1, window_ms=MINUTE_MS)}
    assert burst(store, "api", 2) == [True, False]


def test_changing_the_limit_keeps_the_admissions(stores: Stores) -> None:
    store = stores.limited(3)
    assert burst(store, "api", 2) == [True, True]
    store.set_resource_config("api", {"limit": 2})
    assert not store.acquire("api")
    assert store.get_status("api").remaining == 0
    store.set_resource_config("api", {"limit": 5})
    assert store.get_status("api").remaining == 3
    assert burst(store, "api", 4) == [True, True, True, False]


def test_changing_the_window_starts_the_window_afresh(stores: Stores) -> None:
    store = stores.limited(2)
    assert burst(store, "api", 3) == [True, True, False]
    store.set_resource_config("api", {"limit": 2, "window_ms": 30_000})
    assert store.get_status("api").remaining == 2
    assert burst(store, "api", 3) == [True, True, False]


def test_a_zero_limit_refuses_everything(stores: Stores, clock: FakeClock) -> None:
    store = stores.limited(0)
    peer = stores.peer(store)
    for _ in range(3):
        assert not store.acquire("api")
        assert not peer.acquire("api")
        assert not store.can_proceed("api")
        clock.advance(MINUTE_MS)
    assert store.get_wait_time("api") == MINUTE_MS  # a full window, as nothing can leave
    status = store.get_status("api")
    assert (status.remaining, status.limit) == (0, 0)
    assert stats_tuple(store) == (0, 0, 0)  # refusals record nothing
    store.record("api")  # record still counts
    assert stats_tuple(store) == (1, 1, 1)
    assert store.get_wait_time("api") == MINUTE_MS
    assert not store.acquire("api")


# -- reset ---------------------------------------------------------------------------------------


def test_reset_forgets_every_admission(stores: Stores) -> None:
    store = stores.limited(2)
    assert burst(store, "api", 3) == [True, True, False]
    assert burst(store, "other", 1) == [True]
    store.reset("api")
    assert store.get_status("api").remaining == 2
    assert burst(store, "api", 3) == [True, True, False]
    assert store.get_status("other").remaining == 1  # other resources untouched
    store.reset("never-used")  # not an error


def test_reset_by_a_peer_is_seen_within_one_slice(stores: Stores, clock: FakeClock) -> None:
    # A store may refuse from counts it learned less than a slice ago (that is what makes a
    # refusal free); a reset elsewhere must show within that slice, never later.
    store = stores.limited(2)
    peer = stores.peer(store)
    assert burst(store, "api", 3) == [True, True, False]
    peer.reset("api")
    clock.advance(slice_ms(60_000))
    assert store.acquire("api")


def test_reset_by_a_peer_is_seen_by_reads(stores: Stores) -> None:
    store = stores.limited(2)
    peer = stores.peer(store)
    assert burst(store, "api", 3) == [True, True, False]
    peer.reset("api")
    assert store.can_proceed("api")
    assert store.get_status("api").remaining == 2
    assert burst(store, "api", 3) == [True, True, False]


# -- stats and cleanup ---------------------------------------------------------------------------


def test_stats_and_cleanup_follow_the_window(stores: Stores, clock: FakeClock) -> None:
    store = stores.limited(5)
    assert stats_tuple(store) == (0, 0, 0)
    assert store.cleanup() == 0
    t0 = clock.now_ms
    assert burst(store, "a", 2) == [True, True]
    assert store.acquire("b")
    clock.advance(30_000)
    store.record("c")
    assert stats_tuple(store) == (3, 3, 4)
    assert store.cleanup() == 0

    # a and b have left (the sliced window drops them within one slice of t0 + 60 s).
    clock.now_ms = t0 + MINUTE_MS + slice_ms(MINUTE_MS)
    assert stats_tuple(store) == (3, 1, 1)
    assert store.cleanup() == 2
    assert stats_tuple(store) == (1, 1, 1)
    assert store.cleanup() == 0
    assert store.get_status("a").remaining == 5

    clock.now_ms = t0 + 30_000 + MINUTE_MS + slice_ms(MINUTE_MS)
    assert stats_tuple(store) == (1, 0, 0)
    assert store.cleanup() == 1
    assert stats_tuple(store) == (0, 0, 0)


def test_reset_removes_the_resources_state(stores: Stores) -> None:
    store = stores.limited(5)
    assert store.acquire("a")
    assert store.acquire("b")
    store.reset("a")
    assert stats_tuple(store) == (1, 1, 1)


# -- signals -------------------------------------------------------------------------------------


def test_rate_limited_fires_on_refusals_only(stores: Stores, clock: FakeClock) -> None:
    store = stores.limited(2, 1000)
    events: list[signals.RateLimitedEvent] = []

    def receive(sender: object, *, event: signals.RateLimitedEvent) -> None:
        if sender is store:
            events.append(event)

    with signals.rate_limited.connected_to(receive):
        assert burst(store, "api", 2) == [True, True]
        store.record("api")  # past the limit, but not a refusal
        assert not store.can_proceed("api")  # a read, not a refusal
        store.get_status("api")
        assert events == []
        assert not store.acquire("api")
        assert len(events) == 1
        assert events[0] == signals.RateLimitedEvent(
            store=store.store_name,
            table=store.table_name,
            resource="api",
            limit=2,
            window_ms=1000,
            wait_ms=store.get_wait_time("api"),
        )
        assert events[0].wait_ms > 0
        assert not store.acquire("api")
        assert len(events) == 2
        clock.advance(events[-1].wait_ms)
        assert store.acquire("api")
        assert len(events) == 2


def test_refusal_signals_name_the_store_and_table(stores: Stores) -> None:
    store = stores.limited(0)
    events: list[signals.RateLimitedEvent] = []

    def receive(sender: object, *, event: signals.RateLimitedEvent) -> None:
        if sender is store:
            events.append(event)

    with signals.rate_limited.connected_to(receive):
        assert not store.acquire("api")
    (event,) = events
    if stores.kind == "memory":
        assert (event.store, event.table) == ("memory-rate-limit", "memory")
    else:
        assert (event.store, event.table) == ("rate_limit", stores.table_name)
    assert (event.limit, event.window_ms, event.wait_ms) == (0, MINUTE_MS, MINUTE_MS)


# -- resources -----------------------------------------------------------------------------------

INVALID_RESOURCES: list[Any] = ["", 42, None, b"api", "lone \ud800 surrogate"]


@pytest.mark.parametrize("resource", INVALID_RESOURCES, ids=repr)
def test_invalid_resource_is_refused_before_anything_happens(stores: Stores, resource: Any) -> None:
    store = stores.limited(2)
    assert store.acquire("valid")
    operations: list[Callable[[], object]] = [
        lambda: store.acquire(resource),
        lambda: store.record(resource),
        lambda: store.can_proceed(resource),
        lambda: store.get_status(resource),
        lambda: store.get_wait_time(resource),
        lambda: store.reset(resource),
        lambda: store.set_resource_config(resource, RateLimitConfig(limit=1)),
    ]
    for operation in operations:
        with pytest.raises(InvalidKeyError):
            operation()
    assert stats_tuple(store) == (1, 1, 1)
    assert store.resource_configs == {}
    store.close()
    # Still the resource's error first, even on a closed store.
    for operation in operations:
        with pytest.raises(InvalidKeyError):
            operation()


# -- lifecycle -----------------------------------------------------------------------------------


def test_health_check_reports_healthy_with_a_closed_breaker(store: AnyStore) -> None:
    result = store.health_check()
    assert result.healthy
    assert result.circuit_state == "closed"
    assert result.error is None
    assert result.latency_ms >= 0


def test_closed_store_refuses_every_operation(stores: Stores) -> None:
    store = stores.limited(2)
    assert store.acquire("api")
    store.close()
    store.close()  # idempotent
    assert store.closed
    operations: list[Callable[[], object]] = [
        lambda: store.acquire("fresh"),
        lambda: store.record("api"),
        lambda: store.can_proceed("api"),
        lambda: store.get_status("api"),
        lambda: store.get_wait_time("api"),
        lambda: store.reset("api"),
        store.get_stats,
        store.cleanup,
    ]
    for operation in operations:
        with pytest.raises(StoreClosedError):
            operation()
    health = store.health_check()  # never raises, but is not healthy any more
    assert not health.healthy
    assert health.error is not None
    assert "StoreClosedError" in health.error


@pytest.mark.parametrize("case", ["known-full-window", "zero-limit"])
def test_closed_store_refuses_acquire_even_when_it_could_decide_alone(
    stores: Stores, request: pytest.FixtureRequest, case: str
) -> None:
    store = stores.limited(1 if case == "known-full-window" else 0)
    if case == "known-full-window":
        assert store.acquire("api")
        assert not store.acquire("api")
    store.close()
    with pytest.raises(StoreClosedError):
        store.acquire("api")


def test_context_manager_closes_the_store(stores: Stores) -> None:
    with stores.limited(2) as store:
        assert store.acquire("api")
    with pytest.raises(StoreClosedError):
        store.can_proceed("api")


def test_configs_outlive_close(stores: Stores) -> None:
    """Configs are local settings, not stored state: both stores keep answering for them."""
    store = stores(resource_configs={"api": {"limit": 1}})
    store.close()
    assert store.get_resource_config("api") == RateLimitConfig(limit=1, window_ms=MINUTE_MS)
    assert store.resource_configs == {"api": RateLimitConfig(limit=1, window_ms=MINUTE_MS)}
