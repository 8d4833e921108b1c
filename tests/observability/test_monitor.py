"""Monitor, correlations, monitor_operation, health checks and sampling, on real stores."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from blinker import NamedSignal

from comic_vine_dynamodb_store import DynamoDBCacheStore
from comic_vine_dynamodb_store.errors import ConfigurationError
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.observability.context import current_correlation_id
from comic_vine_dynamodb_store.observability.monitor import (
    Monitor,
    get_monitor,
    monitor_operation,
    set_monitor,
)

MakeCache = Callable[..., DynamoDBCacheStore[Any]]


@contextmanager
def events(signal: NamedSignal, sender: Any = None) -> Iterator[list[Any]]:
    """The events sent on ``signal`` (by ``sender``, or anyone) while the block runs."""
    seen: list[Any] = []
    lock = threading.Lock()

    def receiver(_sender: Any, event: Any) -> None:
        with lock:
            seen.append(event)

    kwargs = {} if sender is None else {"sender": sender}
    with signal.connected_to(receiver, **kwargs):
        yield seen


@pytest.fixture
def monitor() -> Iterator[Monitor]:
    fresh = Monitor()
    previous = set_monitor(fresh)
    yield fresh
    set_monitor(previous)


# --------------------------------------------------------------------------- metrics


def test_record_metric_sends_the_point_and_keeps_it(monitor: Monitor) -> None:
    with events(signals.metric_recorded, monitor) as sent:
        point = monitor.record_metric(
            "cache_hit_rate", 85, "Percent", dimensions={"Service": "web"}, timestamp=1_000
        )
    assert sent == [point]
    assert (point.name, point.value, point.unit, point.timestamp_ms) == (
        "cache_hit_rate",
        85.0,
        "Percent",
        1_000,
    )
    assert point.dimensions == (("Service", "web"),)
    assert monitor.recent_metrics() == [point]


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (("", 1), {}, "name"),
        (("x" * 256, 1), {}, "name"),
        (("m", math.nan), {}, "value"),
        (("m", math.inf), {}, "value"),
        (("m", True), {}, "value"),
        (("m", 1, "Widgets"), {}, "unit"),
        (("m", 1), {"dimensions": {f"d{i}": i for i in range(31)}}, "dimensions"),
        (("m", 1), {"dimensions": {"": "x"}}, "dimensions"),
    ],
)
def test_bad_metrics_are_refused_and_nothing_is_recorded(
    monitor: Monitor, args: tuple[Any, ...], kwargs: dict[str, Any], field: str
) -> None:
    with events(signals.metric_recorded) as sent, pytest.raises(ConfigurationError) as error:
        monitor.record_metric(*args, **kwargs)
    assert error.value.field == field
    assert sent == []
    assert monitor.recent_metrics() == []


def test_recent_metrics_are_bounded() -> None:
    small = Monitor(max_recent=3)
    for value in range(5):
        small.record_metric("m", value)
    assert [m.value for m in small.recent_metrics()] == [2, 3, 4]


# --------------------------------------------------------------------------- correlations


def test_store_operations_carry_the_correlation_they_ran_in(
    monitor: Monitor, make_cache_store: MakeCache
) -> None:
    store = make_cache_store()
    with (
        events(signals.operation_completed, store) as ops,
        events(signals.correlation_ended, monitor) as ended,
    ):
        store.get("before")
        outer = monitor.start_correlation("api_call", {"endpoint": "/issues", "page": 2})
        store.get("outer")
        inner = monitor.start_correlation("refresh")
        store.get("inner")
        monitor.end_correlation(inner)
        store.get("outer-again")
        monitor.end_correlation(outer, success=False)
        store.get("after")
    assert [(e.key, e.correlation_id) for e in ops] == [
        ("before", None),
        ("outer", outer),
        ("inner", inner),
        ("outer-again", outer),
        ("after", None),
    ]
    assert [(e.correlation_id, e.parent_id, e.success) for e in ended] == [
        (inner, outer, True),
        (outer, None, False),
    ]
    assert ended[1].metadata == (("endpoint", "/issues"), ("page", "2"))
    assert ended[1].duration_ms >= ended[0].duration_ms > 0
    assert monitor.open_correlations() == []
    with pytest.raises(KeyError):
        monitor.end_correlation(outer)


def test_threads_keep_their_own_correlation(monitor: Monitor, make_cache_store: MakeCache) -> None:
    store = make_cache_store()
    barrier = threading.Barrier(4)
    seen: dict[str, list[str | None]] = {}

    def work(name: str) -> None:
        correlation = monitor.start_correlation(name)
        barrier.wait()  # all four are open at once
        with events(signals.operation_completed, store) as ops:
            store.get(name)
        barrier.wait()
        monitor.end_correlation(correlation)
        seen[name] = [correlation, *(e.correlation_id for e in ops if e.key == name)]

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 4
    for ids in seen.values():
        assert ids[0] is not None
        assert ids == [ids[0], ids[0]]
    assert current_correlation_id() is None


def test_asyncio_tasks_keep_their_own_correlation(monitor: Monitor) -> None:
    async def task(name: str, started: asyncio.Event, go: asyncio.Event) -> tuple[str, str | None]:
        async with monitor_operation(name) as correlation:
            started.set()
            await go.wait()  # the other task opens its correlation meanwhile
            return correlation, current_correlation_id()

    async def main() -> list[tuple[str, str | None]]:
        events_ = [(asyncio.Event(), asyncio.Event()) for _ in range(2)]
        tasks = [
            asyncio.create_task(task(f"a{i}", started, go))
            for i, (started, go) in enumerate(events_)
        ]
        for started, _ in events_:
            await started.wait()
        for _, go in events_:
            go.set()
        return list(await asyncio.gather(*tasks))

    results = asyncio.run(main())
    assert [own for own, _ in results] == [current for _, current in results]
    assert len({own for own, _ in results}) == 2
    assert monitor.open_correlations() == []


# --------------------------------------------------------------------------- monitor_operation


def test_monitor_operation_as_decorator_context_manager_and_call(monitor: Monitor) -> None:
    @monitor_operation("decorated", metadata={"kind": "sync"})
    def double(x: int) -> int:
        assert current_correlation_id() is not None
        return 2 * x

    @monitor_operation("decorated-async")
    async def triple(x: int) -> int:
        assert current_correlation_id() is not None
        await asyncio.sleep(0)
        return 3 * x

    async def async_block() -> None:
        async with monitor_operation("async-block"):
            await asyncio.sleep(0)

    with events(signals.correlation_ended, monitor) as ended:
        assert double(2) == 4
        assert asyncio.run(triple(2)) == 6
        with monitor_operation("block") as correlation:
            assert current_correlation_id() == correlation
        asyncio.run(async_block())
        assert monitor_operation("call", lambda: "value", {"user": "123"}) == "value"

        async def fetch() -> str:
            return "async value"

        assert asyncio.run(monitor_operation("async-call", fetch)) == "async value"
    assert [(e.operation, e.success) for e in ended] == [
        ("decorated", True),
        ("decorated-async", True),
        ("block", True),
        ("async-block", True),
        ("call", True),
        ("async-call", True),
    ]
    assert ended[0].metadata == (("kind", "sync"),)
    assert ended[4].metadata == (("user", "123"),)
    assert current_correlation_id() is None


def test_a_failing_operation_is_recorded_as_failed_and_still_raises(monitor: Monitor) -> None:
    @monitor_operation("fails")
    def fails() -> None:
        raise LookupError("nope")

    async def fails_async() -> None:
        raise LookupError("nope async")

    with events(signals.correlation_ended, monitor) as ended:
        with pytest.raises(LookupError):
            fails()
        with pytest.raises(LookupError), monitor_operation("block"):
            raise LookupError("in block")
        with pytest.raises(LookupError):
            asyncio.run(monitor_operation("async", fails_async))
    assert [(e.operation, e.success, type(e.error)) for e in ended] == [
        ("fails", False, LookupError),
        ("block", False, LookupError),
        ("async", False, LookupError),
    ]
    assert monitor.open_correlations() == []


def test_get_monitor_is_the_default_and_set_monitor_replaces_it() -> None:
    first = get_monitor()
    assert get_monitor() is first
    other = Monitor()
    assert set_monitor(other) is first
    try:
        with events(signals.correlation_ended, other) as ended:
            monitor_operation("on-default", lambda: None)
        assert [e.operation for e in ended] == ["on-default"]
    finally:
        set_monitor(first)
    with pytest.raises(ConfigurationError):
        set_monitor("monitor")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- health checks


def test_a_health_check_is_a_real_round_trip(make_cache_store: MakeCache) -> None:
    store = make_cache_store()
    monitor = Monitor(store)
    with (
        events(signals.operation_completed, store) as ops,
        events(signals.health_checked, store) as checked,
    ):
        result = monitor.perform_health_check()
    assert result.success
    assert result.healthy
    assert result.latency_ms > 0
    assert [(e.operation, e.requests) for e in ops] == [("health_check", 1)]
    assert [(e.healthy, e.store) for e in checked] == [(True, "cache")]
    store.close()
    closed = monitor.perform_health_check(store)
    assert not closed.healthy
    assert closed.error is not None
    assert "StoreClosedError" in closed.error
    with pytest.raises(ConfigurationError):
        Monitor().perform_health_check()


def test_an_unreachable_table_is_unhealthy(make_cache_store: MakeCache) -> None:
    store = make_cache_store(
        endpoint="http://127.0.0.1:9", max_retries=0, circuit_breaker={"timeout_ms": 2000}
    )
    with events(signals.health_checked, store) as checked:
        result = Monitor(store).perform_health_check()
    assert not result.healthy
    assert result.error is not None
    assert [e.healthy for e in checked] == [False]
    assert checked[0].error is not None


def test_periodic_health_checks_run_until_the_store_closes(make_cache_store: MakeCache) -> None:
    ready = threading.Event()
    seen: list[signals.HealthEvent] = []

    def receiver(_sender: Any, event: signals.HealthEvent) -> None:
        seen.append(event)
        if len(seen) >= 3:
            ready.set()

    with signals.health_checked.connected_to(receiver):
        store = make_cache_store(monitoring={"health_checks": {"enabled": True, "interval_ms": 20}})
        assert [task._thread.name for task in store._background] == ["cache-health-check"]
        assert ready.wait(10), f"only {len(seen)} health checks"
        store.close()
        count = len(seen)
        stopped = threading.Event()
        stopped.wait(0.2)  # ten intervals: a thread left running would check again
        assert len(seen) == count
    assert all(event.healthy for event in seen)
    quiet = make_cache_store()  # health checks are off by default
    assert quiet._background == []


# --------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(("rate", "low", "high"), [(0.0, 0, 0), (0.5, 140, 260), (1.0, 400, 400)])
def test_sampling_rate_is_the_share_of_operations_reported(
    make_cache_store: MakeCache, rate: float, low: int, high: int
) -> None:
    # 400 draws at 0.5: 200 expected, 10 standard deviations; the bounds are six of them.
    store = make_cache_store(monitoring={"performance": {"sampling_rate": rate}})
    with (
        events(signals.operation_completed, store) as ops,
        events(signals.cache_miss, store) as misses,
    ):
        for i in range(400):
            store.get(f"k{i}")
    assert low <= len(ops) <= high
    assert len(misses) == 400  # domain signals are never sampled


def test_performance_disabled_reports_no_operations(make_cache_store: MakeCache) -> None:
    store = make_cache_store(monitoring={"performance": {"enabled": False}})
    with events(signals.operation_completed, store) as ops:
        store.get("k")
        store.set("k", 1, 60)
    assert ops == []
