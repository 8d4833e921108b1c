"""The sliced sliding window of the rate limiter, under a frozen clock.

Every expected number is derived by hand in a comment next to it, from the rules stated in
:mod:`comic_vine_dynamodb_store.stores.rate_limit_core`:

* ``slice_ms = max(1, ceil(window_ms / 60))``, ``history_slices = ceil(window_ms / slice_ms)``;
* slice ``j`` holds the times ``[j * slice_ms, (j + 1) * slice_ms)``;
* at ``now``, history slice ``j`` is counted (whole) iff ``j >= (now - window_ms) // slice_ms``,
  i.e. it leaves the count exactly at ``now = (j + 1) * slice_ms + window_ms`` (its end plus the
  window).
"""

from __future__ import annotations

import itertools

import pytest

from comic_vine_dynamodb_store.stores.rate_limit_core import (
    SliceLayout,
    WindowState,
    counted,
    fresh_state,
    history_allowance,
    reset_ms,
    roll,
    room,
    wait_ms,
)

# -- layout ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window_ms", "slice_ms", "history_slices"),
    [
        (1, 1, 1),  # ceil(1/60) = 1 -> max(1, 1) = 1; ceil(1/1) = 1
        (7, 1, 7),  # ceil(7/60) = 1; ceil(7/1) = 7
        (59, 1, 59),  # ceil(59/60) = 1; 59 slices of 1 ms
        (60, 1, 60),  # ceil(60/60) = 1; 60 slices of 1 ms
        (61, 2, 31),  # ceil(61/60) = 2; ceil(61/2) = ceil(30.5) = 31
        (119, 2, 60),  # ceil(119/60) = 2; ceil(119/2) = ceil(59.5) = 60
        (120, 2, 60),  # ceil(120/60) = 2; 120/2 = 60
        (121, 3, 41),  # ceil(121/60) = 3; ceil(121/3) = ceil(40.33) = 41
        (1000, 17, 59),  # ceil(1000/60) = ceil(16.67) = 17; ceil(1000/17) = ceil(58.82) = 59
        (5000, 84, 60),  # ceil(5000/60) = ceil(83.33) = 84; ceil(5000/84) = ceil(59.52) = 60
        (60_000, 1000, 60),  # 60000/60 = 1000; 60000/1000 = 60
    ],
)
def test_layout_cuts_a_window_into_at_most_60_slices(
    window_ms: int, slice_ms: int, history_slices: int
) -> None:
    layout = SliceLayout.for_window(window_ms)
    assert layout == SliceLayout(window_ms, slice_ms, history_slices)
    # The history reaches back a whole window, and not one slice more than needed.
    assert layout.history_slices * layout.slice_ms >= window_ms
    assert (layout.history_slices - 1) * layout.slice_ms < window_ms
    # At most 60 history slices plus the current one: at most 61 counters.
    assert layout.history_slices + 1 <= 61


@pytest.mark.parametrize("window_ms", [1, 2, 59, 60, 61, 999, 1000, 1001, 59_999, 86_400_000])
def test_layout_never_needs_more_than_61_counters(window_ms: int) -> None:
    layout = SliceLayout.for_window(window_ms)
    assert 1 <= layout.history_slices <= 60
    assert layout.slice_ms >= 1


@pytest.mark.parametrize("window_ms", [0, -1, -60_000])
def test_layout_refuses_a_window_that_is_not_positive(window_ms: int) -> None:
    with pytest.raises(ValueError, match="window_ms"):
        SliceLayout.for_window(window_ms)


def test_slice_of_and_effective_now() -> None:
    layout = SliceLayout.for_window(60_000)  # 1000 ms slices
    assert layout.slice_of(1_000_000) == 1000  # 1_000_000 // 1000
    assert layout.slice_of(1_000_999) == 1000  # the last ms of slice 1000
    assert layout.slice_of(1_001_000) == 1001
    state = fresh_state(layout, 1000)
    assert layout.effective_now(None, 5) == 5  # no state: the clock as is
    assert layout.effective_now(state, 1_000_500) == 1_000_500  # clock inside the slice
    assert layout.effective_now(state, 1_500_000) == 1_500_000  # clock ahead: as is
    assert layout.effective_now(state, 999_500) == 1_000_000  # lagging: start of slice 1000


# -- roll --------------------------------------------------------------------------------------

SEVEN = SliceLayout.for_window(7)  # 1 ms slices, 7 history slices
STATE7 = WindowState(10, 3, (1, 2, 3, 4, 5, 6, 7))  # slices 3..9 hold 1..7, slice 10 holds 3


def test_fresh_state_is_empty_with_a_full_history() -> None:
    assert fresh_state(SEVEN, 5) == WindowState(5, 0, (0,) * 7)
    assert fresh_state(SliceLayout.for_window(60_000), 0).history == (0,) * 60
    assert STATE7.total == 3 + 1 + 2 + 3 + 4 + 5 + 6 + 7  # 31


def test_roll_to_the_current_slice_is_the_same_state() -> None:
    assert roll(STATE7, SEVEN, 10) is STATE7


def test_roll_forward_by_one_freezes_the_current_count_into_the_history() -> None:
    # The oldest (slice 3 = 1) falls out, slice 10's 3 becomes the newest history entry.
    assert roll(STATE7, SEVEN, 11) == WindowState(11, 0, (2, 3, 4, 5, 6, 7, 3))


def test_roll_forward_by_several_slices_leaves_empty_slices_between() -> None:
    # To 13: history is slices 6..12 = (4, 5, 6, 7, 3, 0, 0): 10 -> 3, 11 and 12 empty.
    assert roll(STATE7, SEVEN, 13) == WindowState(13, 0, (4, 5, 6, 7, 3, 0, 0))
    # To 17: history is slices 10..16 = (3, 0, 0, 0, 0, 0, 0): only slice 10 is still kept.
    assert roll(STATE7, SEVEN, 17) == WindowState(17, 0, (3, 0, 0, 0, 0, 0, 0))


def test_roll_beyond_the_history_forgets_everything() -> None:
    # To 18: history is slices 11..17, all empty; slice 10 has fallen out.
    assert roll(STATE7, SEVEN, 18) == WindowState(18, 0, (0,) * 7)
    assert roll(STATE7, SEVEN, 1_000_000) == WindowState(1_000_000, 0, (0,) * 7)
    # Epoch-sized gaps (a state counted in other slices, a clock jump) cost no more than the
    # history: this would need terabytes if every skipped slice were built.
    far = 10**13
    assert roll(STATE7, SEVEN, far) == WindowState(far, 0, (0,) * 7)


def test_roll_never_goes_backwards() -> None:
    with pytest.raises(ValueError, match="backwards"):
        roll(STATE7, SEVEN, 9)


def test_roll_by_steps_equals_roll_at_once() -> None:
    stepwise = STATE7
    for to_slice in range(11, 20):
        stepwise = roll(stepwise, SEVEN, to_slice)
        assert stepwise == roll(STATE7, SEVEN, to_slice)


# -- counted, room, history_allowance ----------------------------------------------------------

MINUTE = SliceLayout.for_window(60_000)  # 1000 ms slices, 60 history slices
# Current slice 1000 ([1_000_000, 1_001_000)) holds 3; the history is slices 940..999: slice 940
# ([940_000, 941_000)) holds 5, slice 999 holds 2, the others none.
STATE = WindowState(1000, 3, (5, *(0,) * 58, 2))
T = 1_000_000  # the start of the current slice


def test_counted_of_nothing_is_zero() -> None:
    assert counted(None, MINUTE, T) == 0
    assert room(None, MINUTE, 5, T) == 5


def test_the_oldest_slice_counts_whole_until_its_end_plus_the_window() -> None:
    # At T: (T - 60_000) // 1000 = 940, so slice 940 counts: 3 + 5 + 2.
    assert counted(STATE, MINUTE, T) == 10
    # Slice 940 ends at 941_000; it is dropped exactly at 941_000 + 60_000 = 1_001_000.
    # At 1_000_999: (940_999) // 1000 = 940, still counted whole. (An admission in its last
    # millisecond, 940_999, has left the exact window at 1_000_999: the 1 ms of rounding
    # the sliced window pays on top of the slice.)
    assert counted(STATE, MINUTE, T + 999) == 10
    # At 1_001_000 the clock is in slice 1001 (the 3 become history) and slice 940 is gone.
    assert counted(STATE, MINUTE, T + 1000) == 5


def test_each_slice_leaves_at_its_own_end_plus_the_window() -> None:
    # Slice 999 ends at 1_000_000: it leaves at 1_060_000; slice 1000 leaves at 1_061_000.
    assert counted(STATE, MINUTE, 1_059_999) == 5  # 2 + 3
    assert counted(STATE, MINUTE, 1_060_000) == 3
    assert counted(STATE, MINUTE, 1_060_999) == 3
    assert counted(STATE, MINUTE, 1_061_000) == 0
    assert counted(STATE, MINUTE, 5_000_000) == 0


def test_a_lagging_clock_counts_in_the_current_slice() -> None:
    # 999_500 is in slice 999, behind the state's slice 1000: it counts as at 1_000_000.
    assert counted(STATE, MINUTE, 999_500) == 10
    assert room(STATE, MINUTE, 12, 999_500) == 2


def test_room_is_what_the_limit_leaves_and_never_negative() -> None:
    assert room(STATE, MINUTE, 10, T) == 0
    assert room(STATE, MINUTE, 12, T) == 2  # 12 - 10
    assert room(STATE, MINUTE, 7, T) == 0  # 7 - 10 < 0: none
    assert room(STATE, MINUTE, 12, T + 1000) == 7  # 12 - 5
    assert room(STATE, MINUTE, 0, T) == 0


def test_history_allowance_bounds_the_current_counter() -> None:
    # At T the counted history is 5 + 2 = 7: the current slice may reach 12 - 7 = 5.
    assert history_allowance(STATE, MINUTE, 12, T) == 5
    assert history_allowance(STATE, MINUTE, 12, T + 999) == 5
    # Room is the allowance minus what the current slice already holds: 5 - 3 = 2.
    assert room(STATE, MINUTE, 12, T) == history_allowance(STATE, MINUTE, 12, T) - STATE.current
    # Rolled into slice 1001 (as the store does first): history 940 is gone, 999 holds 2 and
    # 1000 holds 3, so the new current slice may reach 12 - 5 = 7.
    rolled = roll(STATE, MINUTE, 1001)
    assert history_allowance(rolled, MINUTE, 12, T + 1000) == 7
    # A lagging clock is judged at the start of the state's slice: the same 5 as at T.
    assert history_allowance(STATE, MINUTE, 12, 999_500) == 5
    # The allowance may be negative (history alone over the limit): no admission passes.
    assert history_allowance(STATE, MINUTE, 6, T) == -1


# -- wait_ms -----------------------------------------------------------------------------------


def assert_exact_wait(state: WindowState, layout: SliceLayout, limit: int, now: int) -> int:
    """The wait is exact: room at ``now + wait``, none a millisecond before."""
    wait = wait_ms(state, layout, limit, now)
    assert wait > 0
    assert room(state, layout, limit, now + wait) > 0
    assert room(state, layout, limit, now + wait - 1) == 0
    return wait


def test_no_wait_while_there_is_room() -> None:
    assert wait_ms(None, MINUTE, 5, T) == 0
    assert wait_ms(STATE, MINUTE, 11, T) == 0  # 10 counted, 11 allowed


def test_a_zero_limit_reports_a_full_window() -> None:
    assert wait_ms(None, MINUTE, 0, T) == 60_000
    assert wait_ms(STATE, MINUTE, 0, T) == 60_000


@pytest.mark.parametrize(
    ("limit", "now", "expected"),
    [
        # Limit 10, full at T: slice 940 (5) leaves at 1_001_000, leaving 5 < 10.
        (10, T, 1000),
        (10, T + 400, 600),  # the same instant, seen from 1_000_400
        (6, T, 1000),  # at 1_001_000: 5 counted < 6
        # Limit 5: at 1_001_000 still 5 counted; slice 999 (2) leaves at 1_060_000: 3 < 5.
        (5, T, 60_000),
        # Limit 3: at 1_060_000 still 3; slice 1000 leaves at 1_061_000: 0 < 3.
        (3, T, 61_000),
        (3, 1_060_000, 1000),
        # A lagging clock (999_500, behind slice 1000) waits for the same instant, 1_001_000,
        # from its own now: 1_001_000 - 999_500.
        (10, 999_500, 1500),
    ],
)
def test_wait_is_until_the_first_slice_whose_leaving_makes_room(
    limit: int, now: int, expected: int
) -> None:
    assert assert_exact_wait(STATE, MINUTE, limit, now) == expected


def test_wait_in_a_7_ms_window() -> None:
    # Slices of 1 ms; slice 99 and slice 100 hold one admission each; limit 2 is full at 100.
    state = WindowState(100, 1, (0, 0, 0, 0, 0, 0, 1))
    assert counted(state, SEVEN, 100) == 2
    # Slice 99 leaves at (99 + 1) + 7 = 107: wait 7. (The exact log would drop an admission
    # at 99 at 99 + 7 = 106: the 1 ms rounding, well inside the one-slice bound.)
    assert assert_exact_wait(state, SEVEN, 2, 100) == 7
    # Limit 1: slice 100 must leave too, at 101 + 7 = 108.
    assert assert_exact_wait(state, SEVEN, 1, 100) == 8


def test_wait_in_a_1_ms_window() -> None:
    one = SliceLayout.for_window(1)
    # Slice 50 holds one admission: it counts at 50 and at 51 (dropped at (50 + 1) + 1 = 52).
    state = WindowState(50, 1, (0,))
    assert counted(state, one, 50) == 1
    assert counted(state, one, 51) == 1
    assert counted(state, one, 52) == 0
    assert assert_exact_wait(state, one, 1, 50) == 2
    assert assert_exact_wait(state, one, 1, 51) == 1


@pytest.mark.parametrize("window_ms", [1, 2, 7, 61, 121])
def test_wait_is_exact_for_every_small_state(window_ms: int) -> None:
    """Brute force over states with counts in the last few slices, every limit, and every
    instant where the count can change (each slice's first and last millisecond), from one
    slice behind the state (a lagging clock) to past its end."""
    layout = SliceLayout.for_window(window_ms)
    n, width = layout.history_slices, layout.slice_ms
    base = 1000
    start = base * width
    instants = sorted(
        {
            boundary + offset
            for boundary in range(start - width, start + window_ms + 3 * width, width)
            for offset in (-1, 0)
        }
    )
    for tail in itertools.product(range(2), repeat=min(n, 3)):
        for current in range(3):
            history = (*(0,) * (n - len(tail)), *tail)
            state = WindowState(base, current, history)
            for now in instants:
                for limit in range(1, 4):
                    if room(state, layout, limit, now) > 0:
                        assert wait_ms(state, layout, limit, now) == 0
                    else:
                        assert_exact_wait(state, layout, limit, now)


# -- reset_ms ----------------------------------------------------------------------------------


def test_reset_is_when_the_newest_counted_slice_leaves() -> None:
    # The newest non-empty slice is the current one, 1000: it leaves at 1_001_000 + 60_000.
    assert reset_ms(STATE, MINUTE, T) == 1_061_000
    # A lagging clock sees the same state, so the same instant.
    assert reset_ms(STATE, MINUTE, 999_500) == 1_061_000
    # With the current slice empty, the newest is slice 999: it leaves at 1_000_000 + 60_000.
    quiet = WindowState(1000, 0, STATE.history)
    assert reset_ms(quiet, MINUTE, T) == 1_060_000
    # Seen later from slice 1030 (rolled: 1000 is history now, still the newest).
    assert reset_ms(STATE, MINUTE, 1_030_000) == 1_061_000


def test_reset_of_nothing_counted_is_now() -> None:
    assert reset_ms(None, MINUTE, T) == T
    assert reset_ms(fresh_state(MINUTE, 1000), MINUTE, T) == T
    assert reset_ms(STATE, MINUTE, 1_061_000) == 1_061_000  # everything has left
    assert reset_ms(STATE, MINUTE, 2_000_000) == 2_000_000


def test_reset_leaves_room_for_the_whole_limit() -> None:
    for now in (999_500, T, T + 999, 1_030_000, 1_060_500):
        at = reset_ms(STATE, MINUTE, now)
        assert counted(STATE, MINUTE, at) == 0
        assert counted(STATE, MINUTE, at - 1) > 0
