"""The adaptive limiter's per-resource state under a frozen clock.

Unless a test says otherwise: a 60 s rate window (60 slices of 1000 ms), limit 200, and the
default :class:`AdaptiveConfig` (a 900 000 ms monitoring window cut into 30 slices of 30 000 ms,
a recomputation every 30 000 ms, 30 minutes of sustained inactivity). ``T`` is a multiple of
both slice widths (and of 120 000 ms), so ``T`` starts rate slice ``K`` and activity slice
``A``. Every expected number is derived by hand in a comment next to it.
"""

from __future__ import annotations

import dataclasses

import pytest

from comic_vine_dynamodb_store.config import AdaptiveConfig
from comic_vine_dynamodb_store.stores.adaptive_core import (
    Capacity,
    Trend,
    UserActivity,
    compute_capacity,
)
from comic_vine_dynamodb_store.stores.adaptive_state import (
    ACTIVITY_SLICES,
    AdaptiveLayout,
    AdaptiveState,
    StoredCapacity,
    activity_of,
    admits,
    advance,
    plan,
    remaining,
    ring_of,
    slot_condition_bound,
    state_reset_ms,
    wait_for,
    window_of_ring,
)
from comic_vine_dynamodb_store.stores.contracts import Priority
from comic_vine_dynamodb_store.stores.rate_limit_core import SliceLayout, WindowState

CONFIG = AdaptiveConfig()
WINDOW_MS = 60_000
LIMIT = 200
LAYOUT = AdaptiveLayout.of(WINDOW_MS, CONFIG)
MINUTE = 60_000
T = 1_800_000_000_000  # a multiple of 1000, 30 000 and 120 000
K = T // 1000  # the rate slice T starts
A = T // 30_000  # the activity slice T starts
INTERVAL = CONFIG.recalculation_interval_ms  # 30 000


def split(
    user_reserved: int,
    background_max: int,
    *,
    paused: bool = False,
    at: int = T,
    limit: int = LIMIT,
) -> StoredCapacity:
    """A stored split computed at ``at`` for ``limit``."""
    capacity = Capacity(user_reserved, background_max, paused, 0, Trend.NONE, "set by the test")
    return StoredCapacity(capacity, at, limit)


def state_at(
    now: int,
    *,
    total: int = 0,
    background: int = 0,
    stored: StoredCapacity | None = None,
    last_user_ms: int | None = None,
    layout: AdaptiveLayout = LAYOUT,
) -> AdaptiveState:
    """A state whose current slices hold ``now``, with ``total``/``background`` admissions in
    the current rate slice (nothing in the history)."""
    fresh = AdaptiveState.fresh(layout, now)
    return dataclasses.replace(
        fresh,
        total=dataclasses.replace(fresh.total, current=total),
        background=dataclasses.replace(fresh.background, current=background),
        capacity=stored,
        last_user_ms=last_user_ms,
    )


def acquire(
    state: AdaptiveState | None, priority: Priority, now: int, limit: int = LIMIT
) -> tuple[AdaptiveState, bool]:
    """The state after one ``acquire`` at ``now``, and whether it was admitted."""
    decision = plan(state, LAYOUT, limit, priority, now, enforce=True, count=True)
    return decision.after, decision.admitted


def stored_split(state: AdaptiveState) -> tuple[int, int, bool]:
    assert state.capacity is not None
    capacity = state.capacity.capacity
    return capacity.user_reserved, capacity.background_max, capacity.background_paused


# -- layout ------------------------------------------------------------------------------------


def test_layout_of_the_defaults() -> None:
    assert LAYOUT.rate == SliceLayout(60_000, 1000, 60)  # ceil(60 000 / 60) = 1000
    assert LAYOUT.activity == SliceLayout(900_000, 30_000, 30)  # 900 000 / 30 = 30 000
    assert LAYOUT.config is CONFIG
    # max(60 000, 900 000, 2 x 1 800 000)
    assert LAYOUT.retention_ms == 3_600_000
    assert ACTIVITY_SLICES == 30


@pytest.mark.parametrize(
    ("window_ms", "config", "retention_ms"),
    [
        # The rate window is the longest: max(7 200 000, 900 000, 3 600 000).
        (7_200_000, AdaptiveConfig(), 7_200_000),
        # The monitoring window is: max(60 000, 5 000 000, 2 x 1 000 000).
        (
            60_000,
            AdaptiveConfig(
                monitoring_window_ms=5_000_000, sustained_inactivity_threshold_ms=1_000_000
            ),
            5_000_000,
        ),
        # Twice the sustained inactivity is: max(60 000, 100 000, 2 x 2 000 000).
        (
            60_000,
            AdaptiveConfig(
                monitoring_window_ms=100_000, sustained_inactivity_threshold_ms=2_000_000
            ),
            4_000_000,
        ),
        # Ties: max(1 000 000, 1 000 000, 2 x 500 000).
        (
            1_000_000,
            AdaptiveConfig(
                monitoring_window_ms=1_000_000, sustained_inactivity_threshold_ms=500_000
            ),
            1_000_000,
        ),
    ],
)
def test_retention_is_the_longest_of_the_windows_and_twice_the_inactivity(
    window_ms: int, config: AdaptiveConfig, retention_ms: int
) -> None:
    layout = AdaptiveLayout.of(window_ms, config)
    assert layout.retention_ms == retention_ms
    assert layout.rate == SliceLayout.for_window(window_ms, 60)
    assert layout.activity == SliceLayout.for_window(config.monitoring_window_ms, 30)


def test_activity_slices_of_an_uneven_monitoring_window() -> None:
    layout = AdaptiveLayout.of(1000, AdaptiveConfig(monitoring_window_ms=1000))
    # ceil(1000 / 30) = 34 ms slices; ceil(1000 / 34) = ceil(29.4) = 30 history slices.
    assert layout.activity == SliceLayout(1000, 34, 30)
    # ceil(1000 / 60) = 17 ms; ceil(1000 / 17) = ceil(58.8) = 59.
    assert layout.rate == SliceLayout(1000, 17, 59)


# -- fresh, expires_at_ms ------------------------------------------------------------------------


def test_fresh_state_is_empty_at_now() -> None:
    state = AdaptiveState.fresh(LAYOUT, T + 1500)
    assert state.total == WindowState(K + 1, 0, (0,) * 60)  # T + 1500 is in rate slice K + 1
    assert state.background == state.total
    assert state.user_activity == WindowState(A, 0, (0,) * 30)  # still activity slice A
    assert state.background_activity == state.user_activity
    assert state.last_user_ms is None
    assert state.capacity is None


def test_expires_after_the_newest_slice_plus_the_retention() -> None:
    # Rate slice K ends at T + 1000, activity slice A at T + 30 000: the later + 3 600 000.
    assert AdaptiveState.fresh(LAYOUT, T).expires_at_ms(LAYOUT) == T + 30_000 + 3_600_000
    # At T + 29 999 still the same slices; at T + 30 000 both move on.
    assert AdaptiveState.fresh(LAYOUT, T + 29_999).expires_at_ms(LAYOUT) == T + 3_630_000
    assert AdaptiveState.fresh(LAYOUT, T + 30_000).expires_at_ms(LAYOUT) == T + 3_660_000


def test_expires_after_the_rate_slice_when_it_ends_later() -> None:
    # A 2-hour window: 120 000 ms rate slices, which end after the 30 000 ms activity slices.
    layout = AdaptiveLayout.of(7_200_000, CONFIG)
    assert layout.rate.slice_ms == 120_000
    # Rate slice T // 120 000 ends at T + 120 000; retention is the window, 7 200 000.
    assert AdaptiveState.fresh(layout, T).expires_at_ms(layout) == T + 120_000 + 7_200_000


def test_expiry_follows_the_state_not_the_clock() -> None:
    state = advance(state_at(T, total=3), LAYOUT, T + 5 * MINUTE)
    # Rolled to T + 300 000: rate slice K + 300, activity slice A + 10 (ends T + 330 000).
    assert state.expires_at_ms(LAYOUT) == T + 330_000 + 3_600_000


# -- advance -------------------------------------------------------------------------------------


def test_advance_rolls_both_windows() -> None:
    state = state_at(T, total=5, background=2)
    state = dataclasses.replace(
        state,
        user_activity=dataclasses.replace(state.user_activity, current=3),
        background_activity=dataclasses.replace(state.background_activity, current=2),
    )
    rolled = advance(state, LAYOUT, T + 30_500)
    # Rate: K -> K + 30; slice K is now history entry 60 - 30 = 30 (29 empty slices after it).
    assert rolled.total == WindowState(K + 30, 0, (0,) * 30 + (5,) + (0,) * 29)
    assert rolled.background == WindowState(K + 30, 0, (0,) * 30 + (2,) + (0,) * 29)
    # Activity: A -> A + 1; slice A is the newest history entry.
    assert rolled.user_activity == WindowState(A + 1, 0, (0,) * 29 + (3,))
    assert rolled.background_activity == WindowState(A + 1, 0, (0,) * 29 + (2,))
    # The rest passes through.
    assert rolled.capacity == state.capacity
    assert rolled.last_user_ms == state.last_user_ms


def test_advance_within_the_activity_slice_rolls_the_rate_window_only() -> None:
    state = state_at(T, total=4)
    rolled = advance(state, LAYOUT, T + 1000)
    assert rolled.total == WindowState(K + 1, 0, (0,) * 59 + (4,))
    assert rolled.user_activity == state.user_activity  # T + 1000 is still activity slice A


def test_advance_to_now_in_the_same_slices_changes_nothing() -> None:
    state = state_at(T, total=4, background=1, stored=split(60, 140), last_user_ms=T)
    assert advance(state, LAYOUT, T + 999) == state


def test_advance_never_goes_backwards() -> None:
    state = state_at(T + 45_000, total=4, background=1)  # rate K + 45, activity A + 1
    # A clock lagging behind both current slices: the state is kept as it is.
    assert advance(state, LAYOUT, T) == state
    assert advance(state, LAYOUT, T - 10 * MINUTE) == state
    # Lagging behind the rate slice only (T + 44 000 is activity slice A + 1 too): unchanged.
    assert advance(state, LAYOUT, T + 44_000) == state


def test_a_lagging_clock_counts_in_the_newest_slice() -> None:
    state = state_at(T + 45_000, total=4, stored=split(60, 140, at=T + 45_000))
    decision = plan(state, LAYOUT, LIMIT, "user", T + 40_000, enforce=True, count=True)
    assert decision.admitted
    assert not decision.rolled
    # Counted in the state's current slices, K + 45 and A + 1, never in an older one.
    assert decision.after.total == WindowState(K + 45, 5, (0,) * 60)
    assert decision.after.user_activity == WindowState(A + 1, 1, (0,) * 30)


# -- activity_of -------------------------------------------------------------------------------

# Activity slices A - 30 .. A - 1 as history: 11 slices of 1 (A - 30 .. A - 20), 10 of 10
# (A - 19 .. A - 10), 9 of 100 (A - 9 .. A - 1); the current slice A holds 1000.
USER_HISTORY = (1,) * 11 + (10,) * 10 + (100,) * 9


def activity_state(last_user_ms: int | None = T - 5000) -> AdaptiveState:
    state = state_at(T, last_user_ms=last_user_ms)
    return dataclasses.replace(
        state,
        user_activity=WindowState(A, 1000, USER_HISTORY),
        background_activity=WindowState(A, 7, (2,) + (0,) * 28 + (3,)),
    )


def test_activity_thirds_at_the_start_of_the_current_slice() -> None:
    activity = activity_of(activity_state(), LAYOUT, T)
    assert activity == UserActivity(
        # (T - 900 000) // 30 000 = A - 30: every history slice counts: 1000 + 900 + 100 + 11.
        user_requests=2011,
        # 7 + 2 + 3
        background_requests=12,
        # The current slice and the 9 newest history slices: 1000 + 9 x 100.
        newest_third=1900,
        # The 10 slices before those (A - 19 .. A - 10): 10 x 10.
        previous_third=100,
        last_user_request_ms=T - 5000,
    )


def test_activity_thirds_at_the_end_of_the_current_slice() -> None:
    # T + 29 999 is still slice A, and (T + 29 999 - 900 000) // 30 000 = A - 30.
    assert activity_of(activity_state(), LAYOUT, T + 29_999) == activity_of(
        activity_state(), LAYOUT, T
    )


def test_activity_of_rolls_to_now_first() -> None:
    activity = activity_of(activity_state(), LAYOUT, T + 30_000)
    # Slice A + 1 is current and empty; A is the newest history slice; A - 30 has left.
    assert activity == UserActivity(
        # Slices A - 29 .. A: 10 x 1 + 10 x 10 + 9 x 100 + 1000.
        user_requests=2010,
        # Slice A - 30 (2) has left: 7 + 3.
        background_requests=10,
        # Current (0) + slices A - 8 .. A: 8 x 100 + 1000.
        newest_third=1800,
        # Slices A - 18 .. A - 9: 9 x 10 + 100.
        previous_third=190,
        last_user_request_ms=T - 5000,
    )


def test_activity_long_after_the_last_request() -> None:
    # Slice A + 31 is current: (T + 930 000 - 900 000) // 30 000 = A + 1, so slice A has left.
    activity = activity_of(activity_state(), LAYOUT, T + 930_000)
    assert activity == UserActivity(0, 0, 0, 0, T - 5000)


@pytest.mark.parametrize("last_user_ms", [None, T - 40 * MINUTE, T + 5])
def test_activity_passes_the_last_user_request_through(last_user_ms: int | None) -> None:
    assert activity_of(activity_state(last_user_ms), LAYOUT, T).last_user_request_ms == (
        last_user_ms
    )


def test_activity_thirds_of_a_short_monitoring_window() -> None:
    # 10 ms monitoring: 1 ms activity slices, 10 history slices; thirds of (10 + 1) // 3 = 3
    # slices: the current one and 2 history slices, then the 3 before.
    layout = AdaptiveLayout.of(10, AdaptiveConfig(monitoring_window_ms=10))
    assert layout.activity == SliceLayout(10, 1, 10)
    base = AdaptiveState.fresh(layout, 100)
    state = dataclasses.replace(
        base, user_activity=WindowState(100, 1, (1, 2, 3, 4, 5, 6, 7, 8, 9, 10))
    )
    activity = activity_of(state, layout, 100)
    assert activity.newest_third == 1 + 9 + 10
    assert activity.previous_third == 6 + 7 + 8
    assert activity.user_requests == 1 + sum(range(1, 11))  # (100 - 10) // 1 = 90: all count


# -- admits --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stored",
    [
        split(60, 140),
        split(0, 200),  # nothing reserved for users
        split(200, 0),  # nothing for background
        split(180, 20, paused=True),  # background paused
        None,  # no split yet
    ],
)
def test_a_user_needs_room_in_the_total_window_only(stored: StoredCapacity | None) -> None:
    # 199 counted, background among them far beyond any share: one more user fits.
    assert admits(state_at(T, total=199, background=199, stored=stored), LAYOUT, LIMIT, "user", T)
    assert not admits(state_at(T, total=200, stored=stored), LAYOUT, LIMIT, "user", T)
    assert not admits(state_at(T, total=250, stored=stored), LAYOUT, LIMIT, "user", T)


@pytest.mark.parametrize(
    ("total", "background", "stored", "admitted"),
    [
        (0, 0, split(60, 140), True),
        (199, 139, split(60, 140), True),  # room in both
        (200, 0, split(0, 200), False),  # no room in the total window
        (150, 140, split(60, 140), False),  # the background share is used up
        (141, 141, split(60, 140), False),  # beyond it (records)
        (0, 0, split(180, 20, paused=True), False),  # paused
        (0, 0, split(200, 0), False),  # a zero share
        (0, 0, None, False),  # no split yet
    ],
)
def test_background_needs_room_its_share_and_no_pause(
    total: int, background: int, stored: StoredCapacity | None, admitted: bool
) -> None:
    state = state_at(T, total=total, background=background, stored=stored)
    assert admits(state, LAYOUT, LIMIT, "background", T) is admitted


def test_admits_counts_the_window_at_now() -> None:
    state = state_at(T, total=200, background=140, stored=split(60, 140))
    # Slice K leaves the count at T + 1000 + 60 000.
    for priority in ("user", "background"):
        assert not admits(state, LAYOUT, LIMIT, priority, T + 60_999)
        assert admits(state, LAYOUT, LIMIT, priority, T + 61_000)


def test_a_zero_limit_admits_nothing() -> None:
    state = state_at(T, stored=split(0, 0, limit=0))
    assert not admits(state, LAYOUT, 0, "user", T)
    assert not admits(state, LAYOUT, 0, "background", T)


# -- wait_for, remaining, state_reset_ms -----------------------------------------------------


def test_wait_on_nothing_stored() -> None:
    assert wait_for(None, LAYOUT, LIMIT, "user", T) == 0
    # Background waits for the first split, which the next call computes.
    assert wait_for(None, LAYOUT, LIMIT, "background", T) == 1
    assert not admits(AdaptiveState.fresh(LAYOUT, T), LAYOUT, LIMIT, "background", T)


def test_wait_for_the_total_window() -> None:
    state = state_at(T, total=200, stored=split(60, 140))
    # Slice K leaves at T + 61 000.
    assert wait_for(state, LAYOUT, LIMIT, "user", T) == 61_000
    assert wait_for(state, LAYOUT, LIMIT, "user", T + 500) == 60_500
    assert wait_for(state, LAYOUT, LIMIT, "background", T + 500) == 60_500


def test_wait_for_the_background_share() -> None:
    state = state_at(T + 5000, total=150, background=140, stored=split(60, 140))
    assert wait_for(state, LAYOUT, LIMIT, "user", T + 5000) == 0
    # Slice K + 5 leaves at T + 6000 + 60 000.
    assert wait_for(state, LAYOUT, LIMIT, "background", T + 5000) == 61_000


@pytest.mark.parametrize("stored", [split(180, 20, paused=True), split(200, 0)])
def test_paused_or_zero_share_background_waits_for_the_next_split(
    stored: StoredCapacity,
) -> None:
    state = state_at(T + 10_000, total=1, stored=stored)
    # The split was computed at T: due at T + 30 000.
    assert wait_for(state, LAYOUT, LIMIT, "background", T + 10_000) == 20_000
    assert wait_for(state, LAYOUT, LIMIT, "user", T + 10_000) == 0
    # The total window waits longer: the longer wait wins.
    full = state_at(T + 10_000, total=200, stored=stored)
    assert wait_for(full, LAYOUT, LIMIT, "background", T + 10_000) == 61_000
    # A split already due: a millisecond, never 0 or less.
    assert wait_for(state, LAYOUT, LIMIT, "background", T + INTERVAL) == 1
    assert wait_for(state, LAYOUT, LIMIT, "background", T + 10 * MINUTE) == 1


def test_paused_background_is_admitted_or_paused_again_at_the_next_split() -> None:
    # 12 user admissions in the newest third: the split pauses background at T + 60 000.
    state: AdaptiveState | None = None
    for i in range(12):
        state, admitted = acquire(state, "user", T + i * 5000)
        assert admitted
    decision = plan(state, LAYOUT, LIMIT, "background", T + 60_000, enforce=True, count=True)
    assert decision.recomputed
    assert stored_split(decision.current) == (180, 20, True)
    assert not decision.admitted
    wait = wait_for(decision.current, LAYOUT, LIMIT, "background", T + 60_000)
    assert wait == INTERVAL
    # A millisecond before, the split is not due and still pauses.
    before = plan(
        decision.after,
        LAYOUT,
        LIMIT,
        "background",
        T + 60_000 + wait - 1,
        enforce=True,
        count=False,
    )
    assert not before.recomputed
    assert not before.admitted
    # Then it is recomputed (12 users still in the newest third: paused again).
    then = plan(
        decision.after, LAYOUT, LIMIT, "background", T + 60_000 + wait, enforce=True, count=False
    )
    assert then.recomputed
    assert stored_split(then.current) == (180, 20, True)


def test_a_zero_limit_waits_a_full_window() -> None:
    state = state_at(T, stored=split(0, 0, limit=0))
    assert wait_for(state, LAYOUT, 0, "user", T) == 60_000
    # Background: the longer of a full window and the next split.
    assert wait_for(state, LAYOUT, 0, "background", T) == 60_000


WAIT_CASES = [
    (state_at(T, stored=split(60, 140)), LIMIT),
    (state_at(T, total=199, background=139, stored=split(60, 140)), LIMIT),
    (state_at(T, total=200, background=10, stored=split(60, 140)), LIMIT),
    (state_at(T, total=150, background=140, stored=split(60, 140)), LIMIT),
    (state_at(T, total=10, stored=split(180, 20, paused=True)), LIMIT),
    (state_at(T, total=10, stored=split(200, 0)), LIMIT),
    (state_at(T, total=10, stored=split(0, 200)), LIMIT),
    (state_at(T, total=3, background=3, stored=None), LIMIT),
    (state_at(T, stored=split(0, 0, limit=0)), 0),
    (state_at(T, total=1, stored=split(0, 1, limit=1)), 1),
]


@pytest.mark.parametrize(("state", "limit"), WAIT_CASES)
@pytest.mark.parametrize("priority", ["user", "background"])
@pytest.mark.parametrize("offset", [0, 999, 1000, 29_999, 30_000, 61_000, -5000])
def test_wait_is_zero_exactly_when_admitted(
    state: AdaptiveState, limit: int, priority: Priority, offset: int
) -> None:
    now = T + offset
    wait = wait_for(state, LAYOUT, limit, priority, now)
    assert wait >= 0
    assert (wait == 0) is admits(state, LAYOUT, limit, priority, now)


def test_remaining_is_the_room_in_the_total_window() -> None:
    assert remaining(None, LAYOUT, LIMIT, T) == 200
    state = state_at(T, total=150, background=100, stored=split(60, 140))
    assert remaining(state, LAYOUT, LIMIT, T) == 50
    assert remaining(state, LAYOUT, LIMIT, T + 60_999) == 50
    assert remaining(state, LAYOUT, LIMIT, T + 61_000) == 200  # slice K has left
    assert remaining(state_at(T, total=250), LAYOUT, LIMIT, T) == 0  # never negative


def test_state_reset_is_when_the_newest_admission_leaves() -> None:
    assert state_reset_ms(None, LAYOUT, T) == T
    assert state_reset_ms(state_at(T), LAYOUT, T) == T  # nothing counted
    state = state_at(T, total=3)
    assert state_reset_ms(state, LAYOUT, T) == T + 61_000  # slice K ends at T + 1000
    # Later, slice K is history but still the newest that counts.
    assert state_reset_ms(state, LAYOUT, T + 30_000) == T + 61_000
    assert state_reset_ms(state, LAYOUT, T + 61_000) == T + 61_000  # left: now


# -- plan ----------------------------------------------------------------------------------------


def test_plan_on_nothing_stored_computes_the_no_traffic_split() -> None:
    decision = plan(None, LAYOUT, LIMIT, "background", T + 700, enforce=True, count=True)
    assert decision.rolled
    assert decision.recomputed
    assert decision.admitted
    stored = decision.current.capacity
    assert stored is not None
    assert (stored.computed_at_ms, stored.limit) == (T + 700, LIMIT)
    # max(floor(0.3 x 200), 5) = 60 for users, 140 for background.
    assert stored_split(decision.current) == (60, 140, False)
    assert stored.capacity.reason == "no traffic yet"
    fresh = AdaptiveState.fresh(LAYOUT, T + 700)
    assert dataclasses.replace(decision.current, capacity=None) == fresh
    # The admission is counted in the fresh slices; the split is kept.
    assert decision.after.total == WindowState(K, 1, (0,) * 60)
    assert decision.after.background == WindowState(K, 1, (0,) * 60)
    assert decision.after.background_activity == WindowState(A, 1, (0,) * 30)
    assert decision.after.user_activity == WindowState(A, 0, (0,) * 30)
    assert decision.after.capacity == stored
    assert decision.after.last_user_ms is None


def test_plan_on_nothing_stored_for_a_user() -> None:
    decision = plan(None, LAYOUT, LIMIT, "user", T, enforce=True, count=True)
    assert decision.admitted
    assert decision.after.total == WindowState(K, 1, (0,) * 60)
    assert decision.after.background == WindowState(K, 0, (0,) * 60)
    assert decision.after.user_activity == WindowState(A, 1, (0,) * 30)
    assert decision.after.background_activity == WindowState(A, 0, (0,) * 30)
    assert decision.after.last_user_ms == T


def test_plan_keeps_a_split_that_is_not_due() -> None:
    stored = split(60, 140)  # computed at T
    state = state_at(T, total=1, stored=stored)
    decision = plan(state, LAYOUT, LIMIT, "user", T + INTERVAL - 1, enforce=True, count=False)
    assert not decision.recomputed
    assert decision.current.capacity is stored
    # Rate slice K -> K + 29 moved; activity slice A did not: still a roll.
    assert decision.rolled


def test_plan_recomputes_once_the_interval_has_elapsed() -> None:
    state = state_at(T, total=1, stored=split(0, 200, paused=True))
    decision = plan(state, LAYOUT, LIMIT, "user", T + INTERVAL, enforce=True, count=False)
    assert decision.recomputed
    assert decision.current.capacity == StoredCapacity(
        compute_capacity(UserActivity(0, 0, 0, 0, None), LIMIT, CONFIG, T + INTERVAL),
        T + INTERVAL,
        LIMIT,
    )
    assert stored_split(decision.current) == (60, 140, False)  # no traffic yet


def test_plan_recomputes_when_the_limit_changes() -> None:
    state = state_at(T, total=1, stored=split(60, 140))
    decision = plan(state, LAYOUT, 100, "user", T + 1, enforce=True, count=False)
    assert decision.recomputed
    stored = decision.current.capacity
    assert stored is not None
    assert (stored.computed_at_ms, stored.limit) == (T + 1, 100)
    # No traffic yet for 100: max(floor(0.3 x 100), 5) = 30.
    assert stored_split(decision.current) == (30, 70, False)
    # Same slices: the split changed, nothing rolled (the two are reported apart).
    assert not decision.rolled


def test_a_clock_that_jumped_back_keeps_the_split_until_it_is_due() -> None:
    # A split computed at T + 120 000, then the clock reads T (back by four intervals).
    later = T + 2 * MINUTE
    stored = split(180, 20, paused=True, at=later)
    state = state_at(later, stored=stored)
    jumped = plan(state, LAYOUT, LIMIT, "background", T, enforce=True, count=True)
    assert not jumped.recomputed
    assert jumped.current.capacity is stored
    assert not jumped.admitted
    # The slices never move back either.
    assert not jumped.rolled
    assert jumped.current.total == state.total
    # The wait is until the split is due: T + 150 000, read on the clock as it is.
    assert wait_for(jumped.current, LAYOUT, LIMIT, "background", T) == 150_000
    due = plan(state, LAYOUT, LIMIT, "background", later + INTERVAL, enforce=True, count=False)
    assert due.recomputed
    assert stored_split(due.current) == (60, 140, False)  # no traffic yet
    assert due.admitted


def test_is_due_and_next_due() -> None:
    stored = split(60, 140)
    assert stored.next_due_ms(CONFIG) == T + INTERVAL
    assert not stored.is_due(LIMIT, CONFIG, T)
    assert not stored.is_due(LIMIT, CONFIG, T + INTERVAL - 1)
    assert stored.is_due(LIMIT, CONFIG, T + INTERVAL)
    assert stored.is_due(LIMIT, CONFIG, T + 10 * INTERVAL)
    assert stored.is_due(LIMIT + 1, CONFIG, T)
    assert stored.is_due(LIMIT - 1, CONFIG, T - 1)
    # A clock behind the computation: not due, however far behind.
    assert not stored.is_due(LIMIT, CONFIG, T - 1)
    assert not stored.is_due(LIMIT, CONFIG, T - INTERVAL - 1)
    assert not stored.is_due(LIMIT, CONFIG, T - 60 * MINUTE)


def test_a_recomputed_split_reflects_the_activity_as_of_now() -> None:
    # 12 user admissions in activity slice A, then nothing for 930 000 ms: by then slice A has
    # left the monitoring window ((T + 930 000 - 900 000) // 30 000 = A + 1).
    state = state_at(T, stored=split(60, 140), last_user_ms=T + 100)
    state = dataclasses.replace(state, user_activity=WindowState(A, 12, (0,) * 30))
    assert stored_split(
        plan(state, LAYOUT, LIMIT, "user", T + INTERVAL, enforce=True, count=False).current
    ) == (180, 20, True)  # as of T + 30 000: 12 users, all in the newest third
    decision = plan(state, LAYOUT, LIMIT, "user", T + 930_000, enforce=True, count=False)
    assert decision.recomputed
    assert stored_split(decision.current) == (5, 195, False)
    assert decision.current.capacity is not None
    assert decision.current.capacity.capacity.reason == "no recent user activity"


def test_a_recomputed_split_uses_the_trend_as_of_now() -> None:
    # 4 user admissions in each of slices A and A + 10. At T + 300 000 (slice A + 10) the
    # newest third is A + 1 .. A + 10 (4) and the previous A - 9 .. A (4): stable, a = 8:
    # m = min(2, 1 + 8/10) = 1.8, min(140, 80 x 1.8 = 144) = 140.
    state = state_at(T + 300_000, stored=split(60, 140, at=T), last_user_ms=T + 300_000)
    state = dataclasses.replace(
        state, user_activity=WindowState(A + 10, 4, (0,) * 20 + (4,) + (0,) * 9)
    )
    stable = plan(state, LAYOUT, LIMIT, "user", T + 300_000, enforce=True, count=False)
    assert stable.recomputed
    assert stable.current.capacity is not None
    assert stable.current.capacity.capacity.trend is Trend.STABLE
    assert stored_split(stable.current) == (140, 60, False)
    # At T + 600 000 (slice A + 20): newest A + 11 .. A + 20 (0), previous A + 1 .. A + 10 (4):
    # decreasing: 1.8 x 0.8 = 1.44, 80 x 1.44 = 115.2 -> 115.
    decreasing = plan(state, LAYOUT, LIMIT, "user", T + 600_000, enforce=True, count=False)
    assert decreasing.current.capacity is not None
    assert decreasing.current.capacity.capacity.trend is Trend.DECREASING
    assert stored_split(decreasing.current) == (115, 85, False)


@pytest.mark.parametrize("priority", ["user", "background"])
def test_an_acquire_counts_only_when_admitted(priority: Priority) -> None:
    state = state_at(T, total=5, background=5, stored=split(60, 140))
    admitted = plan(state, LAYOUT, LIMIT, priority, T, enforce=True, count=True)
    assert admitted.admitted
    assert admitted.after.total.current == 6
    full = state_at(T, total=200, background=5, stored=split(60, 140))
    refused = plan(full, LAYOUT, LIMIT, priority, T, enforce=True, count=True)
    assert not refused.admitted
    assert refused.after is refused.current
    assert refused.current == full


@pytest.mark.parametrize("stored", [split(60, 140), split(180, 20, paused=True), split(200, 0)])
@pytest.mark.parametrize("priority", ["user", "background"])
def test_a_record_counts_even_when_it_would_be_refused(
    stored: StoredCapacity, priority: Priority
) -> None:
    full = state_at(T, total=200, background=140, stored=stored)
    assert not admits(full, LAYOUT, LIMIT, priority, T)
    decision = plan(full, LAYOUT, LIMIT, priority, T, enforce=False, count=True)
    assert decision.admitted
    assert decision.current == full
    assert decision.after.total.current == 201
    background = 141 if priority == "background" else 140
    assert decision.after.background.current == background


@pytest.mark.parametrize("enforce", [True, False])
@pytest.mark.parametrize("priority", ["user", "background"])
def test_reads_count_nothing(enforce: bool, priority: Priority) -> None:
    state = state_at(T, total=3, background=1, stored=split(60, 140))
    decision = plan(state, LAYOUT, LIMIT, priority, T + 10, enforce=enforce, count=False)
    assert decision.admitted
    assert decision.after is decision.current
    assert decision.current == state
    assert not decision.rolled
    assert not decision.recomputed


def test_a_read_answers_what_admits_answers() -> None:
    full = state_at(T, total=200, stored=split(60, 140))
    assert not plan(full, LAYOUT, LIMIT, "user", T, enforce=True, count=False).admitted
    assert plan(full, LAYOUT, LIMIT, "user", T, enforce=False, count=False).admitted
    paused = state_at(T, stored=split(180, 20, paused=True))
    assert plan(paused, LAYOUT, LIMIT, "user", T, enforce=True, count=False).admitted
    assert not plan(paused, LAYOUT, LIMIT, "background", T, enforce=True, count=False).admitted


def test_an_admission_counts_in_its_priority_windows() -> None:
    state = state_at(T, total=2, background=1, stored=split(60, 140), last_user_ms=T - 1)
    user = plan(state, LAYOUT, LIMIT, "user", T + 5, enforce=True, count=True).after
    assert (user.total.current, user.background.current) == (3, 1)
    assert (user.user_activity.current, user.background_activity.current) == (1, 0)
    assert user.last_user_ms == T + 5
    background = plan(state, LAYOUT, LIMIT, "background", T + 5, enforce=True, count=True).after
    assert (background.total.current, background.background.current) == (3, 2)
    assert (background.user_activity.current, background.background_activity.current) == (0, 1)
    assert background.last_user_ms == T - 1  # background leaves it alone


def test_the_last_user_admission_never_moves_back() -> None:
    state = state_at(T + 45_000, stored=split(60, 140, at=T + 45_000), last_user_ms=T + 45_000)
    lagging = plan(state, LAYOUT, LIMIT, "user", T + 40_000, enforce=True, count=True)
    assert lagging.admitted
    assert lagging.after.last_user_ms == T + 45_000
    ahead = plan(state, LAYOUT, LIMIT, "user", T + 46_000, enforce=True, count=True)
    assert ahead.after.last_user_ms == T + 46_000
    recorded = plan(state, LAYOUT, LIMIT, "user", T + 47_000, enforce=False, count=True)
    assert recorded.after.last_user_ms == T + 47_000
    read = plan(state, LAYOUT, LIMIT, "user", T + 47_000, enforce=True, count=False)
    assert read.after.last_user_ms == T + 45_000  # a read is no admission


def test_rolled_says_a_slice_moved() -> None:
    state = state_at(T, total=1, stored=split(60, 140))
    assert not plan(state, LAYOUT, LIMIT, "user", T + 999, enforce=True, count=False).rolled
    assert plan(
        state, LAYOUT, LIMIT, "user", T + 1000, enforce=True, count=False
    ).rolled  # the rate slice
    # A later activity slice with the same rate slice cannot happen with these layouts; a
    # state whose activity lags its rate window shows the activity roll alone.
    lagging = dataclasses.replace(state, total=WindowState(K + 30, 0, (0,) * 60))
    lagging = dataclasses.replace(lagging, background=lagging.total)
    decision = plan(lagging, LAYOUT, LIMIT, "user", T + 30_000, enforce=True, count=False)
    assert decision.current.total == lagging.total
    assert decision.current.user_activity.current_slice == A + 1
    assert decision.rolled


# -- the issue's figures for L = 200 ---------------------------------------------------------


def test_issue_fresh_resource() -> None:
    decision = plan(None, LAYOUT, LIMIT, "user", T, enforce=True, count=False)
    assert stored_split(decision.current) == (60, 140, False)


def test_issue_background_traffic_only() -> None:
    state, admitted = acquire(None, "background", T)
    assert admitted
    assert stored_split(state) == (60, 140, False)  # computed before the first admission
    state, admitted = acquire(state, "background", T + 10_000)
    assert admitted
    decision = plan(state, LAYOUT, LIMIT, "background", T + 30_000, enforce=True, count=True)
    assert decision.recomputed
    assert decision.admitted
    assert stored_split(decision.current) == (5, 195, False)
    assert decision.current.capacity is not None
    assert decision.current.capacity.capacity.reason == "background traffic only"


def test_issue_twelve_user_admissions_in_five_minutes_pause_background() -> None:
    state: AdaptiveState | None = None
    for i in range(12):  # T .. T + 220 000: activity slices A .. A + 7
        state, admitted = acquire(state, "user", T + i * 20_000)
        assert admitted
    # At T + 240 000 (slice A + 8) all 12 are in the newest third (A - 1 .. A + 8), none in the
    # previous one: increasing, a = 12 >= 10: min(180, floor(0.5 x 200 x 2)) = 180, paused.
    decision = plan(state, LAYOUT, LIMIT, "background", T + 240_000, enforce=True, count=True)
    assert decision.recomputed
    assert stored_split(decision.current) == (180, 20, True)
    assert not decision.admitted
    assert decision.after is decision.current
    # Users still go.
    user = plan(decision.after, LAYOUT, LIMIT, "user", T + 240_000, enforce=True, count=True)
    assert not user.recomputed
    assert user.admitted


def test_issue_users_gone_for_forty_minutes_give_background_everything() -> None:
    state, admitted = acquire(None, "user", T)
    assert admitted
    for minutes in range(5, 40, 5):  # background traffic keeps the resource busy
        state, admitted = acquire(state, "background", T + minutes * MINUTE)
        assert admitted
        if minutes == 20:
            # The user has left the monitoring window, 20 minutes is not sustained: min 5.
            assert stored_split(state) == (5, 195, False)
    assert state.last_user_ms == T
    decision = plan(state, LAYOUT, LIMIT, "background", T + 40 * MINUTE, enforce=True, count=True)
    assert decision.recomputed
    assert decision.admitted
    assert stored_split(decision.current) == (0, 200, False)
    assert decision.current.capacity is not None
    assert decision.current.capacity.capacity.reason == "users inactive for a sustained period"


# -- rings -------------------------------------------------------------------------------

RING_LAYOUT = SliceLayout(window_ms=40, slice_ms=10, history_slices=4)  # 5 slots


def test_a_window_stored_as_a_ring_reads_back_the_same() -> None:
    window = WindowState(current_slice=13, current=7, history=(1, 2, 3, 4))
    ring = ring_of(window, RING_LAYOUT)
    # Slice k lives in slot k mod 5: 9..12 hold the history, 13 the current count.
    assert ring == [2, 3, 4, 7, 1]
    assert window_of_ring(tuple(ring), 13) == window


def test_moving_a_ring_only_needs_the_reused_slots_zeroed() -> None:
    window = WindowState(current_slice=13, current=7, history=(1, 2, 3, 4))
    ring = ring_of(window, RING_LAYOUT)
    # Two slices on: slots of 14 and 15 are reused (zeroed), 15 takes the new admission.
    ring[14 % 5], ring[15 % 5] = 0, 1
    assert window_of_ring(tuple(ring), 15) == WindowState(15, 1, (3, 4, 7, 0))


def test_the_newest_stored_slot_is_bounded_by_what_else_is_counted() -> None:
    layout = SliceLayout.for_window(60_000)  # 1 s slices, 60 of history
    stored = WindowState(current_slice=1000, current=4, history=(0,) * 59 + (6,))
    now = 1000 * 1000 + 500
    # Same slice: room iff the current slot stays below 20 - 6 (the frozen history).
    assert slot_condition_bound(stored, 1000, layout, 20, now) == 14
    # Moved on two slices: the old newest slot (now history) must stay below 20 - 6.
    moved = WindowState(1002, 0, (0,) * 57 + (6, 4, 0))
    assert slot_condition_bound(moved, 1000, layout, 20, now + 2000) == 14
    # So far on that the old newest slice no longer counts: nothing unknown is counted.
    gone = WindowState(1100, 0, (0,) * 60)
    assert slot_condition_bound(gone, 1000, layout, 20, 1100 * 1000) is None
