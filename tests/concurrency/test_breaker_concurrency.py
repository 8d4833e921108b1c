"""The circuit breaker under threads and processes.

Threads: many callers hit one breaker (directly, and through a ``DynamoDBCacheStore`` on DynamoDB
Local with faults injected below the retry layer). An open breaker whose recovery timeout has
passed lets exactly one probe through, whatever the number of callers racing for it; failures
are counted exactly, never skipped nor counted twice; every transition is signalled exactly
once, in the order it happened.

Processes: the breaker belongs to a store instance, so to a process. Worker processes (the
``fleet`` harness) each build their own store on one table; DynamoDB fails for one of them
only, and only that one's breaker opens while the others keep serving.

Time is a fake clock moved by the test; no test sleeps to make time pass. Every wait on another
thread is bounded.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier as ProcessBarrier
from typing import Any

import pytest

from comic_vine_dynamodb_store import (
    BreakerState,
    CircuitBreakerOpenError,
    DynamoDBCacheStore,
    StoreUnavailableError,
)
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.resilience.breaker import CircuitBreaker
from tests.concurrency import fleet as harness
from tests.concurrency.fleet import REGION, Outbox, WorkerSpec
from tests.faults.conftest import Fault, Injector, server_error
from tests.support import FakeClock

THREADS = 16
ROUNDS = 20
WAIT_S = 10.0
"""Bound on every wait for another thread; reached only when something is broken."""

Transition = tuple[str, str]


# --------------------------------------------------------------------------- helpers


def transitions(events: Sequence[signals.CircuitEvent]) -> list[Transition]:
    return [(event.previous, event.state) for event in events]


def transitions_of(seen: Sequence[tuple[str, str, int]]) -> list[Transition]:
    return [(previous, state) for previous, state, _ in seen]


@contextlib.contextmanager
def injected(store: DynamoDBCacheStore[Any]) -> Iterator[Injector]:
    """An :class:`Injector` on the store's botocore client (every request passes through it)."""
    client: Any = store._model(store.item_model)._get_connection().connection.client
    injector = Injector()
    client.meta.events.register("before-send.dynamodb", injector)
    try:
        yield injector
    finally:
        client.meta.events.unregister("before-send.dynamodb", injector)


@contextlib.contextmanager
def recorded_signals(
    store: object,
) -> Iterator[tuple[list[signals.CircuitEvent], list[signals.OperationEvent]]]:
    """The store's ``circuit_state_changed`` and ``operation_completed`` events, as sent."""
    changes: list[signals.CircuitEvent] = []
    operations: list[signals.OperationEvent] = []
    lock = threading.Lock()

    def on_change(sender: object, event: signals.CircuitEvent) -> None:
        with lock:
            changes.append(event)

    def on_operation(sender: object, event: signals.OperationEvent) -> None:
        with lock:
            operations.append(event)

    with (
        signals.circuit_state_changed.connected_to(on_change, sender=store),
        signals.operation_completed.connected_to(on_operation, sender=store),
    ):
        yield changes, operations


@dataclass
class Outcome:
    """What one racing call ended with: its value, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None

    @property
    def refused(self) -> bool:
        return isinstance(self.error, CircuitBreakerOpenError)


def race(pool: ThreadPoolExecutor, parties: int, call: Callable[[], Any]) -> list[Outcome]:
    """``call`` in ``parties`` threads released together by a barrier; every outcome."""
    barrier = threading.Barrier(parties)

    def one() -> Outcome:
        barrier.wait(WAIT_S)
        try:
            return Outcome(value=call())
        except Exception as exc:
            return Outcome(error=exc)

    with fine_thread_switching():
        futures = [pool.submit(one) for _ in range(parties)]
        return [future.result(WAIT_S) for future in futures]


@dataclass
class HeldProbe:
    """A fault that holds the request it answers until released, then answers with
    ``verdict`` (None: the request goes on to DynamoDB).

    Holding the probe's request keeps it in flight while every other racer calls, so each of
    them meets a half-open breaker; the test releases it once all of them were refused.
    """

    verdict: Fault | None
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def __call__(self, request: Any) -> Any:
        self.entered.set()
        self.release.wait(WAIT_S)
        return self.verdict(request) if self.verdict is not None else None


class Refusals:
    """Counts calls refused by the breaker, and lets the test wait for a number of them."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def wrap(self, call: Callable[[], Any]) -> Callable[[], Any]:
        def counted() -> Any:
            try:
                return call()
            except CircuitBreakerOpenError:
                with self._changed:
                    self._count += 1
                    self._changed.notify_all()
                raise

        return counted

    def wait_for(self, count: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count >= count, WAIT_S)


class SharedClock:
    """A fake clock several threads move: ``advance`` is atomic, so time never goes back."""

    def __init__(self, start_ms: int) -> None:
        self.now_ms = start_ms
        self._lock = threading.Lock()

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        with self._lock:
            self.now_ms += ms


@contextlib.contextmanager
def fine_thread_switching() -> Iterator[None]:
    """Switch threads far more often than the interpreter's 5 ms default: more interleavings."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def make_breaker(
    clock: Callable[[], int],
    *,
    threshold: int,
    recovery_ms: int,
    seen: list[tuple[str, str, int]] | None = None,
) -> CircuitBreaker:
    lock = threading.Lock()

    def on_change(previous: BreakerState, state: BreakerState, failures: int) -> None:
        if seen is not None:
            with lock:
                seen.append((previous.value, state.value, failures))

    return CircuitBreaker(
        failure_threshold=threshold,
        recovery_timeout_ms=recovery_ms,
        clock=clock,
        on_state_change=on_change,
    )


# --------------------------------------------------------------------------- one probe


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="racer") as executor:
        yield executor


def test_sixteen_threads_on_a_recovered_breaker_get_exactly_one_probe_round_after_round(
    pool: ThreadPoolExecutor,
) -> None:
    clock = FakeClock(start_ms=1_000_000)
    seen: list[tuple[str, str, int]] = []
    breaker = make_breaker(clock, threshold=3, recovery_ms=500, seen=seen)
    verdicts = random.Random(20).choices([True, False], k=ROUNDS)
    assert set(verdicts) == {True, False}  # probes that close it, and probes that fail
    expected: list[Transition] = []
    for round_, succeeds in enumerate(verdicts):
        if breaker.status().state is BreakerState.CLOSED:
            for _ in range(3):
                breaker.record_failure(breaker.before_call())
            expected.append(("closed", "open"))
        assert breaker.status().state is BreakerState.OPEN
        clock.advance(499)
        refused = race(pool, THREADS, breaker.before_call)
        assert all(outcome.refused for outcome in refused), f"round {round_}: admitted early"
        clock.advance(1)

        outcomes = race(pool, THREADS, breaker.before_call)

        probes = [outcome for outcome in outcomes if outcome.value is True]
        assert len(probes) == 1, f"round {round_}: {len(probes)} probes"
        assert sum(outcome.refused for outcome in outcomes) == THREADS - 1
        assert breaker.status().state is BreakerState.HALF_OPEN
        expected.append(("open", "half_open"))
        if succeeds:
            breaker.record_success(True)
            expected.append(("half_open", "closed"))
            assert breaker.status().state is BreakerState.CLOSED
            assert breaker.before_call() is False  # closed: everyone goes, nobody probes
        else:
            breaker.record_failure(True)
            expected.append(("half_open", "open"))
            status = breaker.status()
            assert status.state is BreakerState.OPEN
            assert status.next_probe_at_ms == clock.now_ms + 500
    assert transitions_of(seen) == expected


def test_sixteen_threads_on_a_recovered_store_send_exactly_one_probe_request(
    make_dynamodb_store: Callable[..., Any], clock: FakeClock, pool: ThreadPoolExecutor
) -> None:
    recovery_ms, threshold = 1000, 3
    store: DynamoDBCacheStore[Any] = make_dynamodb_store(
        DynamoDBCacheStore,
        max_retries=0,
        circuit_breaker={"failure_threshold": threshold, "recovery_timeout_ms": recovery_ms},
    )
    store.set("probe-key", {"live": True}, 0)
    verdicts = random.Random(16).choices([True, False], k=ROUNDS)
    assert set(verdicts) == {True, False}  # probes that close it, and probes that fail
    with injected(store) as injector, recorded_signals(store) as (changes, operations):
        expected: list[Transition] = []
        for round_, succeeds in enumerate(verdicts):
            if store.get_circuit_breaker_status().state is BreakerState.CLOSED:
                injector.default = server_error
                for _ in range(threshold):
                    with pytest.raises(StoreUnavailableError):
                        store.get("probe-key")
                expected.append(("closed", "open"))
            assert store.get_circuit_breaker_status().state is BreakerState.OPEN
            clock.advance(recovery_ms)
            held = HeldProbe(None if succeeds else server_error)
            injector.default = held
            refusals = Refusals()
            sent_before, operations_before = len(injector.sent), len(operations)

            barrier = threading.Barrier(THREADS)
            call = refusals.wrap(lambda: store.get("probe-key"))

            def one(barrier: threading.Barrier = barrier, call: Any = call) -> Outcome:
                barrier.wait(WAIT_S)
                try:
                    return Outcome(value=call())
                except Exception as exc:
                    return Outcome(error=exc)

            futures = [pool.submit(one) for _ in range(THREADS)]
            # The probe is held in flight until every other racer has been refused.
            refused_all = refusals.wait_for(THREADS - 1)
            probe_sent = held.entered.wait(WAIT_S)
            held.release.set()
            outcomes = [future.result(WAIT_S) for future in futures]
            assert refused_all, f"round {round_}: not every other racer was refused"
            assert probe_sent, f"round {round_}: the probe never reached DynamoDB"

            admitted = [outcome for outcome in outcomes if not outcome.refused]
            assert len(admitted) == 1, f"round {round_}: {len(admitted)} calls admitted"
            assert len(injector.sent) - sent_before == 1, (
                f"round {round_}: {injector.sent[sent_before:]} sent"
            )
            round_operations = operations[operations_before:]
            rejected = [op for op in round_operations if op.outcome == "rejected"]
            assert len(rejected) == THREADS - 1
            assert all(op.requests == 0 for op in rejected)
            expected.append(("open", "half_open"))
            status = store.get_circuit_breaker_status()
            if succeeds:
                assert admitted[0].value == {"live": True}
                assert status.state is BreakerState.CLOSED
                expected.append(("half_open", "closed"))
            else:
                assert isinstance(admitted[0].error, StoreUnavailableError)
                assert status.state is BreakerState.OPEN
                assert status.next_probe_at_ms == clock.now_ms + recovery_ms
                expected.append(("half_open", "open"))
        assert transitions(changes) == expected


# --------------------------------------------------------------------------- exact counts


def test_failures_from_many_threads_are_counted_exactly_and_open_at_the_threshold(
    pool: ThreadPoolExecutor,
) -> None:
    clock = FakeClock(start_ms=1_000_000)
    seen: list[tuple[str, str, int]] = []
    breaker = make_breaker(clock, threshold=50, recovery_ms=1000, seen=seen)

    def fail_times(times: int) -> Callable[[], None]:
        def call() -> None:
            for _ in range(times):
                breaker.record_failure(breaker.before_call())

        return call

    race(pool, 8, fail_times(5))
    status = breaker.status()
    assert (status.state, status.failure_count) == (BreakerState.CLOSED, 40)
    breaker.record_success(breaker.before_call())  # a success resets the count
    assert breaker.status().failure_count == 0
    race(pool, 7, fail_times(7))
    status = breaker.status()
    assert (status.state, status.failure_count) == (BreakerState.CLOSED, 49)
    assert seen == []

    race(pool, 1, fail_times(1))
    status = breaker.status()
    assert (status.state, status.failure_count) == (BreakerState.OPEN, 50)
    assert seen == [("closed", "open", 50)]

    # Open: every caller is refused and nothing more is counted.
    assert all(outcome.refused for outcome in race(pool, THREADS, fail_times(3)))
    assert breaker.status().failure_count == 50

    clock.advance(1000)
    outcomes = race(pool, THREADS, breaker.before_call)
    assert [outcome.value for outcome in outcomes].count(True) == 1
    breaker.record_failure(True)
    clock.advance(1000)
    outcomes = race(pool, THREADS, breaker.before_call)
    assert [outcome.value for outcome in outcomes].count(True) == 1
    breaker.record_success(True)
    assert seen == [
        ("closed", "open", 50),
        ("open", "half_open", 50),
        ("half_open", "open", 51),
        ("open", "half_open", 51),
        ("half_open", "closed", 0),
    ]


def test_store_failures_from_many_threads_are_counted_once_per_operation(
    make_dynamodb_store: Callable[..., Any], pool: ThreadPoolExecutor
) -> None:
    store: DynamoDBCacheStore[Any] = make_dynamodb_store(
        DynamoDBCacheStore,
        max_retries=1,
        retry_delay_ms=1,
        circuit_breaker={"failure_threshold": 50, "recovery_timeout_ms": 60_000},
    )
    store.get("warm-up")  # the client is built before the race

    def get_times(times: int) -> Callable[[], list[str]]:
        def call() -> list[str]:
            kinds = []
            for _ in range(times):
                try:
                    store.get("k")
                    kinds.append("ok")
                except CircuitBreakerOpenError:
                    kinds.append("refused")
                except StoreUnavailableError:
                    kinds.append("unavailable")
            return kinds

        return call

    with injected(store) as injector, recorded_signals(store) as (changes, operations):
        injector.default = server_error
        results = race(pool, 8, get_times(5))
        assert all(outcome.value == ["unavailable"] * 5 for outcome in results)
        status = store.get_circuit_breaker_status()
        assert (status.state, status.failure_count) == (BreakerState.CLOSED, 40)
        # One failure per operation, however many of its requests were retried (botocore's
        # retry quota decides how many retries it gets).
        assert 40 <= len(injector.sent) <= 80
        assert changes == []

        results = race(pool, 10, get_times(1))
        assert all(outcome.value == ["unavailable"] for outcome in results)
        status = store.get_circuit_breaker_status()
        assert (status.state, status.failure_count) == (BreakerState.OPEN, 50)
        assert [(e.previous, e.state, e.failure_count) for e in changes] == [("closed", "open", 50)]
        sent = len(injector.sent)

        results = race(pool, THREADS, get_times(2))
        assert all(outcome.value == ["refused"] * 2 for outcome in results)
        assert len(injector.sent) == sent  # refused before any request
        assert store.get_circuit_breaker_status().failure_count == 50
    errors = [op for op in operations if op.outcome == "error"]
    assert len(errors) == 50
    assert sum(op.requests for op in errors) == sent
    assert [op.outcome for op in operations].count("rejected") == 2 * THREADS
    assert len(changes) == 1


def test_each_transition_is_signalled_once_under_random_contention() -> None:
    """16 threads call, succeed, fail and move the clock at random: the signals count every
    transition exactly once (the order they arrive in is the next test's subject)."""
    clock = SharedClock(1_000_000)
    seen: list[tuple[str, str, int]] = []
    breaker = make_breaker(clock, threshold=3, recovery_ms=5, seen=seen)
    probes = Counter[str]()
    lock = threading.Lock()

    start = threading.Barrier(THREADS)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait(WAIT_S)
        for _ in range(400):
            if rng.random() < 0.15:
                clock.advance(1)
            time.sleep(0)  # let another thread in between any two steps
            try:
                probe = breaker.before_call()
            except CircuitBreakerOpenError:
                continue
            time.sleep(0)
            succeeds = rng.random() < 0.3
            if succeeds:
                breaker.record_success(probe)
            else:
                breaker.record_failure(probe)
            if probe:
                with lock:
                    probes["admitted"] += 1
                    probes["succeeded" if succeeds else "failed"] += 1

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(THREADS)]
    with fine_thread_switching():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT_S * 3)
    assert not any(thread.is_alive() for thread in threads)

    count = Counter(transitions_of(seen))
    final = breaker.status().state
    assert probes["admitted"] >= 10, f"too few probes to tell anything: {dict(probes)}"
    assert set(count) <= {
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("half_open", "open"),
    }
    assert count[("open", "half_open")] == probes["admitted"]
    assert count[("half_open", "closed")] == probes["succeeded"]
    assert count[("half_open", "open")] == probes["failed"]
    assert count[("closed", "open")] == probes["succeeded"] + (
        0 if final is BreakerState.CLOSED else 1
    )
    assert all(failures >= 3 for p, s, failures in seen if (p, s) == ("closed", "open"))


def test_state_changes_reach_receivers_in_the_order_they_happened_when_one_is_slow(
    make_dynamodb_store: Callable[..., Any], clock: FakeClock
) -> None:
    """A receiver still handling "half_open -> closed" when another thread opens the breaker
    again must not get "closed -> open" first: a gauge fed by the signals would show the
    breaker closed while it is open."""
    store: DynamoDBCacheStore[Any] = make_dynamodb_store(
        DynamoDBCacheStore,
        max_retries=0,
        circuit_breaker={"failure_threshold": 1, "recovery_timeout_ms": 1000},
    )
    store.get("warm-up")
    received: list[Transition] = []
    slow_entered, slow_release = threading.Event(), threading.Event()

    def on_change(sender: object, event: signals.CircuitEvent) -> None:
        if (event.previous, event.state) == ("half_open", "closed"):
            slow_entered.set()
            slow_release.wait(WAIT_S)
        received.append((event.previous, event.state))

    def get_quietly() -> None:
        with contextlib.suppress(StoreUnavailableError):
            store.get("k")

    with (
        injected(store) as injector,
        signals.circuit_state_changed.connected_to(on_change, sender=store),
    ):
        injector.default = server_error
        get_quietly()
        assert store.get_circuit_breaker_status().state is BreakerState.OPEN
        clock.advance(1000)
        injector.default = None
        probe = threading.Thread(target=get_quietly)  # the probe succeeds: closed
        probe.start()
        try:
            assert slow_entered.wait(WAIT_S)
            injector.default = server_error
            reopener = threading.Thread(target=get_quietly)  # fails at once: open again
            reopener.start()
            reopener.join(0.5)  # returns at once unless it waits for the slow receiver
        finally:
            slow_release.set()
            probe.join(WAIT_S)
        reopener.join(WAIT_S)
    assert store.get_circuit_breaker_status().state is BreakerState.OPEN
    assert received == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("closed", "open"),
    ]


# --------------------------------------------------------------------------- processes


class BreakerWorker:
    """A worker process's store; DynamoDB fails for it only after ``break_dynamodb``."""

    def __init__(self, index: int, store: DynamoDBCacheStore[Any]) -> None:
        self.index = index
        self.store = store
        self.sent = 0
        self.failing = False
        client: Any = store._model(store.item_model)._get_connection().connection.client
        client.meta.events.register("before-send.dynamodb", self._before_send)

    def _before_send(self, request: Any, **_: Any) -> Any:
        self.sent += 1
        return server_error(request) if self.failing else None

    def break_dynamodb(self) -> None:
        self.failing = True

    def get_many(self, key: str, times: int) -> list[str]:
        kinds = []
        for _ in range(times):
            try:
                self.store.get(key)
                kinds.append("ok")
            except CircuitBreakerOpenError:
                kinds.append("refused")
            except StoreUnavailableError:
                kinds.append("unavailable")
        return kinds

    def write(self, key: str, value: Any) -> None:
        self.store.set(key, value, 0)

    def read(self, key: str) -> Any:
        return self.store.get(key)

    def status(self) -> dict[str, Any]:
        status = self.store.get_circuit_breaker_status()
        return {
            "pid": os.getpid(),
            "state": status.state.value,
            "failures": status.failure_count,
            "sent": self.sent,
        }


def make_worker(spec: WorkerSpec, barrier: ProcessBarrier | None, outbox: Outbox) -> BreakerWorker:
    """A worker's own store on the shared table; its first request made."""
    store: DynamoDBCacheStore[Any] = DynamoDBCacheStore(
        table_name=spec.table,
        endpoint=spec.endpoint,
        region=REGION,
        cleanup_interval_ms=0,
        max_retries=0,
        circuit_breaker={"failure_threshold": 3, "recovery_timeout_ms": 600_000},
        **spec.options,
    )
    worker = BreakerWorker(spec.index, store)
    store.get(f"warm-up-{spec.index}")
    return worker


def test_failures_in_one_process_open_only_that_process_breaker(
    endpoint: str, table_name: str
) -> None:
    with harness.fleet_of(make_worker, endpoint, table_name, [{}] * 3, name="breaker") as fleet:
        assert len(set(fleet.pids)) == 3
        fleet.call(0, "break_dynamodb")
        outcomes = fleet.call_all([0, 1, 2], "get_many", "shared", 6)
        assert outcomes[0] == ["unavailable"] * 3 + ["refused"] * 3
        assert outcomes[1] == outcomes[2] == ["ok"] * 6

        # The healthy processes keep serving each other through the table.
        fleet.call(1, "write", "shared", {"written_by": 1})
        assert fleet.call(2, "read", "shared") == {"written_by": 1}
        assert fleet.call(0, "get_many", "shared", 2) == ["refused"] * 2

        statuses = fleet.call_all([0, 1, 2], "status")
    assert [s["pid"] for s in statuses] == fleet.pids
    assert (statuses[0]["state"], statuses[0]["failures"]) == ("open", 3)
    assert statuses[0]["sent"] == 1 + 3  # warm-up, then the three failures; refusals send nothing
    for status in statuses[1:]:
        assert (status["state"], status["failures"]) == ("closed", 0)
    assert statuses[1]["sent"] == 1 + 6 + 1  # warm-up, six reads, the write
    assert statuses[2]["sent"] == 1 + 6 + 1  # warm-up, six reads, reading the write
