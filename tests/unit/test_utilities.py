"""The bulk-work helpers: bounded parallelism, adaptive pacing and batch sizing."""

from __future__ import annotations

import asyncio
import contextvars
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from comic_vine_dynamodb_store.errors import ConfigurationError, ItemTooLargeError
from comic_vine_dynamodb_store.models import CacheItem
from comic_vine_dynamodb_store.resilience import (
    MAX_BATCH_REQUEST_BYTES,
    AdaptiveDelayCalculator,
    BatchWriter,
    ParallelExecutionError,
    batching,
    calculate_optimal_batch_size,
    execute_in_parallel,
    execute_in_parallel_async,
)
from comic_vine_dynamodb_store.serialization import MAX_ITEM_BYTES

KB = 1024
MB = 1024 * KB


class Gauge:
    """Counts the calls running at once and remembers the peak."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.started: list[int] = []
        self._lock = threading.Lock()

    def enter(self, item: int) -> None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.started.append(item)

    def leave(self) -> None:
        with self._lock:
            self.running -= 1


# -- execute_in_parallel ------------------------------------------------------------------


def test_parallel_runs_exactly_max_concurrency_calls_at_once_and_keeps_order() -> None:
    gauge = Gauge()

    def slow_square(item: int) -> int:
        gauge.enter(item)
        time.sleep(0.02)
        gauge.leave()
        return item * item

    results = execute_in_parallel(range(40), slow_square, max_concurrency=4)
    assert results == [i * i for i in range(40)]
    assert gauge.peak == 4
    assert sorted(gauge.started) == list(range(40))


def test_parallel_keeps_the_other_results_when_items_fail() -> None:
    ran: list[int] = []
    lock = threading.Lock()

    def fragile(item: int) -> str:
        with lock:
            ran.append(item)
        if item in (3, 7):
            raise ValueError(f"bad {item}")
        return f"ok {item}"

    with pytest.raises(ParallelExecutionError, match="2 of 10 items failed") as caught:
        execute_in_parallel(range(10), fragile, max_concurrency=3)
    error = caught.value
    assert sorted(ran) == list(range(10))  # a failure does not stop the rest
    assert [index for index, _ in error.errors] == [3, 7]
    assert [str(exc) for _, exc in error.errors] == ["bad 3", "bad 7"]
    assert error.__cause__ is error.errors[0][1]
    for i, outcome in enumerate(error.results):
        if i in (3, 7):
            assert isinstance(outcome, ValueError)
        else:
            assert outcome == f"ok {i}"
    assert "item 3" in str(error)


def test_parallel_return_exceptions_puts_them_in_place() -> None:
    def fragile(item: int) -> int:
        if item % 4 == 0:
            raise KeyError(item)
        return -item

    results = execute_in_parallel(range(9), fragile, max_concurrency=2, return_exceptions=True)
    assert [type(r).__name__ if isinstance(r, Exception) else r for r in results] == [
        "KeyError", -1, -2, -3, "KeyError", -5, -6, -7, "KeyError"
    ]  # fmt: skip


def test_parallel_lets_base_exceptions_through() -> None:
    def interrupted(item: int) -> int:
        if item == 1:
            raise KeyboardInterrupt
        return item

    with pytest.raises(KeyboardInterrupt):
        execute_in_parallel(range(5), interrupted, max_concurrency=1)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "4", None])
def test_parallel_refuses_a_bad_bound_before_running_anything(bad: Any) -> None:
    consumed: list[int] = []

    def items() -> Iterator[int]:
        consumed.append(1)
        yield 1

    def never(item: int) -> int:
        raise AssertionError("fn must not run")

    with pytest.raises(ConfigurationError) as caught:
        execute_in_parallel(items(), never, max_concurrency=bad)
    assert caught.value.field == "max_concurrency"
    assert isinstance(caught.value, ValueError)
    assert consumed == []
    with pytest.raises(ConfigurationError):
        asyncio.run(execute_in_parallel_async([1], _async_identity, max_concurrency=bad))


def test_parallel_accepts_any_iterable_once_and_empty_input() -> None:
    assert execute_in_parallel([], str) == []
    assert execute_in_parallel((i for i in range(5)), str, max_concurrency=10) == list("01234")
    assert asyncio.run(execute_in_parallel_async(iter(()), _async_identity)) == []


def test_parallel_runs_calls_in_the_callers_context() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    request_id.set("job-7")
    assert (
        execute_in_parallel(range(3), lambda _: request_id.get(), max_concurrency=2)
        == ["job-7"] * 3
    )


async def _async_identity(item: int) -> int:
    return item


def test_parallel_async_bounds_awaits_and_keeps_order() -> None:
    gauge = Gauge()

    async def slow_double(item: int) -> int:
        gauge.enter(item)
        await asyncio.sleep(0.02)
        gauge.leave()
        return item * 2

    results = asyncio.run(execute_in_parallel_async(range(40), slow_double, max_concurrency=4))
    assert results == [i * 2 for i in range(40)]
    assert gauge.peak == 4
    assert sorted(gauge.started) == list(range(40))


def test_parallel_async_reports_failures_with_the_other_results() -> None:
    async def fragile(item: int) -> int:
        await asyncio.sleep(0.001 * (5 - item))  # finish out of order
        if item in (0, 4):
            raise RuntimeError(f"bad {item}")
        return item

    with pytest.raises(ParallelExecutionError, match="2 of 5 items failed") as caught:
        asyncio.run(execute_in_parallel_async(range(5), fragile, max_concurrency=5))
    error = caught.value
    assert [index for index, _ in error.errors] == [0, 4]
    assert error.results[1:4] == [1, 2, 3]
    kept = asyncio.run(
        execute_in_parallel_async(range(5), fragile, max_concurrency=2, return_exceptions=True)
    )
    assert [r if isinstance(r, int) else "error" for r in kept] == ["error", 1, 2, 3, "error"]


def test_parallel_async_cancellation_stops_the_work() -> None:
    started: list[int] = []

    async def forever(item: int) -> int:
        started.append(item)
        await asyncio.sleep(10)
        return item

    async def run() -> None:
        task = asyncio.create_task(execute_in_parallel_async(range(10), forever, 3))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert started == [0, 1, 2]


# -- AdaptiveDelayCalculator ----------------------------------------------------------------


def test_delay_starts_at_zero_grows_on_throttles_and_caps() -> None:
    delay = AdaptiveDelayCalculator(base_delay_ms=100, max_delay_ms=1000, jitter=False)
    assert delay.next_delay_ms() == 0
    seen = []
    for _ in range(6):
        delay.record_throttle()
        seen.append(delay.next_delay_ms())
    assert seen == [100, 200, 400, 800, 1000, 1000]


def test_delay_shrinks_on_successes_and_drops_to_zero_below_base() -> None:
    delay = AdaptiveDelayCalculator(base_delay_ms=100, max_delay_ms=1000, jitter=False)
    for _ in range(3):
        delay.record_throttle()
    seen = []
    for _ in range(4):
        delay.record_success()
        seen.append(delay.current_delay_ms)
    assert seen == [200, 100, 0, 0]
    delay.record_throttle()
    assert delay.current_delay_ms == 100  # throttling again starts from the base
    delay.reset()
    assert delay.current_delay_ms == 0


def test_delay_growth_and_shrink_are_configurable() -> None:
    delay = AdaptiveDelayCalculator(10, 10_000, growth=3, shrink=0.9, jitter=False)
    delay.record_throttle()
    delay.record_throttle()
    assert delay.current_delay_ms == 30
    delay.record_success()
    assert delay.current_delay_ms == pytest.approx(27)


def test_delay_jitter_draws_within_zero_and_current() -> None:
    delay = AdaptiveDelayCalculator(100, 1000, rng=random.Random(7))
    delay.record_throttle()
    delay.record_throttle()
    draws = [delay.next_delay_ms() for _ in range(200)]
    assert all(0 <= d <= 200 for d in draws)
    assert len(set(draws)) > 100  # jittered, not constant
    assert min(draws) < 50  # spread over the whole range
    assert max(draws) > 150
    assert delay.current_delay_ms == 200  # drawing does not change the state


def test_delay_is_shared_safely_between_threads() -> None:
    delay = AdaptiveDelayCalculator(1, 2**40, jitter=False)
    barrier = threading.Barrier(8)

    def throttle_five_times() -> None:
        barrier.wait()
        for _ in range(5):
            delay.record_throttle()

    threads = [threading.Thread(target=throttle_five_times) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert delay.current_delay_ms == 2**39  # 40 throttles from 0: 1, 2, ..., 2**39


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_delay_ms": 0}, "base_delay_ms"),
        ({"base_delay_ms": -5}, "base_delay_ms"),
        ({"base_delay_ms": float("nan")}, "base_delay_ms"),
        ({"base_delay_ms": True}, "base_delay_ms"),
        ({"base_delay_ms": 100, "max_delay_ms": 99}, "max_delay_ms"),
        ({"max_delay_ms": float("inf")}, "max_delay_ms"),
        ({"growth": 1}, "growth"),
        ({"shrink": 1}, "shrink"),
        ({"shrink": -0.1}, "shrink"),
    ],
)
def test_delay_refuses_bad_settings(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AdaptiveDelayCalculator(**kwargs)
    assert caught.value.field == field


# -- calculate_optimal_batch_size ---------------------------------------------------------


def test_batch_size_is_the_item_cap_for_valid_items() -> None:
    assert calculate_optimal_batch_size() == 25
    assert calculate_optimal_batch_size([]) == 25
    assert calculate_optimal_batch_size([100] * 1000) == 25
    assert calculate_optimal_batch_size([0, 1, 2]) == 25
    assert calculate_optimal_batch_size(average_item_bytes=100) == 25
    assert calculate_optimal_batch_size(average_item_bytes=0) == 25
    assert calculate_optimal_batch_size(average_item_bytes=5e-324) == 25  # no overflow
    assert calculate_optimal_batch_size([100] * 3, max_items=10) == 10
    # 16 MB holds 40 items at the 400 KB limit: the 25-item cap binds first.
    assert MAX_BATCH_REQUEST_BYTES // MAX_ITEM_BYTES == 40
    assert calculate_optimal_batch_size([MAX_ITEM_BYTES] * 60) == 25
    assert calculate_optimal_batch_size(average_item_bytes=MAX_ITEM_BYTES) == 25


@pytest.mark.parametrize("sizes", [[MAX_ITEM_BYTES + 1], [10, MB, 10], [401 * KB] * 3])
def test_batch_size_refuses_an_item_above_the_item_limit(sizes: list[int]) -> None:
    with pytest.raises(ItemTooLargeError) as caught:
        calculate_optimal_batch_size(sizes)
    assert caught.value.size_bytes == max(sizes)
    assert caught.value.limit_bytes == MAX_ITEM_BYTES
    with pytest.raises(ItemTooLargeError):
        calculate_optimal_batch_size(average_item_bytes=max(sizes))


def test_batch_size_counts_the_largest_items_against_the_request_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A smaller request cap makes the byte bound the binding one.
    monkeypatch.setattr(batching, "MAX_BATCH_REQUEST_BYTES", 1_000_000)
    assert calculate_optimal_batch_size([300_000] * 10) == 3
    assert calculate_optimal_batch_size([10, 300_000, 10, 350_000, 10, 360_000]) == 2
    assert calculate_optimal_batch_size([10, 300_000, 10, 350_000, 10, 340_000]) == 25
    assert calculate_optimal_batch_size(average_item_bytes=300_000) == 3
    assert calculate_optimal_batch_size(average_item_bytes=400_000) == 2
    monkeypatch.setattr(batching, "MAX_BATCH_REQUEST_BYTES", 500_000)
    assert calculate_optimal_batch_size(average_item_bytes=400_000) == 1
    monkeypatch.setattr(batching, "MAX_BATCH_REQUEST_BYTES", 100_000)
    assert calculate_optimal_batch_size([200_000]) == 1  # never 0


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: calculate_optimal_batch_size(max_items=0), "max_items"),
        (lambda: calculate_optimal_batch_size(max_items=26), "max_items"),
        (lambda: calculate_optimal_batch_size(max_items=True), "max_items"),
        (lambda: calculate_optimal_batch_size([1], average_item_bytes=1), "average_item_bytes"),
        (lambda: calculate_optimal_batch_size([10, -1]), "item_sizes"),
        (lambda: calculate_optimal_batch_size(average_item_bytes=-1), "average_item_bytes"),
        (
            lambda: calculate_optimal_batch_size(average_item_bytes=float("nan")),
            "average_item_bytes",
        ),
        (
            lambda: calculate_optimal_batch_size(average_item_bytes=float("inf")),
            "average_item_bytes",
        ),
        (lambda: calculate_optimal_batch_size([float("inf")]), "item_sizes"),  # type: ignore[list-item]
    ],
)
def test_batch_size_refuses_bad_arguments(call: Any, field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        call()
    assert caught.value.field == field


@pytest.mark.parametrize(
    "kwargs",
    [{"batch_size": 0}, {"batch_size": 26}, {"max_retries": -1}, {"retry_delay_ms": -1}],
)
def test_batch_writer_refuses_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        BatchWriter(CacheItem, **kwargs)
    assert isinstance(caught.value, ValueError)  # what callers caught before
    assert caught.value.field == next(iter(kwargs))
