"""Property tests of the rate limiter's bounds under random timelines.

A timeline is a sorted list of request times across one to three windows (uniform, or in
bursts), for a random window (1 ms .. 120 s) and limit (0 .. 50); every request is an
``acquire``, or in some timelines one in five is a ``record`` (counted unconditionally). An
admission at ``a`` counts at ``t`` iff ``t - a < window_ms``; "events" are the admitted
acquires and the records. On every timeline:

* **never over-admits**: an acquire is admitted at ``a`` only if, with it, ``(a - window_ms,
  a]`` holds at most ``limit`` events; with acquires only, no span of ``window_ms`` holds more
  than ``limit`` admissions;
* **under-admits by at most one slice**: a refusal at ``t`` means ``(t - window_ms - slice_ms,
  t]`` already held ``limit`` events (for the exact log: ``(t - window_ms, t]``).

It is checked on the pure window math driven as the DynamoDB store drives it (a small
simulator of ``DynamoDBRateLimitStore._count``), on ``DynamoDBRateLimitStore`` itself against
DynamoDB Local (two stores taking turns, as two processes; their decisions must equal the
simulator's), and on the exact log of ``InMemoryRateLimitStore``.

Sliced against exact: the decisions diverge (the sliced window refuses some requests the exact
log admits, and may admit later ones the exact log, having admitted more, refuses), so they are
not compared request by request. What holds is that the exact log is the greedy admission of
the timeline, and greedy admits earliest: its ``i``-th admission is never later than the
``i``-th admission of any limiter that never over-admits (records included: they are the same
forced events for both). So the test asserts, for every ``i``, ``exact[i] <= sliced[i]`` (the
``i``-th admitted acquire's time), hence ``len(sliced) <= len(exact)`` overall.
"""

from __future__ import annotations

import uuid
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeAlias

from hypothesis import given, settings
from hypothesis import strategies as st

from comic_vine_dynamodb_store.stores.memory_rate_limit import InMemoryRateLimitStore
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore
from comic_vine_dynamodb_store.stores.rate_limit_core import (
    SliceLayout,
    WindowState,
    fresh_state,
    history_allowance,
    roll,
    room,
    wait_ms,
)
from comic_vine_dynamodb_store.table import create_table
from tests.support import FakeClock

REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class Timeline:
    window_ms: int
    limit: int
    start_ms: int
    offsets: tuple[int, ...]
    """Request times after ``start_ms``, ascending (repeats allowed)."""
    records: tuple[bool, ...]
    """Per request: a ``record`` (True) or an ``acquire``; empty means acquires only."""

    @property
    def times(self) -> list[int]:
        return [self.start_ms + offset for offset in self.offsets]

    @property
    def requests(self) -> list[tuple[int, bool]]:
        """``(time, is_record)`` of every request, in order."""
        kinds = self.records or (False,) * len(self.offsets)
        return list(zip(self.times, kinds, strict=True))


@st.composite
def timelines(draw: st.DrawFn, max_requests: int = 150) -> Timeline:
    window_ms = draw(st.integers(1, 120_000))
    limit = draw(st.integers(0, 50))
    span = window_ms * draw(st.integers(1, 3))
    # The slice grid starts anywhere relative to the first request.
    start_ms = draw(st.integers(0, 2 * SliceLayout.for_window(window_ms).slice_ms))
    size = draw(st.integers(0, max_requests))
    uniform = st.lists(st.integers(0, span - 1), min_size=size, max_size=size)
    # Bursts: requests within a slice or two of a few instants, so limits up to 50 fill up.
    centres = draw(st.lists(st.integers(0, span - 1), min_size=1, max_size=5))
    spread = max(1, 2 * SliceLayout.for_window(window_ms).slice_ms)
    bursty = st.lists(
        st.builds(
            lambda centre, offset: min(span - 1, centre + offset),
            st.sampled_from(centres),
            st.integers(0, spread),
        ),
        min_size=size,
        max_size=size,
    )
    offsets = draw(st.one_of(uniform, bursty))
    records = draw(
        st.one_of(
            st.just(()),
            st.lists(
                st.sampled_from([False, False, False, False, True]), min_size=size, max_size=size
            ),
        )
    )
    return Timeline(window_ms, limit, start_ms, tuple(sorted(offsets)), tuple(records))


# -- the bounds ----------------------------------------------------------------------------------


Decision: TypeAlias = bool | None
"""An acquire's answer, or None for a record."""


def run(
    timeline: Timeline, acquire: Callable[[int], bool], record: Callable[[int], None]
) -> list[Decision]:
    """Every request's decision, in order; ``acquire(t)`` decides the request at ``t``."""
    decisions: list[Decision] = []
    for t, is_record in timeline.requests:
        if is_record:
            record(t)
            decisions.append(None)
        else:
            decisions.append(acquire(t))
    return decisions


def admitted_times(timeline: Timeline, decisions: list[Decision]) -> list[int]:
    """When acquires were admitted."""
    return [t for t, decision in zip(timeline.times, decisions, strict=True) if decision]


def check_bounds(timeline: Timeline, decisions: list[Decision], *, reach: int) -> None:
    """Replays the decisions: an admission never makes ``(a - window_ms, a]`` hold more than
    ``limit`` events; a refusal at ``t`` means ``(t - reach, t]`` already held ``limit`` (the
    events before the refused request: none comes after it at the same instant)."""
    events: list[int] = []
    for t, decision in zip(timeline.times, decisions, strict=True):
        if decision is None:
            events.append(t)
        elif decision:
            events.append(t)
            in_window = len(events) - bisect_right(events, t - timeline.window_ms)
            assert in_window <= timeline.limit, ("over-admitted", t, in_window)
        else:
            held = len(events) - bisect_right(events, t - reach)
            assert held >= timeline.limit, ("refused with room", t, held)
    if not timeline.records:
        # Acquires only: no window at all holds more than the limit.
        admitted = admitted_times(timeline, decisions)
        for a in admitted:
            in_window = bisect_right(admitted, a) - bisect_right(admitted, a - timeline.window_ms)
            assert in_window <= timeline.limit, (a, in_window)


def sliced_reach(window_ms: int) -> int:
    return window_ms + SliceLayout.for_window(window_ms).slice_ms


# -- the sliced window as the DynamoDB store drives it -------------------------------------------


class SlicedSimulator:
    """``DynamoDBRateLimitStore._count`` for one resource and one writer, with the item's state
    in a variable: ``acquire`` refuses without room; else (and always for ``record``) it
    creates the window, adds to the current slice (an acquire under the condition
    ``current < history_allowance``), or rolls over into a new slice that takes the count."""

    def __init__(self, window_ms: int, limit: int) -> None:
        self.layout = SliceLayout.for_window(window_ms)
        self.limit = limit
        self.state: WindowState | None = None

    def acquire(self, now: int) -> bool:
        layout, limit, state = self.layout, self.limit, self.state
        if limit <= 0 or room(state, layout, limit, now) <= 0:
            # The signal's wait: a refusal always has a positive wait, after which there is room
            # (limit 0 aside: nothing ever makes room there).
            wait = wait_ms(state, layout, limit, now)
            assert wait > 0
            assert limit == 0 or room(state, layout, limit, now + wait) > 0
            return False
        self._count(now, enforce=True)
        return True

    def record(self, now: int) -> None:
        self._count(now, enforce=False)

    def _count(self, now: int, *, enforce: bool) -> None:
        layout, state = self.layout, self.state
        current = layout.slice_of(layout.effective_now(state, now))
        if state is None:
            self.state = WindowState(current, 1, fresh_state(layout, current).history)
            return
        rolled = roll(state, layout, current)
        if rolled.current_slice == state.current_slice:
            if enforce:
                # The condition the store writes must agree with the room it checked.
                assert rolled.current < history_allowance(rolled, layout, self.limit, now)
            self.state = replace(rolled, current=rolled.current + 1)
        else:
            self.state = WindowState(current, 1, rolled.history)


def exact_decisions(timeline: Timeline) -> list[Decision]:
    clock = FakeClock(timeline.start_ms)
    with InMemoryRateLimitStore(
        default_config={"limit": timeline.limit, "window_ms": timeline.window_ms}, clock=clock
    ) as store:

        def acquire(t: int) -> bool:
            clock.now_ms = t
            return store.acquire("r")

        def record(t: int) -> None:
            clock.now_ms = t
            store.record("r")

        return run(timeline, acquire, record)


def check_exact_admits_no_later(
    timeline: Timeline, sliced: list[Decision], exact: list[Decision]
) -> None:
    """The ``i``-th exact admission is never after the ``i``-th sliced one (so the exact log
    admits at least as many, in every prefix of the timeline)."""
    sliced_at = admitted_times(timeline, sliced)
    exact_at = admitted_times(timeline, exact)
    assert len(sliced_at) <= len(exact_at)
    for i, at in enumerate(sliced_at):
        assert exact_at[i] <= at, (i, exact_at[i], at)


@settings(max_examples=300, deadline=None)
@given(timeline=timelines())
def test_sliced_window_keeps_its_bounds(timeline: Timeline) -> None:
    simulator = SlicedSimulator(timeline.window_ms, timeline.limit)
    sliced = run(timeline, simulator.acquire, simulator.record)
    check_bounds(timeline, sliced, reach=sliced_reach(timeline.window_ms))
    check_exact_admits_no_later(timeline, sliced, exact_decisions(timeline))


# -- the DynamoDB store --------------------------------------------------------------------------


def test_dynamodb_store_keeps_the_bounds_and_matches_the_simulator(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    table_name = make_table_name()  # one table for the whole test, deleted afterwards
    create_table(table_name, endpoint=endpoint, region=REGION)
    clock = FakeClock()
    stores = [
        DynamoDBRateLimitStore(table_name=table_name, endpoint=endpoint, region=REGION, clock=clock)
        for _ in range(2)
    ]

    @settings(max_examples=10, deadline=None)
    @given(timeline=timelines(max_requests=60), turns=st.lists(st.booleans(), min_size=60))
    def check(timeline: Timeline, turns: list[bool]) -> None:
        # A fresh resource per example, on a clock that only moves forward.
        resource = f"r-{uuid.uuid4().hex}"
        config = {"limit": timeline.limit, "window_ms": timeline.window_ms}
        for store in stores:
            store.set_resource_config(resource, config)
        shifted = replace(timeline, start_ms=clock.now_ms + 1 + timeline.start_ms)
        simulator = SlicedSimulator(timeline.window_ms, timeline.limit)
        decisions: list[Decision] = []
        expected: list[Decision] = []
        for (t, is_record), turn in zip(shifted.requests, turns, strict=False):
            clock.now_ms = t
            if is_record:
                stores[turn].record(resource)
                simulator.record(t)
                decisions.append(None)
                expected.append(None)
            else:
                decisions.append(stores[turn].acquire(resource))
                expected.append(simulator.acquire(t))
        assert decisions == expected
        check_bounds(shifted, decisions, reach=sliced_reach(timeline.window_ms))

    try:
        check()
    finally:
        for store in stores:
            store.close()


# -- the exact log -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(timeline=timelines())
def test_exact_log_keeps_the_exact_bounds(timeline: Timeline) -> None:
    clock = FakeClock(timeline.start_ms)
    window = timeline.window_ms
    events: list[int] = []  # admitted acquires and records

    def counted(at: int) -> int:
        return len(events) - bisect_right(events, at - window)

    with InMemoryRateLimitStore(
        default_config={"limit": timeline.limit, "window_ms": window}, clock=clock
    ) as store:
        decisions: list[Decision] = []
        for t, is_record in timeline.requests:
            clock.now_ms = t
            if is_record:
                store.record("r")
                events.append(t)
                decisions.append(None)
                continue
            decision = store.acquire("r")
            decisions.append(decision)
            if decision:
                # Admitted only with room in the exact window.
                assert counted(t) < timeline.limit
                events.append(t)
                continue
            # Refused only when the exact window is full (exactly full, with acquires only).
            assert counted(t) >= timeline.limit
            if not timeline.records:
                assert counted(t) == timeline.limit
            wait = store.get_wait_time("r")
            if timeline.limit == 0:
                assert wait == window
            else:
                # Exact: room at t + wait, none a millisecond before.
                assert counted(t + wait) < timeline.limit
                assert counted(t + wait - 1) >= timeline.limit
            status = store.get_status("r")
            assert status.remaining == 0
            # When the newest counted event leaves; now if nothing is counted.
            expected_reset = events[-1] + window if counted(t) else t
            assert round(status.reset_time.timestamp() * 1000) == expected_reset
    check_bounds(timeline, decisions, reach=window)
