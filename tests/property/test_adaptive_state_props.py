"""Property tests of the adaptive limiter's decisions under random timelines.

One process drives :func:`plan` the way the stores do, keeping ``plan(...).after`` as the state:
a random rate window (1 ms .. 20 s) and limit (0 .. 15), a random :class:`AdaptiveConfig` (or
the defaults) with short windows and intervals so splits are recomputed, paused and resumed
often, and a random sequence of calls at non-decreasing times: ``acquire`` (enforce and count),
``record`` (count whatever the decision) and reads (decide, count nothing), by users or
background work. An admission at ``a`` counts at ``t`` iff ``t - a < window_ms``; "events"
are the admitted acquires and the records. At every call:

* **never over-admits**: an acquire admitted at ``a`` leaves at most ``limit`` events in
  ``(a - window_ms, a]``; a background acquire is admitted only while the split in force does
  not pause background work, and leaves at most that split's ``background_max`` background
  events in the same span; with acquires only, no span of ``window_ms`` holds more than
  ``limit`` admissions;
* **under-admits by at most one slice**: a refused acquire means ``(t - window_ms - slice_ms,
  t]`` already held ``limit`` events, or (background) the split pauses or gives nothing to
  background work, or that span already held ``background_max`` background events;
* **the wait agrees with the decision**: ``wait_for`` is 0 exactly when :func:`admits`, and
  an enforced call is admitted exactly when :func:`admits` on the state it decided on;
* **the wait keeps its promise**: with a wait ``w > 0`` and no admission meanwhile, the request
  is still refused at ``now + w - 1``, and at ``now + w`` it is admitted under the same split
  (users, and background work with a share), or the split is due for recomputation
  (background work the split pauses or gives nothing), with room in the total window by
  then. A zero limit admits nothing, ever: its wait is a full window, or the next split.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Literal, TypeAlias

from hypothesis import given, settings
from hypothesis import strategies as st

from comic_vine_dynamodb_store.config import AdaptiveConfig
from comic_vine_dynamodb_store.stores.adaptive_state import (
    AdaptiveLayout,
    AdaptiveState,
    admits,
    plan,
    remaining,
    wait_for,
)
from comic_vine_dynamodb_store.stores.contracts import Priority

Kind: TypeAlias = Literal["acquire", "record", "read"]


@dataclass(frozen=True, slots=True)
class Call:
    gap_ms: int
    """Time since the previous call (0: the same instant)."""
    priority: Priority
    kind: Kind


@dataclass(frozen=True, slots=True)
class Scenario:
    window_ms: int
    limit: int
    config: AdaptiveConfig
    start_ms: int
    calls: tuple[Call, ...]

    @property
    def acquires_only(self) -> bool:
        return all(call.kind == "acquire" for call in self.calls)


@st.composite
def configs(draw: st.DrawFn) -> AdaptiveConfig:
    high = draw(st.integers(2, 8))
    return AdaptiveConfig(
        monitoring_window_ms=draw(st.integers(1, 60_000)),
        high_activity_threshold=high,
        moderate_activity_threshold=draw(st.integers(1, high - 1)),
        recalculation_interval_ms=draw(st.integers(1, 20_000)),
        sustained_inactivity_threshold_ms=draw(st.integers(1, 60_000)),
        background_pause_on_increasing_trend=draw(st.booleans()),
        max_user_scaling=draw(st.floats(1.0, 3.0)),
        min_user_reserved=draw(st.integers(0, 15)),
    )


@st.composite
def scenarios(draw: st.DrawFn, max_calls: int = 60) -> Scenario:
    window_ms = draw(st.integers(1, 20_000))
    limit = draw(st.integers(0, 15))
    config = draw(st.one_of(st.just(AdaptiveConfig()), configs()))
    layout = AdaptiveLayout.of(window_ms, config)
    # Gaps on every time scale that matters: the same instant, a few rate slices, the window,
    # the recomputation interval, the monitoring window and the inactivity threshold.
    gaps = st.one_of(
        st.just(0),
        st.integers(0, 3 * layout.rate.slice_ms),
        st.integers(0, window_ms),
        st.integers(0, config.recalculation_interval_ms),
        st.integers(0, config.monitoring_window_ms),
        st.integers(0, 2 * config.sustained_inactivity_threshold_ms),
    )
    kinds: st.SearchStrategy[Kind] = st.one_of(
        st.just("acquire"),
        st.sampled_from(["acquire", "acquire", "acquire", "record", "read"]),
    )
    mix = draw(st.sampled_from(["acquires only", "mixed"]))
    # Mostly users, mostly background, or even: user bursts pause background work.
    user_share = draw(st.sampled_from([1, 2, 3]))
    priorities: st.SearchStrategy[Priority] = st.sampled_from(
        ["user"] * user_share + ["background"] * (4 - user_share)
    )
    size = draw(st.integers(0, max_calls))
    calls = draw(
        st.lists(
            st.builds(
                Call,
                gap_ms=gaps,
                priority=priorities,
                kind=st.just("acquire") if mix == "acquires only" else kinds,
            ),
            min_size=size,
            max_size=size,
        )
    )
    start_ms = draw(st.integers(0, 10**13))
    return Scenario(window_ms, limit, config, start_ms, tuple(calls))


def in_span(times: list[int], now: int, span_ms: int) -> int:
    """How many of ``times`` (ascending, none after ``now``) lie in ``(now - span_ms, now]``."""
    return len(times) - bisect_right(times, now - span_ms)


# -- the wait's promise --------------------------------------------------------------------------


def check_wait(
    state: AdaptiveState,
    layout: AdaptiveLayout,
    limit: int,
    priority: Priority,
    now: int,
) -> None:
    """``state`` is what a call at ``now`` decided on (its split current at ``now``)."""
    wait = wait_for(state, layout, limit, priority, now)
    allowed = admits(state, layout, limit, priority, now)
    assert wait >= 0
    assert allowed is (wait == 0), (wait, allowed)
    if wait == 0:
        return
    stored = state.capacity
    assert stored is not None
    capacity = stored.capacity
    config = layout.config
    later = now + wait
    # Nothing earlier: the request is still refused a millisecond before.
    assert not admits(state, layout, limit, priority, later - 1)
    no_share = priority == "background" and (
        capacity.background_paused or capacity.background_max <= 0
    )
    if limit == 0:
        # Nothing ever leaves a zero limit: a full window, or until the next split.
        assert not admits(state, layout, limit, priority, later)
        if priority == "user":
            assert wait == layout.rate.window_ms
        else:
            assert no_share
            assert wait == max(layout.rate.window_ms, stored.next_due_ms(config) - now)
            assert stored.is_due(limit, config, later)
        return
    if no_share:
        # Paused or nothing to share: the promise is a new split, and room for it by then.
        assert stored.is_due(limit, config, later)
        # The longer of the two waits: before it, the split is not due or the window is full.
        assert (
            not stored.is_due(limit, config, later - 1)
            or remaining(state, layout, limit, later - 1) == 0
        )
        assert remaining(state, layout, limit, later) > 0
        reread = plan(state, layout, limit, priority, later, enforce=True, count=False)
        assert reread.recomputed
        return
    # Room by then under the same split (users never depend on the split).
    assert admits(state, layout, limit, priority, later)
    reread = plan(state, layout, limit, priority, later, enforce=True, count=False)
    assert reread.admitted or reread.recomputed
    if priority == "user":
        assert reread.admitted


# -- driving one process -----------------------------------------------------------------------


def drive(scenario: Scenario) -> None:
    layout = AdaptiveLayout.of(scenario.window_ms, scenario.config)
    limit, window = scenario.limit, scenario.window_ms
    reach = window + layout.rate.slice_ms
    state: AdaptiveState | None = None
    now = scenario.start_ms
    events: list[int] = []  # admitted acquires and records, any priority
    background_events: list[int] = []
    admitted_acquires: list[int] = []
    for call in scenario.calls:
        now += call.gap_ms
        background = call.priority == "background"
        decision = plan(
            state,
            layout,
            limit,
            call.priority,
            now,
            enforce=call.kind != "record",
            count=call.kind != "read",
        )
        current = decision.current
        stored = current.capacity
        # Every call leaves a split current at now.
        assert stored is not None
        assert stored.limit == limit
        assert not stored.is_due(limit, scenario.config, now)
        capacity = stored.capacity
        assert capacity.user_reserved + capacity.background_max == limit

        allowed = admits(current, layout, limit, call.priority, now)
        if call.kind == "record":
            assert decision.admitted
        else:
            assert decision.admitted is allowed
        check_wait(current, layout, limit, call.priority, now)

        counted = decision.admitted and call.kind != "read"
        if counted:
            assert decision.after.total.total == current.total.total + 1
            assert decision.after.background.total == current.background.total + background
            events.append(now)
            if background:
                background_events.append(now)
            else:
                assert decision.after.last_user_ms == now
        else:
            assert decision.after is current

        if call.kind == "acquire" and decision.admitted:
            admitted_acquires.append(now)
            assert in_span(events, now, window) <= limit, ("over-admitted", now)
            if background:
                assert not capacity.background_paused
                assert in_span(background_events, now, window) <= capacity.background_max
        elif call.kind == "acquire":
            # Refused: the sliced windows were full, or the split shuts background out.
            full = in_span(events, now, reach) >= limit
            share_full = background and (
                capacity.background_paused
                or in_span(background_events, now, reach) >= capacity.background_max
            )
            assert full or share_full, ("refused with room", now)
        state = decision.after

    if scenario.acquires_only:
        # No span of window_ms holds more than the limit.
        for at in admitted_acquires:
            held = bisect_right(admitted_acquires, at) - bisect_right(
                admitted_acquires, at - window
            )
            assert held <= limit, (at, held)


@settings(max_examples=300, deadline=None)
@given(scenario=scenarios())
def test_one_process_keeps_the_bounds_and_the_waits(scenario: Scenario) -> None:
    drive(scenario)


@settings(max_examples=100, deadline=None)
@given(
    window_ms=st.integers(1, 20_000),
    limit=st.integers(0, 15),
    config=st.one_of(st.just(AdaptiveConfig()), configs()),
    priority=st.sampled_from(["user", "background"]),
    now=st.integers(0, 10**13),
)
def test_nothing_stored_yet(
    window_ms: int, limit: int, config: AdaptiveConfig, priority: Priority, now: int
) -> None:
    layout = AdaptiveLayout.of(window_ms, config)
    decision = plan(None, layout, limit, priority, now, enforce=True, count=False)
    assert decision.rolled
    assert decision.recomputed
    # Users go whenever the limit has room; background once a split gives it a share.
    wait = wait_for(None, layout, limit, priority, now)
    if priority == "user":
        assert decision.admitted is (limit > 0)
        assert wait == (0 if limit > 0 else window_ms)
    else:
        # No split stored yet: background waits a millisecond for the first one.
        assert wait == (1 if limit > 0 else window_ms)
    check_wait(decision.current, layout, limit, priority, now)
