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

Every wait is bounded (queue reads, barrier waits, thread joins); whatever happens, the workers
are stopped, then killed, when the test ends. A worker whose parent disappears exits on its own
after ``IDLE_EXIT_S`` without a command. Like ``test_dedupe_processes``, this module does not
import pytest, so each spawned worker imports less.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

import botocore.session

from comic_vine_dynamodb_store.models import RateLimitEvent
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore

REGION = "us-east-1"

STARTUP_TIMEOUT_S = 120.0  # 8 interpreters importing botocore on 2 busy cores
REPLY_MARGIN_S = 60.0  # beyond the hammering time, for a reply to arrive
BARRIER_TIMEOUT_S = 60.0
JOIN_MARGIN_S = 30.0
JOIN_TIMEOUT_S = 5.0
IDLE_EXIT_S = 300.0
REFUSAL_PAUSE_S = 0.003


def now_ms() -> int:
    """Epoch milliseconds, exactly as the store's default clock reads them."""
    return time.time_ns() // 1_000_000


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


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Where a worker's store points, and its options."""

    index: int
    endpoint: str
    table: str
    options: dict[str, Any]


def serve(
    spec: WorkerSpec,
    inbox: Queue[tuple[str, tuple[Any, ...]]],
    outbox: Queue[tuple[str, Any]],
    barrier: Barrier,
) -> None:
    """A worker process: its own store, then commands from ``inbox`` until ``stop``.

    Replies go to ``outbox`` as ``("ok", result)`` or ``("error", traceback)``; the first
    reply (``"ok"``, the pid) says the store is built and has made one request.
    """
    os.environ["AWS_ACCESS_KEY_ID"] = "local"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "local"
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    try:
        store = DynamoDBRateLimitStore(
            table_name=spec.table, endpoint=spec.endpoint, region=REGION, **spec.options
        )
        store.can_proceed(f"warm-up-{spec.index}")  # build the client before any race
    except Exception:
        outbox.put(("error", traceback.format_exc()))
        return
    worker = _Worker(spec.index, store, barrier)
    outbox.put(("ok", os.getpid()))
    try:
        _command_loop(worker, inbox, outbox)
    finally:
        store.close()
    # Leave without the interpreter's teardown (see test_dedupe_processes): the store is
    # closed and the replies are flushed first.
    outbox.close()
    outbox.join_thread()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _command_loop(
    worker: _Worker,
    inbox: Queue[tuple[str, tuple[Any, ...]]],
    outbox: Queue[tuple[str, Any]],
) -> None:
    while True:
        try:
            command, args = inbox.get(timeout=IDLE_EXIT_S)
        except queue.Empty:
            return  # nobody is driving this worker any more
        if command == "stop":
            return
        try:
            result = getattr(worker, command)(*args)
        except Exception:
            outbox.put(("error", traceback.format_exc()))
        else:
            outbox.put(("ok", result))


# --------------------------------------------------------------------------- parent side


class Fleet:
    """Worker processes started once, each with its own store and command queues."""

    def __init__(
        self,
        endpoint: str,
        table: str,
        options: Sequence[dict[str, Any]],
        *,
        barrier_parties: int,
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.barrier = ctx.Barrier(barrier_parties)
        self._inboxes: list[Queue[tuple[str, tuple[Any, ...]]]] = [ctx.Queue() for _ in options]
        self._outboxes: list[Queue[tuple[str, Any]]] = [ctx.Queue() for _ in options]
        self.processes: list[SpawnProcess] = [
            ctx.Process(
                target=serve,
                args=(
                    WorkerSpec(i, endpoint, table, dict(opts)),
                    self._inboxes[i],
                    self._outboxes[i],
                    self.barrier,
                ),
                name=f"rate-limit-worker-{i}",
                daemon=True,
            )
            for i, opts in enumerate(options)
        ]

    def __len__(self) -> int:
        return len(self.processes)

    def start(self) -> None:
        """Start every worker, then wait until each has its store ready."""
        for process in self.processes:
            process.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        for i in range(len(self)):
            self.result(i, timeout=max(1.0, deadline - time.monotonic()))

    def send(self, worker: int, command: str, *args: Any) -> None:
        self._inboxes[worker].put((command, args))

    def result(self, worker: int, *, timeout: float) -> Any:
        """The next reply of ``worker``; a worker's exception fails the test with its
        traceback."""
        try:
            status, payload = self._outboxes[worker].get(timeout=timeout)
        except queue.Empty:
            process = self.processes[worker]
            raise AssertionError(
                f"worker {worker} gave no answer within {timeout:.0f} s "
                f"(alive: {process.is_alive()}, exit code: {process.exitcode})"
            ) from None
        if status != "ok":
            raise AssertionError(f"worker {worker} failed:\n{payload}")
        return payload

    def hammer_all(
        self, resources: Sequence[str], threads: int, duration_ms: int
    ) -> list[WorkerReport]:
        """Every worker hammers at once (released by the barrier); their reports."""
        for worker in range(len(self)):
            self.send(worker, "hammer", list(resources), threads, duration_ms)
        deadline = time.monotonic() + BARRIER_TIMEOUT_S + duration_ms / 1000 + REPLY_MARGIN_S
        return [
            self.result(worker, timeout=max(1.0, deadline - time.monotonic()))
            for worker in range(len(self))
        ]

    def close(self) -> None:
        """Stop the workers (kill those that do not stop) and release the queues."""
        started = [p for p in self.processes if p.pid is not None]
        for i, process in enumerate(self.processes):
            if process.is_alive():
                with contextlib.suppress(Exception):
                    self.send(i, "stop")
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for process in started:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in started:
            if process.is_alive():
                process.kill()
                process.join(JOIN_TIMEOUT_S)
        for box in (*self._inboxes, *self._outboxes):
            box.close()
            box.join_thread()
        for process in started:
            if not process.is_alive():
                process.close()


@contextlib.contextmanager
def fleet_of(
    endpoint: str, table: str, options: Sequence[dict[str, Any]], *, barrier_parties: int
) -> Iterator[Fleet]:
    """Started workers, stopped (or killed) on the way out whatever happened."""
    fleet = Fleet(endpoint, table, options, barrier_parties=barrier_parties)
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.close()


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
    return int(item["Cur"]["N"]) + sum(int(count["N"]) for count in item["Hist"]["L"])


# --------------------------------------------------------------------------- tests


def test_8_processes_of_4_threads_never_admit_more_than_the_limit_in_any_window(
    endpoint: str, table_name: str
) -> None:
    processes, threads, limit, window_ms, run_ms = 8, 4, 40, 5000, 15_000
    resource = "comicvine-api"
    options = [{"default_config": {"limit": limit, "window_ms": window_ms}}] * processes
    with fleet_of(endpoint, table_name, options, barrier_parties=processes * threads) as fleet:
        reports = fleet.hammer_all([resource], threads, run_ms)

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
    processes, threads, run_ms = 4, 4, 3000
    limits = {"issues": 15, "volumes": 30}
    configs = {name: {"limit": limit, "window_ms": 60_000} for name, limit in limits.items()}
    options = [{"resource_configs": configs}] * processes
    with fleet_of(endpoint, table_name, options, barrier_parties=processes * threads) as fleet:
        reports = fleet.hammer_all(list(limits), threads, run_ms)

    per_thread = thread_reports(reports)
    origin = min(t.first_started_ms for t in per_thread if t.first_started_ms is not None)
    for name, limit in limits.items():
        admissions = [a for t in per_thread if t.resource == name for a in t.admissions]
        hammering = {(t.worker, t.thread) for t in per_thread if t.resource == name}
        assert len(hammering) == processes * threads // len(limits)
        # Nothing leaves a 60 s window during a 3 s run: exactly the limit goes through.
        assert len(admissions) == limit, f"{name}:\n{describe(admissions, origin)}"
        assert raw_window_total(endpoint, table_name, name) == limit, name
