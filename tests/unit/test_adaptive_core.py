"""The adaptive capacity calculator under a frozen clock, with the original's defaults."""

from __future__ import annotations

import pytest

from comic_vine_dynamodb_store.config import AdaptiveConfig
from comic_vine_dynamodb_store.stores.adaptive_core import (
    Trend,
    UserActivity,
    compute_capacity,
    trend_of,
)

NOW = 10_000_000_000
MINUTE = 60_000
LIMIT = 200
DEFAULTS = AdaptiveConfig()


def activity_from(
    user_request_times: list[int], *, background: int = 0, window_ms: int = 15 * MINUTE
) -> UserActivity:
    """Counts as a store would derive them from request times (ms before NOW)."""
    third = window_ms // 3
    in_window = [t for t in user_request_times if NOW - t < window_ms]
    return UserActivity(
        user_requests=len(in_window),
        background_requests=background,
        newest_third=sum(1 for t in in_window if NOW - t < third),
        previous_third=sum(1 for t in in_window if third <= NOW - t < 2 * third),
        last_user_request_ms=max(user_request_times) if user_request_times else None,
    )


def split(activity: UserActivity) -> tuple[int, int, bool]:
    capacity = compute_capacity(activity, LIMIT, DEFAULTS, NOW)
    return capacity.user_reserved, capacity.background_max, capacity.background_paused


# The figures the issue fixes for L = 200 and the defaults.
def test_fresh_resource() -> None:
    assert split(activity_from([])) == (60, 140, False)


def test_background_only_traffic() -> None:
    assert split(activity_from([], background=50)) == (5, 195, False)


def test_one_user_request_two_minutes_ago() -> None:
    assert split(activity_from([NOW - 2 * MINUTE])) == (60, 140, False)


def test_three_user_requests_spread_over_the_window_are_stable() -> None:
    times = [NOW - 2 * MINUTE, NOW - 7 * MINUTE, NOW - 12 * MINUTE]
    capacity = compute_capacity(activity_from(times), LIMIT, DEFAULTS, NOW)
    assert capacity.trend is Trend.STABLE
    # m = min(2.0, 1 + 3/10) = 1.3; user_reserved = min(140, 80 x 1.3) = 104
    assert (capacity.user_reserved, capacity.background_max) == (104, 96)


def test_twelve_user_requests_in_the_last_five_minutes_pause_background() -> None:
    times = [NOW - i * 20_000 for i in range(12)]  # all within the newest third
    capacity = compute_capacity(activity_from(times), LIMIT, DEFAULTS, NOW)
    assert capacity.trend is Trend.INCREASING
    assert (capacity.user_reserved, capacity.background_max, capacity.background_paused) == (
        180,
        20,
        True,
    )


def test_twelve_user_requests_spread_over_fifteen_minutes_do_not_pause() -> None:
    times = [NOW - i * 75_000 - 1 for i in range(12)]  # 4 per third
    capacity = compute_capacity(activity_from(times), LIMIT, DEFAULTS, NOW)
    assert capacity.trend is Trend.STABLE
    assert split(activity_from(times)) == (180, 20, False)


def test_last_user_request_twenty_minutes_ago() -> None:
    assert split(activity_from([NOW - 20 * MINUTE], background=10)) == (5, 195, False)


def test_last_user_request_forty_minutes_ago() -> None:
    assert split(activity_from([NOW - 40 * MINUTE], background=10)) == (0, 200, False)


# Every branch and boundary.
@pytest.mark.parametrize(
    ("newest", "previous", "trend"),
    [
        (0, 0, Trend.NONE),
        (1, 0, Trend.INCREASING),
        (3, 2, Trend.STABLE),  # 3 is exactly 1.5 x 2: not more
        (4, 2, Trend.INCREASING),
        (1, 2, Trend.STABLE),  # 1 is exactly 0.5 x 2: not less
        (0, 2, Trend.DECREASING),
        (0, 1, Trend.DECREASING),
    ],
)
def test_trend_boundaries(newest: int, previous: int, trend: Trend) -> None:
    assert trend_of(newest, previous) is trend


def moderate(newest: int, previous: int, total: int = 5) -> int:
    activity = UserActivity(total, 0, newest, previous, NOW)
    return compute_capacity(activity, LIMIT, DEFAULTS, NOW).user_reserved


def test_moderate_activity_scales_with_the_trend() -> None:
    # a = 5: m = 1.5; stable 80 x 1.5 = 120; increasing x1.2 = 144 -> capped at 0.7 L = 140;
    # decreasing x0.8 = 1.2 -> 96.
    assert moderate(2, 2) == 120
    assert moderate(4, 1) == 140
    assert moderate(0, 3) == 96


def test_moderate_scale_is_never_below_one() -> None:
    config = AdaptiveConfig(max_user_scaling=1.0)
    activity = UserActivity(3, 0, 0, 3, NOW)  # decreasing: 1.0 x 0.8 -> floored at 1
    assert compute_capacity(activity, LIMIT, config, NOW).user_reserved == 80


def test_activity_thresholds_are_inclusive() -> None:
    def reserved(a: int) -> int:
        activity = UserActivity(a, 0, a, a, NOW)
        return compute_capacity(activity, LIMIT, DEFAULTS, NOW).user_reserved

    assert reserved(2) == 60  # low
    assert reserved(3) == 104  # moderate from 3 on
    assert reserved(9) == 140  # 80 x 1.9 = 152 -> capped at 140
    assert reserved(10) == 180  # high from 10 on


def test_high_activity_respects_the_90_percent_cap_and_scaling() -> None:
    activity = UserActivity(20, 0, 5, 5, NOW)
    assert (
        compute_capacity(activity, LIMIT, AdaptiveConfig(max_user_scaling=1.5), NOW).user_reserved
        == 150
    )
    assert compute_capacity(activity, LIMIT, DEFAULTS, NOW).user_reserved == 180


def test_pausing_can_be_disabled() -> None:
    config = AdaptiveConfig(background_pause_on_increasing_trend=False)
    activity = UserActivity(12, 0, 12, 0, NOW)
    assert not compute_capacity(activity, LIMIT, config, NOW).background_paused


def test_inactivity_threshold_is_strict() -> None:
    at = UserActivity(0, 0, 0, 0, NOW - DEFAULTS.sustained_inactivity_threshold_ms)
    past = UserActivity(0, 0, 0, 0, NOW - DEFAULTS.sustained_inactivity_threshold_ms - 1)
    assert compute_capacity(at, LIMIT, DEFAULTS, NOW).user_reserved == 5
    assert compute_capacity(past, LIMIT, DEFAULTS, NOW).user_reserved == 0


@pytest.mark.parametrize("limit", [0, 1, 3, 7, 10, 200, 10_000])
def test_the_split_always_adds_up_to_the_limit(limit: int) -> None:
    for activity in (
        UserActivity(0, 0, 0, 0, None),
        UserActivity(0, 5, 0, 0, None),
        UserActivity(1, 0, 1, 0, NOW),
        UserActivity(5, 0, 2, 2, NOW),
        UserActivity(50, 0, 40, 5, NOW),
    ):
        capacity = compute_capacity(activity, limit, DEFAULTS, NOW)
        assert 0 <= capacity.user_reserved <= limit
        assert capacity.user_reserved + capacity.background_max == limit
        assert capacity.reason


def test_moderate_must_be_below_high() -> None:
    with pytest.raises(ValueError, match="moderate_activity_threshold"):
        AdaptiveConfig(moderate_activity_threshold=10, high_activity_threshold=10)
