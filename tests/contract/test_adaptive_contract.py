"""The adaptive rate-limit contract, one suite run on every implementation.

Each test states behaviour a user relies on and runs it against
``InMemoryAdaptiveRateLimitStore`` (exact logs) and ``DynamoDBAdaptiveRateLimitStore`` (sliced
counters on DynamoDB Local) alike. A "peer" is another user of the same state: a second store
on the same table for DynamoDB (another process, in production), the same store in memory.

The split of a resource's limit ``L`` between users and background work comes from the
recent activity and is recomputed at most every ``recalculation_interval_ms``; users are
admitted whenever the window has room, background work only within its share and unpaused.
The sliced store may count up to one slice more than the exact one (rate window: slices of
``ceil(window / 60)`` ms; activity: ``ceil(monitoring window / 30)`` ms, thirds of 10 slices),
never fewer. So bursts happen at one instant, times start on a slice boundary (the clock is
aligned to a whole hour), waits are checked by what they promise (room at the instant named,
none a millisecond before) rather than by value, and value bounds allow one slice. Time is
the shared fake clock: nothing sleeps.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeAlias

import pytest

from comic_vine_dynamodb_store.config import AdaptiveConfig, RateLimitConfig
from comic_vine_dynamodb_store.errors import ConfigurationError, InvalidKeyError, StoreClosedError
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.adaptive import DynamoDBAdaptiveRateLimitStore
from comic_vine_dynamodb_store.stores.adaptive_core import PRIORITIES
from comic_vine_dynamodb_store.stores.contracts import (
    AdaptiveRateLimitStore,
    AdaptiveStatus,
    Priority,
    RateLimitStatus,
)
from comic_vine_dynamodb_store.stores.memory_adaptive import InMemoryAdaptiveRateLimitStore
from comic_vine_dynamodb_store.stores.rate_limit_core import SliceLayout
from tests.conftest import DYNAMODB_TARGETS, dynamodb_target
from tests.support import FakeClock

REGION = "us-east-1"
SECOND_MS = 1000
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
INTERVAL_MS = AdaptiveConfig().recalculation_interval_ms  # 30 s

AnyStore: TypeAlias = InMemoryAdaptiveRateLimitStore | DynamoDBAdaptiveRateLimitStore


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
            store = InMemoryAdaptiveRateLimitStore(clock=self.clock, **options)
        else:
            store = DynamoDBAdaptiveRateLimitStore(
                table_name=self.table_name,
                endpoint=self.endpoint,
                region=REGION,
                clock=self.clock,
                **options,
            )
        self.made.append(store)
        self._options[id(store)] = options
        return store

    def limited(self, limit: int, window_ms: int = MINUTE_MS, **adaptive: Any) -> AnyStore:
        """A store whose default config is ``limit`` per ``window_ms``, with ``adaptive`` as
        its adaptive config."""
        return self(
            default_config={"limit": limit, "window_ms": window_ms}, adaptive_config=adaptive
        )

    def peer(self, store: AnyStore) -> AnyStore:
        """Another user of ``store``'s state: a second store on the same table, or the same
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
    # On a whole hour, so every slice used here starts exactly at the times the tests name.
    clock.now_ms = math.ceil(clock.now_ms / HOUR_MS) * HOUR_MS
    maker = Stores(
        "memory" if request.param == "memory" else "dynamodb", clock, table_name, endpoint
    )
    yield maker
    for store in maker.made:
        store.close()


@pytest.fixture
def store(stores: Stores) -> AnyStore:
    return stores()


def rate_slice_ms(window_ms: int) -> int:
    """How much later than the exact log the sliced rate window may let an admission leave."""
    return SliceLayout.for_window(window_ms).slice_ms


def activity_slice_ms(monitoring_window_ms: int) -> int:
    """How much later than the exact log the sliced activity may forget an admission."""
    return math.ceil(monitoring_window_ms / 30)


def burst(store: AnyStore, attempts: int, priority: Priority, resource: str = "api") -> list[bool]:
    return [store.acquire(resource, priority) for _ in range(attempts)]


def split(store: AnyStore, resource: str = "api") -> tuple[int, int, bool]:
    adaptive = store.get_status(resource).adaptive
    assert adaptive is not None
    return adaptive.user_reserved, adaptive.background_max, adaptive.background_paused


def adaptive_of(store: AnyStore, resource: str = "api") -> AdaptiveStatus:
    adaptive = store.get_status(resource).adaptive
    assert adaptive is not None
    return adaptive


def reset_ms(status: RateLimitStatus) -> int:
    return round(status.reset_time.timestamp() * 1000)


def stats_tuple(store: AnyStore) -> tuple[int, int, int]:
    stats = store.get_stats()
    return stats.total_resources, stats.active_resources, stats.total_requests


def consistent(store: AnyStore, resource: str = "api") -> None:
    """For both priorities: the wait is 0 exactly when a request may proceed."""
    for priority in PRIORITIES:
        wait = store.get_wait_time(resource, priority)
        assert wait >= 0
        assert store.can_proceed(resource, priority) == (wait == 0), priority


def wait_is_kept(store: AnyStore, clock: FakeClock, priority: Priority) -> int:
    """The wait's promise, checked: refused 1 ms before ``now + wait``, admitted at it."""
    start = clock.now_ms
    wait = store.get_wait_time("api", priority)
    assert wait > 0
    assert not store.can_proceed("api", priority)
    clock.now_ms = start + wait - 1
    assert not store.can_proceed("api", priority)
    assert store.get_wait_time("api", priority) > 0
    clock.now_ms = start + wait
    assert store.get_wait_time("api", priority) == 0
    assert store.can_proceed("api", priority)
    return wait


# -- shape ---------------------------------------------------------------------------------------


def test_store_implements_the_adaptive_protocol(store: AnyStore) -> None:
    assert isinstance(store, AdaptiveRateLimitStore)


def test_a_fresh_resource_reserves_30_percent_for_users(stores: Stores, clock: FakeClock) -> None:
    store = stores()
    assert store.get_resource_config("api") == RateLimitConfig(limit=200, window_ms=MINUTE_MS)
    status = store.get_status("api")
    assert (status.remaining, status.limit) == (200, 200)
    assert status.reset_time.utcoffset() == timedelta(0)
    assert reset_ms(status) == clock.now_ms  # nothing counted: now
    assert status.adaptive == AdaptiveStatus(
        user_reserved=60,
        background_max=140,
        background_paused=False,
        recent_user_activity=0,
        reason="no traffic yet",
    )
    assert stats_tuple(store) == (0, 0, 0)  # reads record nothing


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"moderate_activity_threshold": 10}, "adaptive_config.moderate_activity_threshold"),
        ({"recalculation_interval_ms": 0}, "adaptive_config.recalculation_interval_ms"),
        ({"max_user_scaling": 0.5}, "adaptive_config.max_user_scaling"),
        ({"pause": True}, "adaptive_config.pause"),
    ],
)
def test_a_bad_adaptive_config_is_refused_at_construction(
    stores: Stores, value: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        stores(adaptive_config=value)
    assert caught.value.field == field


# -- admission -----------------------------------------------------------------------------------


def test_users_take_what_background_work_leaves(stores: Stores) -> None:
    # L = 10: 5 reserved for users (min_user_reserved beats 30 %), background up to 5.
    store = stores.limited(10)
    peer = stores.peer(store)
    assert split(store) == (5, 5, False)
    assert burst(store, 7, "background") == [True] * 5 + [False] * 2
    assert not peer.can_proceed("api", "background")
    assert peer.can_proceed("api", "user")
    assert burst(peer, 6, "user") == [True] * 5 + [False]
    for priority in PRIORITIES:
        assert not store.can_proceed("api", priority)
        assert not peer.acquire("api", priority)
    assert store.get_status("api").remaining == 0
    consistent(store)


def test_users_may_take_the_whole_limit(stores: Stores) -> None:
    store = stores.limited(10)
    assert burst(store, 11, "user") == [True] * 10 + [False]
    assert not store.acquire("api", "background")  # its share is empty, the window is not
    assert store.get_status("api").remaining == 0


def test_records_count_unconditionally_in_the_window_and_the_share(stores: Stores) -> None:
    store = stores.limited(10)
    peer = stores.peer(store)
    for _ in range(4):
        store.record("api", "background")
    assert burst(peer, 2, "background") == [True, False]
    for _ in range(6):
        peer.record("api")  # background by default, past its share: counted all the same
    assert store.get_status("api").remaining == 0
    assert not store.acquire("api", "user")
    assert stats_tuple(store) == (1, 1, 11)


def test_the_default_priority_is_background(stores: Stores) -> None:
    store = stores.limited(10)
    assert [store.acquire("api") for _ in range(6)] == [True] * 5 + [False]
    assert not store.can_proceed("api")
    assert store.get_wait_time("api") > 0
    assert store.can_proceed("api", "user")
    assert store.get_wait_time("api", "user") == 0


def test_users_are_never_starved_after_background_only_traffic(
    stores: Stores, clock: FakeClock
) -> None:
    store = stores()  # 200 per minute
    assert burst(store, 141, "background") == [True] * 140 + [False]
    clock.advance(INTERVAL_MS)
    # Background traffic only: the split shrinks to min_user_reserved, not to nothing.
    assert adaptive_of(store) == AdaptiveStatus(
        user_reserved=5,
        background_max=195,
        background_paused=False,
        recent_user_activity=0,
        reason="background traffic only",
    )
    assert burst(store, 56, "background") == [True] * 55 + [False]
    assert burst(store, 6, "user") == [True] * 5 + [False]
    assert store.get_status("api").remaining == 0


def test_a_rising_user_trend_pauses_background_work_not_users(
    stores: Stores, clock: FakeClock
) -> None:
    store = stores.limited(100)
    peer = stores.peer(store)
    assert burst(store, 12, "user") == [True] * 12
    clock.advance(INTERVAL_MS)
    # 12 user requests, all in the newest third of the monitoring window: high, increasing.
    assert adaptive_of(peer) == AdaptiveStatus(
        user_reserved=90,  # min(0.9 L, floor(0.5 L x max_user_scaling))
        background_max=10,
        background_paused=True,
        recent_user_activity=12,
        reason="high user activity (12 requests, trend increasing)",
    )
    assert not store.acquire("api", "background")
    assert not peer.can_proceed("api", "background")
    # Only a recomputation can lift a pause: the wait names the next one.
    assert peer.get_wait_time("api", "background") == INTERVAL_MS
    assert burst(peer, 5, "user") == [True] * 5
    assert store.get_status("api").remaining == 83
    consistent(store)


def test_a_pause_lifts_at_the_recomputation_that_sees_the_trend_turn(
    stores: Stores, clock: FakeClock
) -> None:
    # A 3 s monitoring window (thirds of 1 s), recomputed every 500 ms.
    store = stores.limited(100, monitoring_window_ms=3000, recalculation_interval_ms=500)
    peer = stores.peer(store)
    start = clock.now_ms
    assert burst(store, 12, "user") == [True] * 12
    clock.advance(500)
    assert split(peer) == (90, 10, True)
    # From start + 1 s the users are in the previous third: decreasing, no pause.
    assert wait_is_kept(store, clock, "background") == 500
    assert clock.now_ms == start + SECOND_MS
    assert adaptive_of(peer).reason == "high user activity (12 requests, trend decreasing)"
    assert split(peer) == (90, 10, False)
    assert peer.acquire("api", "background")


def test_users_are_admitted_when_background_gets_nothing(stores: Stores, clock: FakeClock) -> None:
    # L = 5 and min_user_reserved = 5: nothing for background work.
    store = stores.limited(5)
    assert split(store) == (5, 0, False)
    assert not store.acquire("api", "background")
    assert store.get_wait_time("api", "background") > 0
    assert burst(store, 4, "user") == [True] * 4
    clock.advance(10_000)
    # The split was computed by the first admission: the next recomputation is 20 s away.
    assert store.get_wait_time("api", "background") == INTERVAL_MS - 10_000
    consistent(store)
    assert burst(store, 2, "user") == [True, False]


def test_users_are_admitted_when_sustained_inactivity_reserves_nothing(
    stores: Stores, clock: FakeClock
) -> None:
    store = stores.limited(
        10,
        1200,
        monitoring_window_ms=3000,
        recalculation_interval_ms=SECOND_MS,
        sustained_inactivity_threshold_ms=10_000,
    )
    start = clock.now_ms
    assert store.acquire("api", "user")
    clock.now_ms = start + 11_000
    assert adaptive_of(store) == AdaptiveStatus(
        user_reserved=0,
        background_max=10,
        background_paused=False,
        recent_user_activity=0,
        reason="users inactive for a sustained period",
    )
    assert burst(store, 9, "background") == [True] * 9
    # Nothing is reserved for users, but the window has room: a user gets in.
    assert store.acquire("api", "user")
    assert not store.acquire("api", "user")
    assert not store.acquire("api", "background")


def test_concurrent_acquires_never_exceed_the_limit_or_the_share(stores: Stores) -> None:
    limit = 20  # 6 reserved for users, background up to 14
    first = stores.limited(limit)
    users = [first, *(stores.peer(first) for _ in range(3))]
    barrier = threading.Barrier(len(users))

    def hammer(user: AnyStore, priority: Priority) -> int:
        barrier.wait(10)
        return sum(user.acquire("contended", priority) for _ in range(8))

    priorities: list[Priority] = ["background", "background", "background", "user"]
    with ThreadPoolExecutor(len(users)) as pool:
        admitted = list(pool.map(hammer, users, priorities))
    background = sum(admitted[:3])
    assert background <= 14
    assert sum(admitted) <= limit
    # A writer that kept losing races may refuse early (the side that never over-admits):
    # what is left is topped up by users, one by one.
    left = limit - sum(admitted)
    assert burst(first, left + 1, "user", "contended") == [True] * left + [False]


# -- recomputation -------------------------------------------------------------------------------


def test_the_split_changes_only_at_recomputations(stores: Stores, clock: FakeClock) -> None:
    store = stores.limited(200, 10 * MINUTE_MS)
    start = clock.now_ms
    store.record("api", "background")  # the first split is computed now, before counting
    clock.now_ms = start + INTERVAL_MS - 1
    assert adaptive_of(store).reason == "no traffic yet"
    assert split(store) == (60, 140, False)
    clock.now_ms = start + INTERVAL_MS
    assert adaptive_of(store).reason == "background traffic only"
    assert split(store) == (5, 195, False)
    # A burst of users changes the split only at the next recomputation.
    assert burst(store, 12, "user") == [True] * 12
    clock.now_ms = start + 2 * INTERVAL_MS - 1
    assert split(store) == (5, 195, False)
    clock.now_ms = start + 2 * INTERVAL_MS
    assert split(store) == (180, 20, True)


def test_a_recomputation_is_shared_with_peers(stores: Stores, clock: FakeClock) -> None:
    store = stores()
    peer = stores.peer(store)
    start = clock.now_ms
    store.record("api", "background")
    clock.now_ms = start + INTERVAL_MS
    assert split(peer) == (5, 195, False)  # recomputed by the peer, at start + interval
    assert split(store) == (5, 195, False)
    clock.advance(1)
    assert burst(store, 12, "user") == [True] * 12  # not due: the peer's split is used
    clock.now_ms = start + 2 * INTERVAL_MS - 1
    assert split(store) == (5, 195, False)
    # Due an interval after the peer's recomputation, for both.
    clock.now_ms = start + 2 * INTERVAL_MS
    assert split(store) == (180, 20, True)
    assert adaptive_of(peer) == adaptive_of(store)


def test_a_limit_change_recomputes_the_split_at_once(stores: Stores, clock: FakeClock) -> None:
    store = stores()
    store.record("api", "background")
    clock.advance(1)
    store.set_resource_config("api", {"limit": 100})
    assert split(store) == (5, 95, False)  # recomputed for the new limit, from the activity
    clock.advance(INTERVAL_MS - 1)
    assert burst(store, 12, "user") == [True] * 12
    assert split(store) == (5, 95, False)  # same limit, not due yet
    store.set_resource_config("api", {"limit": 50})
    assert split(store) == (45, 5, True)
    assert store.get_status("api").remaining == 37


def test_a_window_change_starts_the_window_afresh_and_keeps_the_activity(
    stores: Stores, clock: FakeClock
) -> None:
    store = stores.limited(100)
    assert burst(store, 12, "user") == [True] * 12
    clock.advance(INTERVAL_MS)
    assert split(store) == (90, 10, True)
    store.set_resource_config("api", {"limit": 100, "window_ms": 2 * MINUTE_MS})
    assert store.get_status("api").remaining == 100
    assert split(store) == (90, 10, True)
    assert store.acquire("api", "user")
    clock.advance(INTERVAL_MS)
    adaptive = adaptive_of(store)
    assert adaptive.recent_user_activity == 13  # the activity outlived the change
    assert (adaptive.user_reserved, adaptive.background_paused) == (90, True)
    assert store.get_status("api").remaining == 99


# -- waiting -------------------------------------------------------------------------------------


def test_the_wait_for_a_full_window_is_kept(stores: Stores, clock: FakeClock) -> None:
    store = stores.limited(3, recalculation_interval_ms=10 * MINUTE_MS)
    peer = stores.peer(store)
    step = rate_slice_ms(MINUTE_MS)  # one admission per slice: they leave one at a time
    start = clock.now_ms
    for _ in range(3):
        assert store.acquire("api", "user")
        clock.advance(step)
    clock.advance(-step)
    assert not store.acquire("api", "user")
    consistent(store)
    wait = peer.get_wait_time("api", "user")
    assert store.get_wait_time("api", "background") >= wait
    # The oldest admission leaves at start + 60 s (exact) or by the end of its slice.
    assert start + MINUTE_MS <= clock.now_ms + wait <= start + MINUTE_MS + step
    assert wait_is_kept(peer, clock, "user") == wait
    assert peer.acquire("api", "user")
    assert not store.acquire("api", "user")
    assert store.get_wait_time("api", "user") > 0


def test_the_wait_for_a_full_share_is_kept(stores: Stores, clock: FakeClock) -> None:
    # L = 10 with 3 reserved: background up to 7; no recomputation for 10 minutes.
    store = stores.limited(10, min_user_reserved=1, recalculation_interval_ms=10 * MINUTE_MS)
    peer = stores.peer(store)
    step = rate_slice_ms(MINUTE_MS)
    start = clock.now_ms
    for _ in range(7):
        assert store.acquire("api", "background")
        clock.advance(step)
    clock.advance(-step)
    assert not store.acquire("api", "background")
    assert store.get_wait_time("api", "user") == 0
    consistent(store)
    wait = peer.get_wait_time("api", "background")
    assert start + MINUTE_MS <= clock.now_ms + wait <= start + MINUTE_MS + step
    assert wait_is_kept(peer, clock, "background") == wait
    assert peer.acquire("api", "background")
    assert not store.acquire("api", "background")


def test_records_past_the_limit_must_all_leave(stores: Stores, clock: FakeClock) -> None:
    store = stores.limited(2, recalculation_interval_ms=10 * MINUTE_MS)
    step = rate_slice_ms(MINUTE_MS)
    start = clock.now_ms
    for i in range(4):
        clock.now_ms = start + i * step
        store.record("api", "user")
    # 4 counted, limit 2: the third (start + 2 steps) must leave too.
    wait = wait_is_kept(store, clock, "user")
    third_leaves = start + 2 * step + MINUTE_MS
    assert third_leaves <= start + 3 * step + wait <= third_leaves + step


def test_a_zero_limit_waits_a_full_window(stores: Stores, clock: FakeClock) -> None:
    store = stores.limited(0)
    assert split(store) == (0, 0, False)
    for _ in range(2):
        for priority in PRIORITIES:
            assert not store.acquire("api", priority)
            assert not store.can_proceed("api", priority)
            assert store.get_wait_time("api", priority) == MINUTE_MS
        clock.advance(MINUTE_MS)
    assert stats_tuple(store) == (0, 0, 0)  # refusals record nothing
    store.record("api", "user")
    assert stats_tuple(store) == (1, 1, 1)
    assert store.get_wait_time("api", "user") == MINUTE_MS
    assert store.get_status("api").remaining == 0


def test_status_counts_down_and_resets_when_the_newest_admission_leaves(
    stores: Stores, clock: FakeClock
) -> None:
    store = stores.limited(10)
    start = clock.now_ms
    assert burst(store, 2, "user") == [True, True]
    clock.advance(INTERVAL_MS)
    assert store.acquire("api", "background")
    status = store.get_status("api")
    assert (status.remaining, status.limit) == (7, 10)
    newest_leaves = start + INTERVAL_MS + MINUTE_MS
    reset = reset_ms(status)
    assert newest_leaves <= reset <= newest_leaves + rate_slice_ms(MINUTE_MS)
    clock.now_ms = reset - 1
    assert store.get_status("api").remaining < 10
    clock.now_ms = reset
    status = store.get_status("api")
    assert status.remaining == 10
    assert reset_ms(status) == reset


# -- reset, stats, cleanup -----------------------------------------------------------------------


def test_reset_forgets_admissions_activity_and_split(stores: Stores, clock: FakeClock) -> None:
    store = stores()
    peer = stores.peer(store)
    assert store.acquire("api", "user")
    assert burst(store, 140, "background")[-1]
    assert store.acquire("other", "user")
    clock.advance(INTERVAL_MS)
    assert adaptive_of(store).reason == "low user activity (1 requests)"
    peer.reset("api")
    status = store.get_status("api")
    assert status.remaining == 200
    # "No traffic yet" means no user ever and no background activity: all forgotten.
    assert status.adaptive == AdaptiveStatus(60, 140, False, 0, "no traffic yet")
    assert store.get_status("other").remaining == 199  # other resources untouched
    store.reset("never-used")  # not an error
    assert stats_tuple(store) == (1, 1, 1)


def test_stats_follow_the_window(stores: Stores, clock: FakeClock) -> None:
    store = stores.limited(5)
    assert stats_tuple(store) == (0, 0, 0)
    assert store.can_proceed("read-only", "user")  # reads create no state
    start = clock.now_ms
    assert burst(store, 2, "user", "a") == [True, True]
    assert store.acquire("b", "user")
    clock.advance(INTERVAL_MS)
    store.record("c", "background")
    assert stats_tuple(store) == (3, 3, 4)
    clock.now_ms = start + MINUTE_MS + rate_slice_ms(MINUTE_MS)
    assert stats_tuple(store) == (3, 1, 1)  # a and b have left the window, not the store
    clock.now_ms = start + INTERVAL_MS + MINUTE_MS + rate_slice_ms(MINUTE_MS)
    assert stats_tuple(store) == (3, 0, 0)


def test_cleanup_removes_state_once_it_has_expired(stores: Stores, clock: FakeClock) -> None:
    # Kept for max(window 60 s, monitoring 3 s, 2 x inactivity 10 s) = 60 s after the newest.
    store = stores.limited(5, monitoring_window_ms=3000, sustained_inactivity_threshold_ms=10_000)
    slack = max(rate_slice_ms(MINUTE_MS), activity_slice_ms(3000))
    start = clock.now_ms
    assert store.acquire("a", "user")
    clock.advance(INTERVAL_MS)
    store.record("b", "user")
    assert store.cleanup() == 0
    clock.now_ms = start + MINUTE_MS - 1
    assert store.cleanup() == 0
    clock.now_ms = start + MINUTE_MS + slack
    assert store.cleanup() == 1
    assert stats_tuple(store) == (1, 1, 1)  # b, still counted in its window
    clock.now_ms = start + INTERVAL_MS + MINUTE_MS + slack
    assert store.cleanup() == 1
    assert stats_tuple(store) == (0, 0, 0)
    assert store.cleanup() == 0


def test_idle_users_are_remembered_until_the_state_expires(
    stores: Stores, clock: FakeClock
) -> None:
    # Kept for max(window 1.2 s, monitoring 3 s, 2 x inactivity 10 s) = 20 s after the newest.
    store = stores.limited(
        10,
        1200,
        monitoring_window_ms=3000,
        recalculation_interval_ms=SECOND_MS,
        sustained_inactivity_threshold_ms=10_000,
    )
    slack = max(rate_slice_ms(1200), activity_slice_ms(3000))
    start = clock.now_ms
    assert store.acquire("api", "user")
    clock.now_ms = start + 5000
    assert adaptive_of(store).reason == "no recent user activity"
    clock.now_ms = start + 20_000 - 1
    assert adaptive_of(store).reason == "users inactive for a sustained period"
    clock.now_ms = start + 20_000 + slack
    # Expired: as if new, cleaned up or not.
    assert adaptive_of(store) == AdaptiveStatus(5, 5, False, 0, "no traffic yet")
    assert store.cleanup() == 1
    assert adaptive_of(store).reason == "no traffic yet"


# -- signals -------------------------------------------------------------------------------------


def test_rate_limited_fires_on_refusals_only(stores: Stores, clock: FakeClock) -> None:
    store = stores.limited(10, 1200, recalculation_interval_ms=MINUTE_MS)
    events: list[signals.RateLimitedEvent] = []

    def receive(sender: object, *, event: signals.RateLimitedEvent) -> None:
        if sender is store:
            events.append(event)

    with signals.rate_limited.connected_to(receive):
        assert burst(store, 5, "background") == [True] * 5
        store.record("api", "background")  # past the share, but not a refusal
        assert not store.can_proceed("api", "background")  # a read, not a refusal
        store.get_wait_time("api", "background")
        store.get_status("api")
        assert events == []
        assert not store.acquire("api", "background")
        assert len(events) == 1
        assert events[0] == signals.RateLimitedEvent(
            store=store.store_name,
            table=store.table_name,
            resource="api",
            limit=10,
            window_ms=1200,
            wait_ms=store.get_wait_time("api", "background"),
            priority="background",
        )
        assert burst(store, 4, "user") == [True] * 4
        assert not store.acquire("api", "user")
        assert len(events) == 2
        assert events[1].priority == "user"
        assert events[1].wait_ms == store.get_wait_time("api", "user") > 0
        clock.advance(events[1].wait_ms)
        assert store.acquire("api", "user")
        assert len(events) == 2
    if stores.kind == "memory":
        assert (events[0].store, events[0].table) == ("memory-adaptive-rate-limit", "memory")
    else:
        assert events[0].table == stores.table_name


# -- bad input and lifecycle ---------------------------------------------------------------------

INVALID_RESOURCES: list[Any] = ["", 42, None, b"api", "lone \ud800 surrogate"]
INVALID_PRIORITIES: list[Any] = ["User", "", None, 1, "interactive"]


def prioritised(store: AnyStore, resource: Any, priority: Any) -> list[Callable[[], object]]:
    return [
        lambda: store.acquire(resource, priority),
        lambda: store.record(resource, priority),
        lambda: store.can_proceed(resource, priority),
        lambda: store.get_wait_time(resource, priority),
    ]


@pytest.mark.parametrize("resource", INVALID_RESOURCES, ids=repr)
def test_an_invalid_resource_is_refused_before_anything_happens(
    stores: Stores, resource: Any
) -> None:
    store = stores.limited(10)
    assert store.acquire("valid", "user")
    operations: list[Callable[[], object]] = [
        *prioritised(store, resource, "user"),
        *prioritised(store, resource, "not a priority"),  # the resource is checked first
        lambda: store.get_status(resource),
        lambda: store.reset(resource),
        lambda: store.set_resource_config(resource, RateLimitConfig(limit=1)),
    ]
    for operation in operations:
        with pytest.raises(InvalidKeyError):
            operation()
    assert stats_tuple(store) == (1, 1, 1)
    assert store.resource_configs == {}
    store.close()
    for operation in operations:
        with pytest.raises(InvalidKeyError):
            operation()


@pytest.mark.parametrize("priority", INVALID_PRIORITIES, ids=repr)
def test_an_invalid_priority_is_refused_before_anything_is_recorded(
    stores: Stores, clock: FakeClock, priority: Any
) -> None:
    store = stores.limited(2)  # nothing for background work: a refusal would be signalled
    store.record("api", "user")
    events: list[signals.RateLimitedEvent] = []

    def receive(sender: object, *, event: signals.RateLimitedEvent) -> None:
        if sender is store:
            events.append(event)

    with signals.rate_limited.connected_to(receive):
        for resource in ("api", "fresh"):
            for operation in prioritised(store, resource, priority):
                with pytest.raises(ConfigurationError) as caught:
                    operation()
                assert caught.value.field == "priority"
    assert events == []
    assert stats_tuple(store) == (1, 1, 1)
    assert store.get_status("api").remaining == 1
    store.close()
    for operation in prioritised(store, "api", priority):  # checked before the closed store
        with pytest.raises(ConfigurationError):
            operation()


def test_health_check_reports_healthy_with_a_closed_breaker(store: AnyStore) -> None:
    result = store.health_check()
    assert result.healthy
    assert result.circuit_state == "closed"
    assert result.error is None


def test_a_closed_store_refuses_every_operation(stores: Stores) -> None:
    store = stores.limited(10)
    assert store.acquire("api", "user")
    store.close()
    store.close()  # idempotent
    assert store.closed
    operations: list[Callable[[], object]] = [
        *prioritised(store, "fresh", "user"),
        *prioritised(store, "api", "background"),
        lambda: store.get_status("api"),
        lambda: store.reset("api"),
        store.get_stats,
        store.cleanup,
    ]
    for operation in operations:
        with pytest.raises(StoreClosedError):
            operation()
    health = store.health_check()
    assert not health.healthy
    assert health.error is not None
    assert "StoreClosedError" in health.error
    # Configs are local settings, not stored state: still answered.
    assert store.get_resource_config("api") == RateLimitConfig(limit=10, window_ms=MINUTE_MS)


def test_context_manager_closes_the_store(stores: Stores) -> None:
    with stores.limited(10) as store:
        assert store.acquire("api", "user")
    with pytest.raises(StoreClosedError):
        store.can_proceed("api", "user")
