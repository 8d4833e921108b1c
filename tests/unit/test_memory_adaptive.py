"""The in-memory adaptive rate-limit store under a frozen clock: its exact behaviour.

Every count of this store is exact (an admission at ``a`` counts at ``t`` iff ``t - a`` is
below the span), so these tests pin values to the millisecond: when the split is recomputed,
what each branch of the admission rule decides, how long the waits are. What the DynamoDB
store must match too is in ``tests/contract/test_adaptive_contract.py``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comic_vine_dynamodb_store.config import AdaptiveConfig, RateLimitConfig
from comic_vine_dynamodb_store.errors import ConfigurationError, InvalidKeyError, StoreClosedError
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.adaptive_core import PRIORITIES
from comic_vine_dynamodb_store.stores.contracts import (
    AdaptiveRateLimitStore,
    AdaptiveStatus,
    Priority,
)
from comic_vine_dynamodb_store.stores.memory_adaptive import InMemoryAdaptiveRateLimitStore
from tests.support import FakeClock

T0 = 1_700_000_000_000
SECOND_MS = 1000
MINUTE_MS = 60_000
INTERVAL_MS = 30_000  # the default recalculation_interval_ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def make(
    clock: FakeClock, limit: int = 10, window_ms: int = MINUTE_MS, **adaptive: Any
) -> InMemoryAdaptiveRateLimitStore:
    return InMemoryAdaptiveRateLimitStore(
        default_config={"limit": limit, "window_ms": window_ms},
        adaptive_config=adaptive,
        clock=clock,
    )


def split(store: InMemoryAdaptiveRateLimitStore, resource: str = "api") -> tuple[int, int, bool]:
    adaptive = store.get_status(resource).adaptive
    assert adaptive is not None
    return adaptive.user_reserved, adaptive.background_max, adaptive.background_paused


def reason(store: InMemoryAdaptiveRateLimitStore, resource: str = "api") -> str:
    adaptive = store.get_status(resource).adaptive
    assert adaptive is not None
    return adaptive.reason


def burst(
    store: InMemoryAdaptiveRateLimitStore, attempts: int, priority: Priority, resource: str = "api"
) -> list[bool]:
    return [store.acquire(resource, priority) for _ in range(attempts)]


def stats_tuple(store: InMemoryAdaptiveRateLimitStore) -> tuple[int, int, int]:
    stats = store.get_stats()
    return stats.total_resources, stats.active_resources, stats.total_requests


def consistent(store: InMemoryAdaptiveRateLimitStore, resource: str = "api") -> None:
    """For both priorities: the wait is 0 exactly when a request may proceed."""
    for priority in PRIORITIES:
        wait = store.get_wait_time(resource, priority)
        assert wait >= 0
        assert store.can_proceed(resource, priority) == (wait == 0), priority


def refused_until_exactly(
    store: InMemoryAdaptiveRateLimitStore, clock: FakeClock, priority: Priority
) -> int:
    """Checks the wait's promise: refused 1 ms before ``now + wait``, admitted at it."""
    start = clock.now_ms
    wait = store.get_wait_time("api", priority)
    assert wait > 0
    assert not store.can_proceed("api", priority)
    clock.now_ms = start + wait - 1
    assert not store.can_proceed("api", priority)
    assert store.get_wait_time("api", priority) == 1
    clock.now_ms = start + wait
    assert store.get_wait_time("api", priority) == 0
    assert store.can_proceed("api", priority)
    return wait


# -- shape ---------------------------------------------------------------------------------------


def test_store_implements_the_adaptive_protocol(clock: FakeClock) -> None:
    store = make(clock)
    assert isinstance(store, AdaptiveRateLimitStore)
    assert (store.store_name, store.table_name) == ("memory-adaptive-rate-limit", "memory")


def test_defaults_are_200_per_minute_and_the_default_adaptive_config(clock: FakeClock) -> None:
    store = InMemoryAdaptiveRateLimitStore(clock=clock)
    assert store.get_resource_config("api") == RateLimitConfig(limit=200, window_ms=MINUTE_MS)
    assert store.options.adaptive_config == AdaptiveConfig()
    status = store.get_status("api")
    assert (status.remaining, status.limit) == (200, 200)
    assert round(status.reset_time.timestamp() * 1000) == T0
    assert status.adaptive == AdaptiveStatus(
        user_reserved=60,
        background_max=140,
        background_paused=False,
        recent_user_activity=0,
        reason="no traffic yet",
    )


def test_options_accept_models_or_mappings(clock: FakeClock) -> None:
    store = InMemoryAdaptiveRateLimitStore(
        default_config=RateLimitConfig(limit=7, window_ms=SECOND_MS),
        resource_configs={"slow": {"limit": 1}},
        adaptive_config=AdaptiveConfig(min_user_reserved=2),
        clock=clock,
    )
    assert store.get_resource_config("other") == RateLimitConfig(limit=7, window_ms=SECOND_MS)
    assert store.resource_configs == {"slow": RateLimitConfig(limit=1, window_ms=MINUTE_MS)}
    assert store.options.adaptive_config.min_user_reserved == 2
    # L = 7: max(floor(2.1), 2) = 2 reserved for users.
    assert split(store, "other") == (2, 5, False)


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("adaptive_config", {"moderate_activity_threshold": 10}, "moderate_activity_threshold"),
        ("adaptive_config", {"recalculation_interval_ms": 0}, "recalculation_interval_ms"),
        ("adaptive_config", {"min_user_reserved": -1}, "min_user_reserved"),
        ("adaptive_config", {"burst": 1}, "burst"),
        ("default_config", {"limit": -1}, "limit"),
        ("resource_configs", {"api": {"window_ms": 0}}, "window_ms"),
    ],
)
def test_bad_options_are_refused_at_construction(
    clock: FakeClock, option: str, value: object, field: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        InMemoryAdaptiveRateLimitStore(clock=clock, **{option: value})  # type: ignore[arg-type]
    assert caught.value.field is not None
    assert caught.value.field.startswith(option)
    assert caught.value.field.endswith(field)


# -- the admission rule --------------------------------------------------------------------------


def test_users_need_only_room_in_the_window(clock: FakeClock) -> None:
    # L = 10: 5 reserved for users (min_user_reserved beats 30%), background up to 5.
    store = make(clock)
    assert split(store) == (5, 5, False)
    assert burst(store, 10, "user") == [True] * 10  # users may take the whole limit
    assert burst(store, 1, "user") == [False]
    assert not store.can_proceed("api", "background")
    assert store.get_status("api").remaining == 0


def test_background_needs_room_in_its_share(clock: FakeClock) -> None:
    store = make(clock)
    assert burst(store, 7, "background") == [True] * 5 + [False] * 2
    assert not store.can_proceed("api", "background")
    # Users are still admitted: the share caps background work, not users.
    assert burst(store, 6, "user") == [True] * 5 + [False]
    assert store.get_status("api").remaining == 0


def test_background_also_needs_room_in_the_window(clock: FakeClock) -> None:
    store = make(clock)
    assert burst(store, 10, "user") == [True] * 10
    assert store.can_proceed("api", "user") is False
    # The background share is empty, but the window is full.
    assert burst(store, 1, "background") == [False]
    assert store.get_wait_time("api", "background") == MINUTE_MS


def test_records_count_in_the_window_and_the_share(clock: FakeClock) -> None:
    store = make(clock)
    for _ in range(4):
        store.record("api", "background")
    assert burst(store, 2, "background") == [True, False]
    for _ in range(6):
        store.record("api")  # background by default, past the share: counted all the same
    assert store.get_status("api").remaining == 0
    assert not store.acquire("api", "user")
    assert stats_tuple(store) == (1, 1, 11)


def test_the_default_priority_is_background(clock: FakeClock) -> None:
    store = make(clock)
    assert [store.acquire("api") for _ in range(6)] == [True] * 5 + [False]
    assert not store.can_proceed("api")
    assert store.can_proceed("api", "user")
    assert store.get_wait_time("api") > 0
    assert store.get_wait_time("api", "user") == 0


def test_a_paused_share_refuses_background_while_users_get_in(clock: FakeClock) -> None:
    # 12 users within the newest third of the monitoring window: high and increasing.
    store = make(clock, limit=100)
    assert burst(store, 12, "user") == [True] * 12
    assert split(store) == (30, 70, False)  # the split of when nothing had happened yet
    clock.advance(INTERVAL_MS)
    status = store.get_status("api")
    assert status.adaptive == AdaptiveStatus(
        user_reserved=90,  # min(0.9 L, floor(0.5 L x 2))
        background_max=10,
        background_paused=True,
        recent_user_activity=12,
        reason="high user activity (12 requests, trend increasing)",
    )
    assert status.remaining == 88
    assert not store.acquire("api", "background")
    assert store.get_wait_time("api", "background") == INTERVAL_MS  # the next recomputation
    assert burst(store, 5, "user") == [True] * 5
    consistent(store)


def test_pausing_can_be_disabled(clock: FakeClock) -> None:
    store = make(clock, limit=100, background_pause_on_increasing_trend=False)
    assert burst(store, 12, "user") == [True] * 12
    clock.advance(INTERVAL_MS)
    assert split(store) == (90, 10, False)
    assert burst(store, 11, "background") == [True] * 10 + [False]


def test_a_pause_lifts_at_the_recomputation_that_sees_the_trend_turn(clock: FakeClock) -> None:
    # Monitoring window 3 s (thirds of 1 s), recomputed every 500 ms.
    store = make(clock, limit=100, monitoring_window_ms=3000, recalculation_interval_ms=500)
    assert burst(store, 12, "user") == [True] * 12
    clock.advance(500)
    assert split(store) == (90, 10, True)
    # At T0 + 1000 the users are in the previous third: decreasing, no pause. The wait says
    # exactly that, and nothing is admitted a millisecond before.
    assert refused_until_exactly(store, clock, "background") == 500
    assert clock.now_ms == T0 + 1000
    assert split(store) == (90, 10, False)
    assert reason(store) == "high user activity (12 requests, trend decreasing)"
    assert store.acquire("api", "background")


def test_users_are_admitted_when_background_max_is_zero(clock: FakeClock) -> None:
    # L = 5 and min_user_reserved = 5: everything is reserved for users.
    store = make(clock, limit=5)
    assert split(store) == (5, 0, False)
    assert not store.acquire("api", "background")
    assert store.get_wait_time("api", "background") == INTERVAL_MS
    assert burst(store, 4, "user") == [True] * 4
    clock.advance(10_000)
    # Only a recomputation can give background work a share: the wait names the next one.
    assert store.get_wait_time("api", "background") == INTERVAL_MS - 10_000
    consistent(store)
    assert burst(store, 2, "user") == [True, False]
    # Now the window is full too, for longer: the first users leave at T0 + 60 s.
    assert store.get_wait_time("api", "background") == MINUTE_MS - 10_000
    assert store.get_wait_time("api", "user") == MINUTE_MS - 10_000


def test_users_are_admitted_when_sustained_inactivity_reserves_nothing(clock: FakeClock) -> None:
    store = make(
        clock,
        window_ms=SECOND_MS,
        monitoring_window_ms=3000,
        recalculation_interval_ms=SECOND_MS,
        sustained_inactivity_threshold_ms=10_000,
    )
    assert store.acquire("api", "user")
    clock.now_ms = T0 + 10_000
    assert reason(store) == "no recent user activity"  # not idle for longer than 10 s yet
    assert split(store) == (5, 5, False)
    clock.now_ms = T0 + 11_000
    assert store.get_status("api").adaptive == AdaptiveStatus(
        user_reserved=0,
        background_max=10,
        background_paused=False,
        recent_user_activity=0,
        reason="users inactive for a sustained period",
    )
    assert burst(store, 9, "background") == [True] * 9
    # Nothing reserved, but the window has room: the user gets in.
    assert store.acquire("api", "user")
    assert not store.acquire("api", "user")
    assert not store.acquire("api", "background")


# -- recomputation -------------------------------------------------------------------------------


def test_the_split_is_kept_until_the_interval_has_passed(clock: FakeClock) -> None:
    store = make(clock, limit=200, window_ms=10 * MINUTE_MS)
    store.record("api", "background")  # computed at T0, before counting: no traffic yet
    clock.now_ms = T0 + INTERVAL_MS - 1
    assert split(store) == (60, 140, False)
    assert reason(store) == "no traffic yet"
    clock.now_ms = T0 + INTERVAL_MS
    assert split(store) == (5, 195, False)
    assert reason(store) == "background traffic only"
    # A burst of users changes the split only at the next recomputation (T0 + 2 x interval,
    # the read above having recomputed at T0 + interval).
    assert burst(store, 12, "user") == [True] * 12
    clock.now_ms = T0 + 2 * INTERVAL_MS - 1
    assert split(store) == (5, 195, False)
    clock.now_ms = T0 + 2 * INTERVAL_MS
    assert split(store) == (180, 20, True)


@pytest.mark.parametrize(
    "operation",
    ["acquire", "record", "can_proceed", "get_wait_time", "get_status"],
)
def test_every_operation_recomputes_a_due_split_before_deciding(
    clock: FakeClock, operation: str
) -> None:
    store = make(clock, limit=10, window_ms=10 * MINUTE_MS, min_user_reserved=1)
    assert burst(store, 8, "background") == [True] * 7 + [False]  # fresh: 3 for users
    clock.advance(INTERVAL_MS)
    call: Callable[[], object] = {
        "acquire": lambda: store.acquire("api", "background"),
        "record": lambda: store.record("api", "user"),
        "can_proceed": lambda: store.can_proceed("api", "background"),
        "get_wait_time": lambda: store.get_wait_time("api", "background"),
        "get_status": lambda: store.get_status("api"),
    }[operation]
    result = call()
    # Background traffic only: 1 reserved, 9 for background, seen by this very call.
    decided = {"acquire": True, "can_proceed": True, "get_wait_time": 0}
    assert result == decided.get(operation, result)
    clock.advance(INTERVAL_MS - 1)  # computed at the call above: not due yet
    assert reason(store) == "background traffic only"
    assert split(store) == (1, 9, False)


def test_a_read_of_an_unused_resource_stores_no_split(clock: FakeClock) -> None:
    store = make(clock, limit=10, window_ms=10 * MINUTE_MS, min_user_reserved=1)
    assert store.can_proceed("api")
    clock.advance(INTERVAL_MS - 1)
    # The first admission computes the split now; it is due an interval after that.
    store.record("api", "background")
    clock.advance(INTERVAL_MS - 1)
    assert reason(store) == "no traffic yet"
    clock.advance(1)
    assert reason(store) == "background traffic only"
    assert stats_tuple(store) == (1, 1, 1)


def test_a_limit_change_recomputes_at_once(clock: FakeClock) -> None:
    store = make(clock, limit=200)
    store.record("api", "background")
    clock.advance(1)
    store.set_resource_config("api", {"limit": 100})
    assert split(store) == (5, 95, False)  # recomputed for L = 100 (background only)
    clock.advance(INTERVAL_MS - 1)
    store.set_resource_config("api", {"limit": 100})  # the same limit: nothing is due
    assert split(store) == (5, 95, False)
    assert burst(store, 12, "user") == [True] * 12
    store.set_resource_config("api", {"limit": 50})
    assert split(store) == (45, 5, True)  # min(45, 50), paused


def test_a_window_change_starts_the_window_afresh_and_keeps_the_activity(
    clock: FakeClock,
) -> None:
    store = make(clock, limit=100)
    assert burst(store, 12, "user") == [True] * 12
    clock.advance(INTERVAL_MS)
    assert split(store) == (90, 10, True)
    store.set_resource_config("api", {"limit": 100, "window_ms": 2 * MINUTE_MS})
    status = store.get_status("api")
    assert status.remaining == 100
    assert status.adaptive is not None
    assert status.adaptive.background_paused  # the split is kept
    assert status.adaptive.recent_user_activity == 12
    assert store.acquire("api", "user")
    clock.advance(INTERVAL_MS)
    assert store.get_status("api").adaptive == AdaptiveStatus(
        user_reserved=90,
        background_max=10,
        background_paused=True,
        recent_user_activity=13,  # the activity was kept across the change
        reason="high user activity (13 requests, trend increasing)",
    )
    assert store.get_status("api").remaining == 99


def test_the_thirds_of_the_monitoring_window_are_exact(clock: FakeClock) -> None:
    # Monitoring window 3 s, recomputed at every call that is at least 1 ms after the last: a
    # user request is in the newest third while younger than 1000 ms, in the previous one
    # from 1000 ms to 1999 ms, in the window until 2999 ms. 5 users at T0, 5 at T0 + 998.
    store = make(
        clock,
        limit=100,
        monitoring_window_ms=3000,
        recalculation_interval_ms=1,
        moderate_activity_threshold=3,
        high_activity_threshold=20,
    )
    for _ in range(5):
        store.record("api", "user")
    clock.now_ms = T0 + 998
    for _ in range(5):
        store.record("api", "user")
    expected = [
        (999, 10, "increasing"),  # 10 in the newest third
        (1000, 10, "stable"),  # the first 5 are in the previous third: 5 against 5
        (1997, 10, "stable"),
        (1998, 10, "decreasing"),  # the last 5 too: 0 against 10
        (2000, 10, "decreasing"),  # the first 5 in the oldest third: 0 against 5
        (2997, 10, "decreasing"),
        (2998, 10, "none"),  # both in the oldest third, still in the window
        (3000, 5, "none"),  # the first 5 have left the monitoring window
        (3997, 5, "none"),
    ]
    for offset, requests, trend in expected:
        clock.now_ms = T0 + offset
        assert reason(store) == f"moderate user activity ({requests} requests, trend {trend})"
    clock.now_ms = T0 + 3998  # the last 5 have left too
    assert reason(store) == "no recent user activity"


# -- waiting -------------------------------------------------------------------------------------


def test_a_full_window_is_waited_out_to_the_millisecond(clock: FakeClock) -> None:
    store = make(clock, limit=3, recalculation_interval_ms=10 * MINUTE_MS)
    store.acquire("api", "user")
    clock.advance(100)
    store.acquire("api", "user")
    clock.advance(100)
    store.acquire("api", "user")
    consistent(store)
    # The oldest (T0) leaves at T0 + 60 s.
    assert refused_until_exactly(store, clock, "user") == MINUTE_MS - 200
    assert store.acquire("api", "user")
    assert not store.acquire("api", "user")
    assert store.get_wait_time("api", "user") == 100


def test_a_full_share_is_waited_out_to_the_millisecond(clock: FakeClock) -> None:
    # L = 10 with 3 reserved: background up to 7; no recomputation for 10 minutes.
    store = make(clock, min_user_reserved=1, recalculation_interval_ms=10 * MINUTE_MS)
    assert burst(store, 2, "user") == [True] * 2  # older, but not in the share
    clock.advance(50)
    assert burst(store, 3, "background") == [True] * 3
    clock.advance(50)
    assert burst(store, 4, "background") == [True] * 4
    assert store.get_wait_time("api", "user") == 0
    consistent(store)
    # The 7 counted must drop to 6: the three at T0 + 50 leave at T0 + 60 050.
    assert refused_until_exactly(store, clock, "background") == MINUTE_MS - 50
    assert burst(store, 4, "background") == [True] * 3 + [False]


def test_records_past_the_limit_must_all_leave(clock: FakeClock) -> None:
    store = make(clock, limit=2, recalculation_interval_ms=10 * MINUTE_MS)
    for step in range(4):
        clock.now_ms = T0 + step * 10
        store.record("api", "user")
    # 4 counted, limit 2: the 3 oldest must leave; the third leaves at T0 + 20 + 60 s.
    assert refused_until_exactly(store, clock, "user") == MINUTE_MS + 20 - 30
    assert clock.now_ms == T0 + MINUTE_MS + 20


def test_the_wait_is_the_longest_of_what_blocks(clock: FakeClock) -> None:
    store = make(clock, limit=100, recalculation_interval_ms=10_000)
    assert burst(store, 12, "user") == [True] * 12
    clock.advance(10_000)
    assert split(store) == (90, 10, True)
    for _ in range(88):
        store.record("api", "user")  # full at T0 + 10 s: the first 12 leave at T0 + 60 s
    # Paused (next recomputation in 10 s) and full (50 s): the window decides.
    assert store.get_wait_time("api", "background") == 50_000
    assert store.get_wait_time("api", "user") == 50_000
    clock.advance(45_000)
    store.get_status("api")  # recomputed: still paused, next at T0 + 65 s
    assert store.get_wait_time("api", "user") == 5_000
    assert store.get_wait_time("api", "background") == 10_000  # the pause decides
    consistent(store)


def test_a_zero_limit_waits_a_full_window(clock: FakeClock) -> None:
    store = make(clock, limit=0)
    assert split(store) == (0, 0, False)
    for priority in PRIORITIES:
        assert not store.acquire("api", priority)
        assert store.get_wait_time("api", priority) == MINUTE_MS
    assert stats_tuple(store) == (0, 0, 0)
    store.record("api", "user")
    assert store.get_wait_time("api", "user") == MINUTE_MS
    assert stats_tuple(store) == (1, 1, 1)


# -- reset, stats, cleanup -----------------------------------------------------------------------


def test_reset_forgets_admissions_activity_and_split(clock: FakeClock) -> None:
    store = make(clock, limit=200)
    assert store.acquire("api", "user")
    assert burst(store, 140, "background")[-1]
    assert store.acquire("other", "user")
    clock.advance(INTERVAL_MS)
    assert reason(store) == "low user activity (1 requests)"
    store.reset("api")
    # "no traffic yet" needs no user ever and no background activity: all forgotten.
    status = store.get_status("api")
    assert status.remaining == 200
    assert status.adaptive == AdaptiveStatus(60, 140, False, 0, "no traffic yet")
    assert burst(store, 141, "background") == [True] * 140 + [False]
    assert store.get_status("other").remaining == 199  # other resources untouched
    store.reset("never-used")  # not an error
    assert stats_tuple(store) == (2, 2, 141)


def test_stats_count_resources_and_admissions_in_the_window(clock: FakeClock) -> None:
    store = make(clock, limit=5)
    assert stats_tuple(store) == (0, 0, 0)
    assert store.can_proceed("read-only", "user")  # reads create no state
    assert burst(store, 2, "user", "a") == [True, True]
    assert store.acquire("b", "user")
    clock.advance(30_000)
    store.record("c", "user")
    assert stats_tuple(store) == (3, 3, 4)
    clock.now_ms = T0 + MINUTE_MS
    assert stats_tuple(store) == (3, 1, 1)  # a and b have left the window, not the store
    clock.now_ms = T0 + 30_000 + MINUTE_MS
    assert stats_tuple(store) == (3, 0, 0)


def test_cleanup_removes_state_once_it_has_expired(clock: FakeClock) -> None:
    # Retention: max(window 60 s, monitoring 15 min, 2 x 30 min) = 1 h after the newest.
    store = make(clock, limit=5)
    hour = 60 * MINUTE_MS
    assert store.acquire("a", "user")
    clock.advance(MINUTE_MS)
    store.record("b")
    assert store.cleanup() == 0
    clock.now_ms = T0 + hour - 1
    assert store.cleanup() == 0
    assert reason(store, "a") == "users inactive for a sustained period"  # remembered
    clock.now_ms = T0 + hour
    assert reason(store, "a") == "no traffic yet"  # expired: as if new, before any cleanup
    assert stats_tuple(store) == (2, 0, 0)
    assert store.cleanup() == 1
    assert stats_tuple(store) == (1, 0, 0)
    clock.now_ms = T0 + MINUTE_MS + hour
    assert store.cleanup() == 1
    assert stats_tuple(store) == (0, 0, 0)
    assert store.cleanup() == 0


@pytest.mark.parametrize(
    ("window_ms", "monitoring_ms", "inactivity_ms", "retention_ms"),
    [
        (MINUTE_MS, 3000, 10_000, MINUTE_MS),
        (SECOND_MS, 50_000, 10_000, 50_000),
        (SECOND_MS, 3000, 10_000, 20_000),
    ],
)
def test_state_is_kept_for_the_longest_of_window_monitoring_and_twice_inactivity(
    clock: FakeClock, window_ms: int, monitoring_ms: int, inactivity_ms: int, retention_ms: int
) -> None:
    store = make(
        clock,
        window_ms=window_ms,
        monitoring_window_ms=monitoring_ms,
        sustained_inactivity_threshold_ms=inactivity_ms,
    )
    assert store.acquire("api", "user")
    clock.now_ms = T0 + retention_ms - 1
    assert store.cleanup() == 0
    clock.now_ms = T0 + retention_ms
    assert store.cleanup() == 1


def test_an_admission_on_expired_state_starts_afresh(clock: FakeClock) -> None:
    store = make(
        clock,
        limit=5,
        window_ms=SECOND_MS,
        sustained_inactivity_threshold_ms=SECOND_MS,
        min_user_reserved=1,
    )
    assert store.acquire("api", "user")
    clock.now_ms = T0 + 15 * MINUTE_MS  # the monitoring window bounds the retention here
    assert store.acquire("api", "background")
    assert reason(store) == "no traffic yet"  # computed as if new, not "users inactive"
    assert stats_tuple(store) == (1, 1, 1)
    clock.advance(INTERVAL_MS)
    assert reason(store) == "background traffic only"  # the old user is forgotten


# -- bad input and lifecycle ---------------------------------------------------------------------

INVALID_RESOURCES: list[Any] = ["", 42, None, b"api", "lone \ud800 surrogate"]
INVALID_PRIORITIES: list[Any] = ["User", "", None, 1, "interactive"]


def operations(
    store: InMemoryAdaptiveRateLimitStore, resource: Any, priority: Any
) -> list[Callable[[], object]]:
    return [
        lambda: store.acquire(resource, priority),
        lambda: store.record(resource, priority),
        lambda: store.can_proceed(resource, priority),
        lambda: store.get_wait_time(resource, priority),
    ]


@pytest.mark.parametrize("resource", INVALID_RESOURCES, ids=repr)
def test_a_bad_resource_raises_first(clock: FakeClock, resource: Any) -> None:
    store = make(clock)
    assert store.acquire("valid", "user")
    calls: list[Callable[[], object]] = [
        *operations(store, resource, "user"),
        *operations(store, resource, "bad priority"),
        lambda: store.get_status(resource),
        lambda: store.reset(resource),
        lambda: store.set_resource_config(resource, {"limit": 1}),
    ]
    for call in calls:
        with pytest.raises(InvalidKeyError):
            call()
    assert stats_tuple(store) == (1, 1, 1)
    assert store.resource_configs == {}
    store.close()
    for call in calls:
        with pytest.raises(InvalidKeyError):
            call()


@pytest.mark.parametrize("priority", INVALID_PRIORITIES, ids=repr)
def test_a_bad_priority_raises_before_anything_is_recorded(clock: FakeClock, priority: Any) -> None:
    store = make(clock, limit=2)
    store.record("api")
    events: list[signals.RateLimitedEvent] = []

    def receive(sender: object, *, event: signals.RateLimitedEvent) -> None:
        events.append(event)

    clock.advance(INTERVAL_MS)  # a split is due; the bad calls must not recompute it
    with signals.rate_limited.connected_to(receive, sender=store):
        for call in operations(store, "api", priority):
            with pytest.raises(ConfigurationError) as caught:
                call()
            assert caught.value.field == "priority"
        for call in operations(store, "fresh", priority):
            with pytest.raises(ConfigurationError):
                call()
    assert events == []
    assert stats_tuple(store) == (1, 1, 1)
    clock.advance(5)
    assert reason(store) == "background traffic only"  # recomputed now, at T0 + 30 005
    for _ in range(12):
        store.record("api", "user")
    clock.now_ms = T0 + 2 * INTERVAL_MS
    assert reason(store) == "background traffic only"  # due only at T0 + 60 005
    clock.now_ms = T0 + 2 * INTERVAL_MS + 5
    assert reason(store).startswith("high user activity")
    # Before the closed check, too.
    store.close()
    for call in operations(store, "api", priority):
        with pytest.raises(ConfigurationError):
            call()


def test_a_closed_store_refuses_every_operation(clock: FakeClock) -> None:
    store = make(clock)
    assert store.acquire("api", "user")
    store.close()
    store.close()  # idempotent
    assert store.closed
    calls: list[Callable[[], object]] = [
        *operations(store, "api", "user"),
        *operations(store, "api", "background"),
        lambda: store.get_status("api"),
        lambda: store.reset("api"),
        store.get_stats,
        store.cleanup,
    ]
    for call in calls:
        with pytest.raises(StoreClosedError) as caught:
            call()
        assert caught.value.table == "memory"
    health = store.health_check()
    assert not health.healthy
    assert health.error is not None
    assert "StoreClosedError" in health.error
    # Configs are local settings: still answered.
    assert store.get_resource_config("api") == RateLimitConfig(limit=10, window_ms=MINUTE_MS)


def test_context_manager_closes_and_health_is_reported(clock: FakeClock) -> None:
    with make(clock) as store:
        health = store.health_check()
        assert health.healthy
        assert health.circuit_state == "closed"
        assert store.acquire("api")
    with pytest.raises(StoreClosedError):
        store.can_proceed("api")


# -- signals -------------------------------------------------------------------------------------


def test_every_refusal_sends_rate_limited_with_the_priority(clock: FakeClock) -> None:
    store = make(clock, window_ms=SECOND_MS, recalculation_interval_ms=MINUTE_MS)
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
        clock.advance(200)
        assert not store.acquire("api", "background")
        assert events == [
            signals.RateLimitedEvent(
                store="memory-adaptive-rate-limit",
                table="memory",
                resource="api",
                limit=10,
                window_ms=SECOND_MS,
                wait_ms=800,
                priority="background",
            )
        ]
        assert events[0].wait_ms == store.get_wait_time("api", "background")
        assert burst(store, 4, "user") == [True] * 4
        assert not store.acquire("api", "user")
        assert events[-1] == signals.RateLimitedEvent(
            store="memory-adaptive-rate-limit",
            table="memory",
            resource="api",
            limit=10,
            window_ms=SECOND_MS,
            wait_ms=800,
            priority="user",
        )
        clock.advance(events[-1].wait_ms)
        assert store.acquire("api", "user")
        assert len(events) == 2


def test_a_receiver_may_use_the_store(clock: FakeClock) -> None:
    store = make(clock, limit=1)
    seen: list[int] = []

    def receive(sender: object, *, event: signals.RateLimitedEvent) -> None:
        seen.append(store.get_wait_time(event.resource, "user"))  # would deadlock under the lock

    with signals.rate_limited.connected_to(receive, sender=store):
        assert store.acquire("api", "user")
        assert not store.acquire("api", "user")
    assert seen == [MINUTE_MS]


# -- properties ----------------------------------------------------------------------------------


@st.composite
def adaptive_configs(draw: st.DrawFn) -> AdaptiveConfig:
    high = draw(st.integers(2, 8))
    return AdaptiveConfig(
        monitoring_window_ms=draw(st.integers(1, 5000)),
        high_activity_threshold=high,
        moderate_activity_threshold=draw(st.integers(1, high - 1)),
        recalculation_interval_ms=draw(st.integers(1, 3000)),
        sustained_inactivity_threshold_ms=draw(st.integers(1, 5000)),
        background_pause_on_increasing_trend=draw(st.booleans()),
        max_user_scaling=draw(st.floats(1.0, 3.0)),
        min_user_reserved=draw(st.integers(0, 6)),
    )


Step = tuple[int, str, Priority, bool]
"""Milliseconds to advance, the operation, its priority, and whether to wait out a refusal."""


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(0, 12),
    window_ms=st.integers(1, 2000),
    adaptive=adaptive_configs(),
    steps=st.lists(
        st.tuples(
            st.integers(0, 400),
            st.sampled_from(["acquire", "acquire", "acquire", "record"]),
            st.sampled_from(PRIORITIES),
            st.booleans(),
        ),
        max_size=80,
    ),
)
def test_random_traffic_never_exceeds_the_limit_and_waits_agree(
    limit: int, window_ms: int, adaptive: AdaptiveConfig, steps: list[Step]
) -> None:
    clock = FakeClock(T0)
    store = InMemoryAdaptiveRateLimitStore(
        default_config={"limit": limit, "window_ms": window_ms},
        adaptive_config=adaptive,
        clock=clock,
    )
    events: list[int] = []  # admitted acquires and records, in order
    admitted: list[int] = []

    def counted(now: int) -> int:
        return len(events) - bisect_right(events, now - window_ms)

    for advance, operation, priority, follow in steps:
        clock.advance(advance)
        now = clock.now_ms
        consistent(store)
        status = store.get_status("api")
        assert status.remaining == max(0, limit - counted(now))
        adaptive_status = status.adaptive
        assert adaptive_status is not None
        assert adaptive_status.user_reserved + adaptive_status.background_max == limit
        if operation == "record":
            store.record("api", priority)
            events.append(now)
            continue
        if store.acquire("api", priority):
            events.append(now)
            admitted.append(now)
            # With it, the window ending at this admission holds at most the limit.
            assert counted(now) <= limit
            continue
        if priority == "user":
            # Users are refused only by a full window, which the wait names exactly.
            assert counted(now) >= limit
        if follow and priority == "user":
            wait = store.get_wait_time("api", "user")
            clock.now_ms = now + wait - 1
            assert not store.can_proceed("api", "user")
            clock.now_ms = now + wait
            assert store.can_proceed("api", "user") == (limit > 0)
    for a in admitted:
        in_span = bisect_right(admitted, a) - bisect_right(admitted, a - window_ms)
        assert in_span <= limit
