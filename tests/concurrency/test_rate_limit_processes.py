"""``DynamoDBRateLimitStore`` across real processes, all on one DynamoDB Local table.

Each test starts its worker processes once ("spawn": every worker is a fresh interpreter with
its own botocore client and its own ``DynamoDBRateLimitStore``), then sends each one command:
hammer a resource with ``acquire`` from several threads for a fixed time. Every thread of every
worker waits on one shared barrier, so all of them start together.

Each thread records every admission as an interval: wall-clock epoch milliseconds (the store's
own clock) just before the call and just after it returned. The store admits at some instant
inside that interval, so a set of admissions whose intervals all fit in less than one window
(``max(returned) - min(started) < window``) certainly happened within one window: more than
``limit`` of them is a real over-admission, whatever the network did.

After a refusal a thread sleeps ``REFUSAL_PAUSE_S``: the store refuses from the counts it already
knows without a request while the window is full, and the pause keeps 32 spinning threads from
starving the two CPUs DynamoDB Local also needs.

The harness (worker processes, queues, timeouts, cleanup) is ``fleet``'s. Every wait is bounded
(queue reads, barrier waits, thread joins); whatever happens, the workers are stopped, then
killed, when the test ends. A worker whose parent disappears exits on its own after
``IDLE_EXIT_S`` without a command. Like ``test_dedupe_processes``, this module does not import
pytest, so each spawned worker imports less.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from typing import Any

import botocore.session

from comic_vine_dynamodb_store.models import RateLimitEvent
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore
from tests.concurrency import fleet as harness
from tests.concurrency.fleet import (
    BARRIER_TIMEOUT_S,
    REGION,
    Fleet,
    Outbox,
    WorkerSpec,
    now_ms,
)

REPLY_MARGIN_S = 60.0  # beyond the hammering time, for a reply to arrive
JOIN_MARGIN_S = 30.0
REFUSAL_PAUSE_S = 0.003


# --------------------------------------------------------------------------- worker side


@dataclass(frozen=True, slots=True)
class Admission:
    """One ``acquire`` that returned True: who made it, and when it started and returned."""

    worker: int
    thread: int
    resource: str
    started_ms: int
    returned_ms: int


@dataclass(frozen=True, slots=True)
class ThreadReport:
    """What one hammering thread did."""

    worker: int
    thread: int
    resource: str
    first_started_ms: int | None
    calls: int
    refusals: int
    admissions: tuple[Admission, ...]
    error: str | None


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """What one worker's threads did, and the DynamoDB requests its store sent meanwhile."""

    worker: int
    threads: tuple[ThreadReport, ...]
    requests: int


class _Worker:
    """What a worker process does on command; every public method is a command."""

    def __init__(self, index: int, store: DynamoDBRateLimitStore, barrier: Barrier) -> None:
        self.index = index
        self.store = store
        self.barrier = barrier
        self.requests = 0
        self._requests_lock = threading.Lock()
        signals.operation_completed.connect(self._count, sender=store, weak=False)

    def _count(self, sender: object, event: signals.OperationEvent) -> None:
        with self._requests_lock:
            self.requests += event.requests

    def _hammer_one(
        self, thread: int, resource: str, duration_ms: int, out: list[ThreadReport]
    ) -> None:
        admissions: list[Admission] = []
        calls = refusals = 0
        first: int | None = None
        error: str | None = None
        try:
            self.barrier.wait(BARRIER_TIMEOUT_S)
            stop_at = now_ms() + duration_ms
            while True:
                started = now_ms()
                if started >= stop_at:
                    break
                if first is None:
                    first = started
                admitted = self.store.acquire(resource)
                returned = now_ms()
                calls += 1
                if admitted:
                    admissions.append(Admission(self.index, thread, resource, started, returned))
                else:
                    refusals += 1
                    time.sleep(REFUSAL_PAUSE_S)
        except Exception:
            error = traceback.format_exc()
        out.append(
            ThreadReport(
                self.index, thread, resource, first, calls, refusals, tuple(admissions), error
            )
        )

    def hammer(self, resources: Sequence[str], threads: int, duration_ms: int) -> WorkerReport:
        """``threads`` threads (thread ``t`` on ``resources[t % len]``), released by the
        barrier, each calling ``acquire`` in a loop for ``duration_ms``."""
        with self._requests_lock:
            self.requests = 0
        reports: list[ThreadReport] = []
        running = [
            threading.Thread(
                target=self._hammer_one,
                args=(t, resources[t % len(resources)], duration_ms, reports),
                name=f"hammer-{self.index}-{t}",
                daemon=True,
            )
            for t in range(threads)
        ]
        for thread in running:
            thread.start()
        deadline = time.monotonic() + BARRIER_TIMEOUT_S + duration_ms / 1000 + JOIN_MARGIN_S
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [thread.name for thread in running if thread.is_alive()]
        if stuck:
            raise RuntimeError(f"threads still running after the deadline: {stuck}")
        with self._requests_lock:
            requests = self.requests
        return WorkerReport(
            self.index, tuple(sorted(reports, key=lambda r: r.thread)), requests=requests
        )


def make_worker(spec: WorkerSpec, barrier: Barrier | None, outbox: Outbox) -> _Worker:
    """A worker's store, its first request made (the client built before any race)."""
    if barrier is None:
        raise RuntimeError("rate-limit workers hammer together: start them with a barrier")
    store = DynamoDBRateLimitStore(
        table_name=spec.table, endpoint=spec.endpoint, region=REGION, **spec.options
    )
    store.can_proceed(f"warm-up-{spec.index}")  # build the client before any race
    return _Worker(spec.index, store, barrier)


# --------------------------------------------------------------------------- parent side


def fleet_of(
    endpoint: str, table: str, options: Sequence[dict[str, Any]], *, barrier_parties: int
) -> contextlib.AbstractContextManager[Fleet]:
    """Started rate-limit workers, stopped (or killed) on the way out whatever happened."""
    return harness.fleet_of(
        make_worker,
        endpoint,
        table,
        options,
        barrier_parties=barrier_parties,
        name="rate-limit-worker",
    )


def hammer_all(
    fleet: Fleet, resources: Sequence[str], threads: int, duration_ms: int
) -> list[WorkerReport]:
    """Every worker hammers at once (released by the barrier); their reports."""
    for worker in range(len(fleet)):
        fleet.send(worker, "hammer", list(resources), threads, duration_ms)
    deadline = time.monotonic() + BARRIER_TIMEOUT_S + duration_ms / 1000 + REPLY_MARGIN_S
    return [
        fleet.result(worker, timeout=max(1.0, deadline - time.monotonic()))
        for worker in range(len(fleet))
    ]


def thread_reports(reports: Sequence[WorkerReport]) -> list[ThreadReport]:
    """Every thread's report; fails the test with the tracebacks of threads that raised."""
    threads = [t for report in reports for t in report.threads]
    errors = [f"worker {t.worker} thread {t.thread}:\n{t.error}" for t in threads if t.error]
    assert not errors, "\n".join(errors)
    return threads


def most_in_one_window(
    admissions: Sequence[Admission], window_ms: int
) -> tuple[int, list[Admission]]:
    """The largest set of admissions certainly inside one window, and its size.

    A set is certainly inside one window when ``max(returned) - min(started) < window_ms``.
    For each admission taken as the earliest start, the largest such set is every admission
    starting no earlier and returning before that start plus the window.
    """
    best: list[Admission] = []
    for first in admissions:
        group = [
            a
            for a in admissions
            if a.started_ms >= first.started_ms and a.returned_ms - first.started_ms < window_ms
        ]
        if len(group) > len(best):
            best = group
    return len(best), best


def describe(admissions: Sequence[Admission], origin_ms: int) -> str:
    return "\n".join(
        f"  worker {a.worker} thread {a.thread} {a.resource}: "
        f"[{a.started_ms - origin_ms:+d}, {a.returned_ms - origin_ms:+d}] ms"
        for a in sorted(admissions, key=lambda a: (a.started_ms, a.returned_ms))
    )


def raw_window_total(endpoint: str, table: str, resource: str) -> int:
    """Every admission the resource's window item holds (current slice plus history)."""
    client: Any = botocore.session.get_session().create_client(
        "dynamodb", region_name=REGION, endpoint_url=endpoint
    )
    try:
        pk, sk = RateLimitEvent.key_of("", resource)
        item = client.get_item(
            TableName=table, Key={"PK": {"S": pk}, "SK": {"S": sk}}, ConsistentRead=True
        )["Item"]
    finally:
        client.close()
    return sum(int(count["N"]) for count in item["Counts"]["L"])


# --------------------------------------------------------------------------- tests


def test_8_processes_of_4_threads_never_admit_more_than_the_limit_in_any_window(
    endpoint: str, table_name: str
) -> None:
    processes, threads, limit, window_ms, run_ms = 8, 4, 40, 5000, 15_000
    resource = "comicvine-api"
    options = [{"default_config": {"limit": limit, "window_ms": window_ms}}] * processes
    with fleet_of(endpoint, table_name, options, barrier_parties=processes * threads) as fleet:
        reports = hammer_all(fleet, [resource], threads, run_ms)

    per_thread = thread_reports(reports)
    admissions = sorted(
        (a for t in per_thread for a in t.admissions), key=lambda a: (a.started_ms, a.returned_ms)
    )
    origin = min(t.first_started_ms for t in per_thread if t.first_started_ms is not None)
    calls = sum(t.calls for t in per_thread)
    requests = sum(r.requests for r in reports)
    summary = (
        f"{len(admissions)} admitted, {calls - len(admissions)} refused, {calls} calls, "
        f"{requests} DynamoDB requests"
    )

    # Never more than the limit within one window: the worst set of admissions that all
    # certainly happened within less than window_ms of each other.
    worst, group = most_in_one_window(admissions, window_ms)
    assert worst <= limit, (
        f"{worst} admissions within one {window_ms} ms window ({summary}):\n"
        f"{describe(group, origin)}"
    )

    # The first window. Every call started at or after `origin`, and an admission stays
    # counted for at least window_ms, so nothing leaves the count before origin + window_ms:
    # the calls that returned before then saw one window in which nothing had left. The
    # limiter may admit no more than the limit there (the check above covers it) and, with
    # 32 threads asking all along, must not admit fewer: exactly `limit` of them.
    first_window = [a for a in admissions if a.returned_ms < origin + window_ms]
    assert len(first_window) == limit, (
        f"{len(first_window)} admissions returned within the first {window_ms} ms "
        f"({summary}):\n{describe(first_window, origin)}"
    )

    # Admissions are spread over the run: the window frees and fills again, so every
    # window_ms period has some and the run as a whole well over one window's worth.
    periods = [
        sum(1 for a in admissions if p * window_ms <= a.started_ms - origin < (p + 1) * window_ms)
        for p in range(run_ms // window_ms)
    ]
    assert all(periods), f"admissions per {window_ms} ms period: {periods} ({summary})"
    assert len(admissions) >= 2 * limit, f"admissions per period: {periods} ({summary})"

    # A full window is refused from the counts a store already knows, without a request:
    # far fewer requests than calls.
    assert requests < calls / 2, summary


def test_two_resources_hammered_together_each_get_their_own_limit(
    endpoint: str, table_name: str
) -> None:
    two_resources_each_get_their_own_limit(endpoint, table_name)


def two_resources_each_get_their_own_limit(endpoint: str, table_name: str) -> None:
    """4 processes x 4 threads on two resources for 3 s: exactly each one's limit admitted
    (also run against DynamoDB Local under testcontainers, see ``test_providers``)."""
    processes, threads, run_ms = 4, 4, 3000
    limits = {"issues": 15, "volumes": 30}
    configs = {name: {"limit": limit, "window_ms": 60_000} for name, limit in limits.items()}
    options = [{"resource_configs": configs}] * processes
    with fleet_of(endpoint, table_name, options, barrier_parties=processes * threads) as fleet:
        reports = hammer_all(fleet, list(limits), threads, run_ms)

    per_thread = thread_reports(reports)
    origin = min(t.first_started_ms for t in per_thread if t.first_started_ms is not None)
    for name, limit in limits.items():
        admissions = [a for t in per_thread if t.resource == name for a in t.admissions]
        hammering = {(t.worker, t.thread) for t in per_thread if t.resource == name}
        assert len(hammering) == processes * threads // len(limits)
        # Nothing leaves a 60 s window during a 3 s run: exactly the limit goes through.
        assert len(admissions) == limit, f"{name}:\n{describe(admissions, origin)}"
        assert raw_window_total(endpoint, table_name, name) == limit, name
