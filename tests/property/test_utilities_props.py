"""Property tests of the bulk-work helpers under random inputs.

* ``execute_in_parallel`` (threads and asyncio): every item is processed exactly once, results
  keep input order with failures at their own positions, and no more than
  ``max_concurrency`` calls ever run at once;
* ``AdaptiveDelayCalculator``: after any sequence of throttles and successes, the delay is 0 or
  within ``[base, max]``, a draw within ``[0, current]``; a throttle never lowers it and a
  success never raises it;
* ``calculate_optimal_batch_size``: ``1 <= n <= max_items``; the ``n`` largest items fit the
  request limit and (below ``max_items``) ``n + 1`` would not, whatever that limit is.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from comic_vine_dynamodb_store.resilience import (
    AdaptiveDelayCalculator,
    batching,
    calculate_optimal_batch_size,
    execute_in_parallel,
    execute_in_parallel_async,
)
from comic_vine_dynamodb_store.serialization import MAX_ITEM_BYTES

values = st.lists(st.integers(-1000, 1000), max_size=24)
bounds = st.integers(1, 8)
failing = st.frozensets(st.integers(0, 23), max_size=6)


class Tracker:
    """Counts calls per index and the most running at once."""

    def __init__(self) -> None:
        self.calls: Counter[int] = Counter()
        self.running = 0
        self.peak = 0
        self.lock = threading.Lock()

    def enter(self, index: int) -> None:
        with self.lock:
            self.calls[index] += 1
            self.running += 1
            self.peak = max(self.peak, self.running)

    def leave(self) -> None:
        with self.lock:
            self.running -= 1


def expected(items: list[tuple[int, int]], fail: frozenset[int]) -> list[object]:
    return ["error" if index in fail else value * 3 for index, value in items]


def outcome(results: list[int | Exception]) -> list[object]:
    return ["error" if isinstance(r, Exception) else r for r in results]


@settings(max_examples=40, deadline=None)
@given(values, bounds, failing)
def test_threads_process_every_item_once_in_order_within_the_bound(
    raw: list[int], bound: int, fail: frozenset[int]
) -> None:
    items = list(enumerate(raw))
    tracker = Tracker()

    def work(item: tuple[int, int]) -> int:
        index, value = item
        tracker.enter(index)
        time.sleep(0.0005)
        tracker.leave()
        if index in fail:
            raise ValueError(index)
        return value * 3

    results = execute_in_parallel(items, work, bound, return_exceptions=True)
    assert outcome(results) == expected(items, fail)
    assert tracker.calls == Counter(range(len(items)))
    assert tracker.peak <= bound
    assert tracker.running == 0


@settings(max_examples=40, deadline=None)
@given(values, bounds, failing)
def test_tasks_process_every_item_once_in_order_within_the_bound(
    raw: list[int], bound: int, fail: frozenset[int]
) -> None:
    items = list(enumerate(raw))
    tracker = Tracker()

    async def work(item: tuple[int, int]) -> int:
        index, value = item
        tracker.enter(index)
        await asyncio.sleep(0.001 * (index % 3))  # finish out of order
        tracker.leave()
        if index in fail:
            raise ValueError(index)
        return value * 3

    results = asyncio.run(execute_in_parallel_async(items, work, bound, return_exceptions=True))
    assert outcome(results) == expected(items, fail)
    assert tracker.calls == Counter(range(len(items)))
    assert tracker.peak == min(bound, len(items))  # the bound is also reached


@settings(max_examples=200, deadline=None)
@given(
    base=st.floats(1, 1000),
    spread=st.floats(1, 100),
    growth=st.floats(1.01, 10),
    shrink=st.floats(0, 0.99),
    events=st.lists(st.booleans(), max_size=60),
    seed=st.integers(0, 2**32 - 1),
)
def test_delay_stays_within_its_bounds_for_any_events(
    *, base: float, spread: float, growth: float, shrink: float, events: list[bool], seed: int
) -> None:
    top = base * spread
    delay = AdaptiveDelayCalculator(
        base, top, growth=growth, shrink=shrink, rng=random.Random(seed)
    )
    for throttled in events:
        before = delay.current_delay_ms
        if throttled:
            delay.record_throttle()
            assert delay.current_delay_ms >= before
            assert delay.current_delay_ms >= base
        else:
            delay.record_success()
            assert delay.current_delay_ms <= before
        current = delay.current_delay_ms
        assert current == 0 or base <= current <= top
        assert 0 <= delay.next_delay_ms() <= current


sizes = st.lists(st.integers(0, MAX_ITEM_BYTES), max_size=60)


@settings(max_examples=200, deadline=None)
@given(sizes, st.integers(1, 25))
def test_batch_size_fits_the_real_limits(item_sizes: list[int], max_items: int) -> None:
    n = calculate_optimal_batch_size(item_sizes, max_items=max_items)
    assert n == max_items  # within the item limit, the count always binds
    assert sum(sorted(item_sizes, reverse=True)[:n]) <= batching.MAX_BATCH_REQUEST_BYTES


@settings(max_examples=200, deadline=None)
@given(sizes, st.integers(1, 25), st.integers(MAX_ITEM_BYTES, 8 * MAX_ITEM_BYTES))
def test_batch_size_is_the_most_of_the_largest_items_that_fit(
    item_sizes: list[int], max_items: int, limit: int
) -> None:
    with mock.patch.object(batching, "MAX_BATCH_REQUEST_BYTES", limit):
        n = calculate_optimal_batch_size(item_sizes, max_items=max_items)
    largest = sorted(item_sizes, reverse=True)
    assert 1 <= n <= max_items
    assert sum(largest[:n]) <= limit
    if n < max_items:
        assert sum(largest[: n + 1]) > limit


@settings(max_examples=200, deadline=None)
@given(st.floats(0, MAX_ITEM_BYTES), st.integers(1, 25), st.integers(MAX_ITEM_BYTES, 10**8))
def test_batch_size_from_an_average_fits_the_limit(
    average: float, max_items: int, limit: int
) -> None:
    with mock.patch.object(batching, "MAX_BATCH_REQUEST_BYTES", limit):
        n = calculate_optimal_batch_size(average_item_bytes=average, max_items=max_items)
    assert 1 <= n <= max_items
    assert n * average <= limit
    if n < max_items:
        assert (n + 1) * average > limit
