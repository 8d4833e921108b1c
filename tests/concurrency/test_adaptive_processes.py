"""``DynamoDBAdaptiveRateLimitStore`` across real processes, all on one DynamoDB Local table.

One scenario runs once for the module (a module-scoped fixture), and each test checks one of
its properties. Six worker processes ("spawn": each a fresh interpreter with its own botocore
client and its own store) share one resource, limit 60 per 10 s: four send background traffic,
two user traffic, two threads each, plus one thread per process reading ``get_status`` every
half second. Every thread waits on one shared barrier, so all of them start together (the
parent sequences the rest with commands):

* from the start, background threads call ``acquire(priority="background")`` in a loop; the
  split gives background at most ``60 - min_user_reserved = 45`` (``min_user_reserved`` 15),
  so it fills its share and is refused with room left for users;
* ``USER_START_MS`` later, the parent holds every thread (each worker replies once none of its
  calls is in flight) and one user process calls ``acquire(priority="user")`` once, alone:
  the window has room, so it is admitted at once. The parent then lets every thread go, and
  every user thread calls ``acquire(priority="user")`` in a loop. Within a second the user
  requests in the monitoring window pass ``high_activity_threshold`` (10) with an increasing
  trend (no user request in the third before), and the next recomputation of the split (every
  second) pauses background work. It stays paused to the end: the newest third of the 30 s
  monitoring window keeps more than 1.5 times the user requests of the one before. When the
  background admissions of the first second leave the window, users take the room while
  background is refused.

Admissions and refusals are recorded as intervals: wall-clock epoch milliseconds (the store's
own clock) just before the call and just after it returned. The store decides at some instant
inside that interval, so every check below holds whatever the network and the scheduler did:

* **no over-admission**: a set of admissions whose intervals all fit in less than one window
  certainly happened within one window, so more than the limit of them would be a real
  over-admission (and more than 45 background ones an overrun of the background share);
* **users refused only on a full window**: a refusal at instant ``t`` counts admissions the
  store knew of, each written before ``t`` into a slice that overlaps ``(t - window, t]``; such
  an admission started before the refusal returned and returned after the refusal started,
  minus one window and one slice. Fewer than 60 recorded admissions like that would prove the
  refusal wrong. The one exception is the store's own: a call that loses the race to other
  writers on each of its ``STORE_ATTEMPTS`` writes refuses although the window has room
  (requests slower than a slice make every write a compare-and-set on a rolled slice). It
  says so by the wait it reports (``rate_limited`` with ``wait_ms`` 0), and it must have sent
  a write per attempt;
* **background refused while paused**: while the traffic runs, the parent reads the item every
  ``OBSERVE_EVERY_S`` (a consistent GetItem). The split changes only when it is recomputed,
  and each recomputation stamps ``ComputedAt`` with its writer's clock at least
  ``recalculation_interval_ms`` after the previous one. So between two reads that both show a
  paused split, with ``ComputedAt`` less than two intervals apart, no other split can have
  been in force: background was paused throughout. No background admission may lie inside such
  a span; user admissions and background refusals must (the pause, not a full window, refused
  background);
* **every process reports the same split**: after the traffic, every worker reads
  ``get_status`` at once, once right after one worker recomputed the split (so all read before
  the next recomputation is due), once just as the split is due (so several race to recompute
  it). A round counts only when the item's ``ComputedAt`` before and after proves a single
  split was in force for all readers; a round a stalled machine spoils is run again.

The harness (worker processes, queues, timeouts, cleanup) is ``fleet``'s. Every wait is bounded
(queue reads, barrier waits, thread joins); whatever happens, the workers are stopped, then
killed, when the module's scenario ends. After a refusal a thread sleeps ``REFUSAL_PAUSE_S``:
the store refuses from the state it already knows without a request, and the pause keeps the
spinning threads from starving the two CPUs DynamoDB Local also needs. This module imports
pytest for its fixture; six workers pay a tenth of a second each for it.
"""

from __future__ import annotations

import bisect
import threading
import time
import traceback
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from typing import Any, Protocol

import botocore.session
import pytest

from comic_vine_dynamodb_store.models import AdaptiveStats
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.adaptive import DynamoDBAdaptiveRateLimitStore
from comic_vine_dynamodb_store.stores.contracts import Priority
from comic_vine_dynamodb_store.stores.rate_limit_core import SliceLayout
from comic_vine_dynamodb_store.table import create_table, delete_table
from tests.concurrency import fleet as harness
from tests.concurrency.fleet import (
    BARRIER_TIMEOUT_S,
    REGION,
    Fleet,
    Outbox,
    WorkerSpec,
    now_ms,
)

RESOURCE = "comicvine-api"
LIMIT = 60
WINDOW_MS = 10_000
SLICE_MS = SliceLayout.for_window(WINDOW_MS).slice_ms
MIN_USER_RESERVED = 15
RECALCULATION_MS = 1_000
ADAPTIVE_CONFIG: dict[str, Any] = {
    "monitoring_window_ms": 30_000,
    "recalculation_interval_ms": RECALCULATION_MS,
    "high_activity_threshold": 10,
    "moderate_activity_threshold": 3,
    "min_user_reserved": MIN_USER_RESERVED,
}
# Users are never idle for sustained_inactivity_threshold_ms (30 min by default) here, so
# every split reserves users at least min_user_reserved.
BACKGROUND_CEILING = LIMIT - MIN_USER_RESERVED

BACKGROUND_WORKERS = (0, 1, 2, 3)
USER_WORKERS = (4, 5)
THREADS = 2
RUN_MS = 13_000
USER_START_MS = 3_000  # the first user call, made alone; every user thread after it
STATUS_EVERY_MS = 500
REFUSAL_PAUSE_S = 0.02
OBSERVE_EVERY_S = 0.1
REPLY_MARGIN_S = 60.0
JOIN_MARGIN_S = 30.0
ROUND_ATTEMPTS = 5
STORE_ATTEMPTS = 8  # writes an acquire tries before it gives up racing and refuses
DUE_MARGIN_MS = 20


# --------------------------------------------------------------------------- worker side


@dataclass(frozen=True, slots=True)
class Attempt:
    """One ``acquire``: who made it, with which priority, when it ran, its answer, and the
    DynamoDB requests it sent."""

    worker: int
    thread: int
    priority: Priority
    started_ms: int
    returned_ms: int
    admitted: bool
    requests: int
    wait_ms: int | None
    """For a refusal, the wait the store reported with it (``rate_limited``): 0 says it had
    room but gave up racing other writers."""


@dataclass(frozen=True, slots=True)
class Split:
    """The adaptive block of a status, or the split an item holds."""

    user_reserved: int
    background_max: int
    background_paused: bool
    recent_user_activity: int
    reason: str


@dataclass(frozen=True, slots=True)
class StatusSample:
    """One ``get_status``: who read it, when, and what it said."""

    worker: int
    started_ms: int
    returned_ms: int
    remaining: int
    split: Split


@dataclass(frozen=True, slots=True)
class TrafficPlan:
    """What one worker's threads do once the barrier releases them, until ``run_ms`` after:
    ``threads`` threads call ``acquire(resource, priority)`` in a loop (user threads only from
    the ``go`` command on), and one more reads ``get_status`` every ``status_every_ms``."""

    resource: str
    priority: Priority
    threads: int
    run_ms: int
    status_every_ms: int


@dataclass(frozen=True, slots=True)
class ThreadReport:
    """What one traffic thread did."""

    worker: int
    thread: int
    priority: Priority
    released_ms: int | None
    attempts: tuple[Attempt, ...]
    error: str | None


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """What one worker's threads did, its ``first_call`` if it made one, and the DynamoDB
    requests its store sent meanwhile."""

    worker: int
    threads: tuple[ThreadReport, ...]
    first_call: Attempt | None
    statuses: tuple[StatusSample, ...]
    status_error: str | None
    requests: int


class _Worker:
    """What a worker process does on command; every public method is a command.

    ``start`` starts the threads and replies at once, so the parent can send ``hold``,
    ``first_call`` and ``go`` while they run; ``collect`` waits for them and reports. Every
    call of a thread passes a gate: ``hold`` closes it and replies once no call is in flight,
    ``go`` opens it (and lets user traffic start).
    """

    def __init__(self, index: int, store: DynamoDBAdaptiveRateLimitStore, barrier: Barrier) -> None:
        self.index = index
        self.store = store
        self.barrier = barrier
        self.requests = 0
        self._lock = threading.Lock()
        self._calls = threading.local()  # what the call running on this thread sent
        self._go = threading.Event()  # user traffic may start
        self._open = threading.Event()  # the gate: calls may start
        self._open.set()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._running: list[threading.Thread] = []
        self._reports: list[ThreadReport] = []
        self._watched: list[StatusSample | str] = []
        self._first_call: Attempt | None = None
        self._run_ms = 0
        signals.operation_completed.connect(self._count, sender=store, weak=False)
        signals.rate_limited.connect(self._refused, sender=store, weak=False)

    def _count(self, sender: object, event: signals.OperationEvent) -> None:
        # Signals are sent on the thread that made the call.
        self._calls.requests = getattr(self._calls, "requests", 0) + event.requests
        with self._lock:
            self.requests += event.requests

    def _refused(self, sender: object, event: signals.RateLimitedEvent) -> None:
        self._calls.wait_ms = event.wait_ms

    def _acquire(self, thread: int, resource: str, priority: Priority) -> Attempt:
        self._calls.requests = 0
        self._calls.wait_ms = None
        started = now_ms()
        admitted = self.store.acquire(resource, priority)
        returned = now_ms()
        return Attempt(
            self.index,
            thread,
            priority,
            started,
            returned,
            admitted,
            self._calls.requests,
            self._calls.wait_ms,
        )

    def status(self, resource: str) -> StatusSample:
        """``get_status`` of ``resource``, timed."""
        started = now_ms()
        status = self.store.get_status(resource)
        returned = now_ms()
        adaptive = status.adaptive
        if adaptive is None:
            raise RuntimeError("the adaptive store reported no split")
        split = Split(
            user_reserved=adaptive.user_reserved,
            background_max=adaptive.background_max,
            background_paused=adaptive.background_paused,
            recent_user_activity=adaptive.recent_user_activity,
            reason=adaptive.reason,
        )
        return StatusSample(self.index, started, returned, status.remaining, split)

    def _enter(self, stop_at_ms: int) -> bool:
        """Pass the gate, the call counted in flight; False once ``stop_at_ms`` has come."""
        while now_ms() < stop_at_ms:
            if self._open.wait(max(0.0, (stop_at_ms - now_ms()) / 1000)):
                with self._lock:
                    if self._open.is_set():
                        self._in_flight += 1
                        return True
        return False

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._idle.notify_all()

    def _traffic(self, thread: int, plan: TrafficPlan) -> None:
        attempts: list[Attempt] = []
        released: int | None = None
        error: str | None = None
        try:
            self.barrier.wait(BARRIER_TIMEOUT_S)
            released = now_ms()
            stop_at = released + plan.run_ms
            if plan.priority == "user" and not self._go.wait(plan.run_ms / 1000):
                raise RuntimeError("user traffic never got the go")
            while self._enter(stop_at):
                try:
                    attempt = self._acquire(thread, plan.resource, plan.priority)
                finally:
                    self._leave()
                attempts.append(attempt)
                if not attempt.admitted:
                    time.sleep(REFUSAL_PAUSE_S)
        except Exception:
            error = traceback.format_exc()
        report = ThreadReport(self.index, thread, plan.priority, released, tuple(attempts), error)
        with self._lock:
            self._reports.append(report)

    def _watch(self, plan: TrafficPlan) -> None:
        try:
            self.barrier.wait(BARRIER_TIMEOUT_S)
            stop_at = now_ms() + plan.run_ms
            while self._enter(stop_at):
                try:
                    sample = self.status(plan.resource)
                finally:
                    self._leave()
                with self._lock:
                    self._watched.append(sample)
                time.sleep(plan.status_every_ms / 1000)
        except Exception:
            with self._lock:
                self._watched.append(traceback.format_exc())

    def start(self, plan: TrafficPlan) -> None:
        """Start ``plan``'s threads (they wait on the barrier) and return."""
        self._run_ms = plan.run_ms
        self._running = [
            threading.Thread(
                target=self._traffic, args=(t, plan), name=f"traffic-{self.index}-{t}", daemon=True
            )
            for t in range(plan.threads)
        ]
        self._running.append(
            threading.Thread(
                target=self._watch, args=(plan,), name=f"status-{self.index}", daemon=True
            )
        )
        for thread in self._running:
            thread.start()

    def hold(self) -> None:
        """Close the gate; reply once no call of this worker's threads is in flight."""
        with self._lock:
            self._open.clear()
            if not self._idle.wait_for(lambda: self._in_flight == 0, REPLY_MARGIN_S):
                raise RuntimeError("calls still in flight")

    def first_call(self, resource: str, priority: Priority) -> Attempt:
        """One ``acquire``, made on the command thread (thread -1), while held."""
        self._first_call = self._acquire(-1, resource, priority)
        return self._first_call

    def go(self) -> None:
        """Open the gate, and let the user traffic threads start."""
        self._go.set()
        self._open.set()

    def collect(self) -> WorkerReport:
        """Wait for the threads ``start`` started; what they did."""
        deadline = time.monotonic() + BARRIER_TIMEOUT_S + self._run_ms / 1000 + JOIN_MARGIN_S
        for thread in self._running:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [thread.name for thread in self._running if thread.is_alive()]
        if stuck:
            raise RuntimeError(f"threads still running after the deadline: {stuck}")
        with self._lock:
            errors = [entry for entry in self._watched if isinstance(entry, str)]
            return WorkerReport(
                worker=self.index,
                threads=tuple(sorted(self._reports, key=lambda r: r.thread)),
                first_call=self._first_call,
                statuses=tuple(e for e in self._watched if isinstance(e, StatusSample)),
                status_error=errors[0] if errors else None,
                requests=self.requests,
            )


def make_worker(spec: WorkerSpec, barrier: Barrier | None, outbox: Outbox) -> _Worker:
    """A worker's store, its first request made (the client built before any race)."""
    if barrier is None:
        raise RuntimeError("adaptive workers start together: start them with a barrier")
    store = DynamoDBAdaptiveRateLimitStore(
        table_name=spec.table, endpoint=spec.endpoint, region=REGION, **spec.options
    )
    store.can_proceed(f"warm-up-{spec.index}")  # build the client before any race
    return _Worker(spec.index, store, barrier)


# --------------------------------------------------------------------------- parent side


@dataclass(frozen=True, slots=True)
class Observation:
    """One consistent read of the resource's item by the parent: when, and the split it held
    (``None``: no item yet) with its ``ComputedAt``."""

    started_ms: int
    returned_ms: int
    computed_at_ms: int | None
    split: Split | None


class ItemReader:
    """Consistent reads of the resource's item with a plain botocore client."""

    def __init__(self, endpoint: str, table: str, resource: str) -> None:
        self._client: Any = botocore.session.get_session().create_client(
            "dynamodb", region_name=REGION, endpoint_url=endpoint
        )
        pk, sk = AdaptiveStats.key_of("", resource)
        self._request = {
            "TableName": table,
            "Key": {"PK": {"S": pk}, "SK": {"S": sk}},
            "ConsistentRead": True,
        }

    def read(self) -> Observation:
        started = now_ms()
        item = self._client.get_item(**self._request).get("Item")
        returned = now_ms()
        if item is None or "ComputedAt" not in item:
            return Observation(started, returned, None, None)
        split = Split(
            user_reserved=int(item["UserReserved"]["N"]),
            background_max=int(item["BackgroundMax"]["N"]),
            background_paused=bool(item["BackgroundPaused"]["BOOL"]),
            recent_user_activity=int(item["RecentUserActivity"]["N"]),
            reason=item["Reason"]["S"],
        )
        return Observation(started, returned, int(item["ComputedAt"]["N"]), split)

    def close(self) -> None:
        self._client.close()


class Observer:
    """A parent thread reading the item every ``OBSERVE_EVERY_S`` until stopped."""

    def __init__(self, reader: ItemReader) -> None:
        self.reader = reader
        self.observations: list[Observation] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="observer", daemon=True)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.observations.append(self.reader.read())
                self._stop.wait(OBSERVE_EVERY_S)
        except Exception:
            self.error = traceback.format_exc()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(JOIN_MARGIN_S)


@dataclass(frozen=True, slots=True)
class StatusRound:
    """Every worker's ``get_status`` read at once, and the item's split around it.

    ``single_split`` says the item's ``ComputedAt`` proves one split was in force for every
    reader; only then must their answers agree.
    """

    kind: str
    samples: tuple[StatusSample, ...]
    before: Observation
    after: Observation
    single_split: bool


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything the module's scenario recorded."""

    reports: tuple[WorkerReport, ...]
    observations: tuple[Observation, ...]
    rounds: tuple[StatusRound, ...]

    @property
    def threads(self) -> list[ThreadReport]:
        return [t for report in self.reports for t in report.threads]

    @property
    def first_call(self) -> Attempt:
        calls = [r.first_call for r in self.reports if r.first_call is not None]
        assert len(calls) == 1
        return calls[0]

    @property
    def attempts(self) -> list[Attempt]:
        """Every ``acquire``, ordered by start."""
        return sorted(
            [self.first_call, *(a for t in self.threads for a in t.attempts)],
            key=lambda a: (a.started_ms, a.returned_ms),
        )

    @property
    def origin_ms(self) -> int:
        return min(t.released_ms for t in self.threads if t.released_ms is not None)

    @property
    def statuses(self) -> list[StatusSample]:
        return [s for report in self.reports for s in report.statuses]


def wait_until(epoch_ms: int) -> None:
    time.sleep(max(0.0, (epoch_ms - now_ms()) / 1000))


def read_split(reader: ItemReader) -> Observation:
    observation = reader.read()
    assert observation.computed_at_ms is not None, "the resource has no split stored"
    return observation


def status_round(fleet: Fleet, reader: ItemReader, *, kind: str) -> StatusRound:
    """One round of every worker reading ``get_status`` at once (see the module docstring).

    ``between``: once the split is due, worker 0 reads alone (recomputing it), then all read;
    one split was in force for all if ``ComputedAt`` did not move while they read.
    ``at-due``: once the split is due, all read at once, and the first to find it due
    recomputes it; one split was in force for all (the one recomputed) if ``ComputedAt`` moved
    by less than two intervals, room for exactly one recomputation.
    """
    workers = range(len(fleet))
    before = read_split(reader)
    assert before.computed_at_ms is not None
    wait_until(before.computed_at_ms + RECALCULATION_MS + DUE_MARGIN_MS)
    if kind == "between":
        fleet.call(0, "status", RESOURCE)
        before = read_split(reader)
    samples = tuple(fleet.call_all(workers, "status", RESOURCE))
    after = read_split(reader)
    assert before.computed_at_ms is not None
    assert after.computed_at_ms is not None
    if kind == "between":
        single = after.computed_at_ms == before.computed_at_ms
    else:
        moved = after.computed_at_ms - before.computed_at_ms
        single = 0 < moved < 2 * RECALCULATION_MS
    return StatusRound(kind, samples, before, after, single)


def status_rounds(fleet: Fleet, reader: ItemReader) -> list[StatusRound]:
    """A ``between`` and an ``at-due`` round, each tried again (up to ``ROUND_ATTEMPTS``)
    while a stall spoils it."""
    rounds: list[StatusRound] = []
    for kind in ("between", "at-due"):
        for _ in range(ROUND_ATTEMPTS):
            rounds.append(status_round(fleet, reader, kind=kind))
            if rounds[-1].single_split:
                break
    return rounds


def run_scenario(endpoint: str, table: str) -> Scenario:
    """The module's scenario (see the module docstring)."""
    workers = len(BACKGROUND_WORKERS) + len(USER_WORKERS)
    options = [
        {
            "default_config": {"limit": LIMIT, "window_ms": WINDOW_MS},
            "adaptive_config": ADAPTIVE_CONFIG,
            "cleanup_interval_ms": 0,
        }
    ] * workers
    reader = ItemReader(endpoint, table, RESOURCE)
    observer = Observer(reader)
    try:
        with harness.fleet_of(
            make_worker,
            endpoint,
            table,
            options,
            barrier_parties=workers * (THREADS + 1),
            name="adaptive-worker",
        ) as fleet:
            for worker in range(workers):
                priority: Priority = "user" if worker in USER_WORKERS else "background"
                plan = TrafficPlan(RESOURCE, priority, THREADS, RUN_MS, STATUS_EVERY_MS)
                fleet.send(worker, "start", plan)
            for worker in range(workers):
                fleet.result(worker)
            # Every thread is started: the barrier releases them about now.
            released = now_ms()
            observer.start()
            try:
                wait_until(released + USER_START_MS)
                fleet.call_all(range(workers), "hold")
                fleet.call(USER_WORKERS[0], "first_call", RESOURCE, "user")
                fleet.call_all(range(workers), "go")
                for worker in range(workers):
                    fleet.send(worker, "collect")
                deadline = time.monotonic() + BARRIER_TIMEOUT_S + RUN_MS / 1000 + REPLY_MARGIN_S
                reports = tuple(
                    fleet.result(worker, timeout=max(1.0, deadline - time.monotonic()))
                    for worker in range(workers)
                )
            finally:
                observer.stop()
            assert observer.error is None, observer.error
            rounds = status_rounds(fleet, reader)
    finally:
        reader.close()
    return Scenario(reports, tuple(observer.observations), tuple(rounds))


@pytest.fixture(scope="module")
def scenario(endpoint: str) -> Iterator[Scenario]:
    """The scenario, run once on a fresh table (deleted afterwards)."""
    table = f"test-{uuid.uuid4().hex[:12]}"
    create_table(table, endpoint=endpoint, region=REGION)
    try:
        yield run_scenario(endpoint, table)
    finally:
        delete_table(table, endpoint=endpoint, region=REGION, missing_ok=True)


# --------------------------------------------------------------------------- analysis


class _Interval(Protocol):
    @property
    def started_ms(self) -> int: ...

    @property
    def returned_ms(self) -> int: ...


def most_in_one_window(attempts: Sequence[Attempt], window_ms: int) -> list[Attempt]:
    """The largest set of ``attempts`` certainly inside one window (every interval within
    less than ``window_ms`` of the earliest start)."""
    best: list[Attempt] = []
    for first in attempts:
        group = [
            a
            for a in attempts
            if a.started_ms >= first.started_ms and a.returned_ms - first.started_ms < window_ms
        ]
        if len(group) > len(best):
            best = group
    return best


def describe(attempts: Sequence[Attempt], origin_ms: int) -> str:
    return "\n".join(
        f"  worker {a.worker} thread {a.thread} {a.priority} "
        f"{'admitted' if a.admitted else 'refused'}: "
        f"[{a.started_ms - origin_ms:+d}, {a.returned_ms - origin_ms:+d}] ms, "
        f"{a.requests} request(s)" + ("" if a.wait_ms is None else f", wait {a.wait_ms} ms")
        for a in sorted(attempts, key=lambda a: (a.started_ms, a.returned_ms))
    )


def inside(interval: _Interval, span: tuple[int, int]) -> bool:
    """Whether ``interval`` lies strictly inside ``span`` (so it ran entirely within it)."""
    return span[0] < interval.started_ms and interval.returned_ms < span[1]


def paused_spans(observations: Sequence[Observation]) -> list[tuple[int, int]]:
    """Spans of wall-clock time during which the split in force certainly paused background.

    Consecutive reads that both show a paused split, their ``ComputedAt`` less than two
    recalculation intervals apart, leave no room for another split between them: a chain of
    such reads is a span from the first read's return to the last read's start.
    """
    spans: list[tuple[int, int]] = []
    chain: list[Observation] = []

    def close_chain() -> None:
        if len(chain) >= 2:
            spans.append((chain[0].returned_ms, chain[-1].started_ms))

    for observation in observations:
        paused = observation.split is not None and observation.split.background_paused
        if not paused:
            close_chain()
            chain = []
            continue
        if chain:
            previous = chain[-1].computed_at_ms
            current = observation.computed_at_ms
            assert previous is not None
            assert current is not None
            if not 0 <= current - previous < 2 * RECALCULATION_MS:
                close_chain()
                chain = []
        chain.append(observation)
    close_chain()
    return spans


def summary(scenario: Scenario) -> str:
    attempts = scenario.attempts
    counts = {
        (priority, admitted): sum(
            1 for a in attempts if a.priority == priority and a.admitted is admitted
        )
        for priority in ("user", "background")
        for admitted in (True, False)
    }
    requests = sum(r.requests for r in scenario.reports)
    gave_up = sum(1 for a in attempts if not a.admitted and a.wait_ms == 0)
    return (
        f"user {counts['user', True]} admitted / {counts['user', False]} refused, background "
        f"{counts['background', True]} admitted / {counts['background', False]} refused "
        f"({gave_up} refused with room after losing every race), {requests} DynamoDB requests"
    )


# --------------------------------------------------------------------------- tests


def test_every_thread_ran_without_error(scenario: Scenario) -> None:
    errors = [
        f"worker {t.worker} thread {t.thread}:\n{t.error}" for t in scenario.threads if t.error
    ]
    errors += [
        f"worker {r.worker} status thread:\n{r.status_error}"
        for r in scenario.reports
        if r.status_error
    ]
    assert not errors, "\n".join(errors)
    assert len(scenario.threads) == (len(BACKGROUND_WORKERS) + len(USER_WORKERS)) * THREADS
    assert all(t.attempts for t in scenario.threads)
    # A refusal on a state learned less than a slice ago is decided without a request.
    assert any(not a.admitted and a.requests == 0 for a in scenario.attempts), summary(scenario)


def test_user_and_background_together_never_exceed_the_limit_in_any_window(
    scenario: Scenario,
) -> None:
    admitted = [a for a in scenario.attempts if a.admitted]
    origin = scenario.origin_ms
    worst = most_in_one_window(admitted, WINDOW_MS)
    assert len(worst) <= LIMIT, (
        f"{len(worst)} admissions within one {WINDOW_MS} ms window ({summary(scenario)}):\n"
        f"{describe(worst, origin)}"
    )

    background = [a for a in admitted if a.priority == "background"]
    worst_background = most_in_one_window(background, WINDOW_MS)
    assert len(worst_background) <= BACKGROUND_CEILING, (
        f"{len(worst_background)} background admissions within one {WINDOW_MS} ms window, "
        f"above the largest share any split gives ({BACKGROUND_CEILING}):\n"
        f"{describe(worst_background, origin)}"
    )


def test_a_user_arriving_after_background_only_traffic_is_admitted_at_once(
    scenario: Scenario,
) -> None:
    origin = scenario.origin_ms
    first = scenario.first_call
    assert first.priority == "user"
    # It ran alone: every other call returned before it started or started after it returned,
    # and every user call started after it.
    others: list[_Interval] = [a for a in scenario.attempts if a is not first]
    others += scenario.statuses
    assert all(
        a.returned_ms <= first.started_ms or a.started_ms >= first.returned_ms for a in others
    )
    assert all(
        a.started_ms >= first.returned_ms
        for a in scenario.attempts
        if a.priority == "user" and a is not first
    )
    before = [a for a in scenario.attempts if a.returned_ms < first.started_ms]
    assert before
    assert all(a.priority == "background" for a in before)
    # Background traffic ran alone before: admitted until its share was full, then refused.
    assert any(a.admitted for a in before), summary(scenario)
    assert any(not a.admitted for a in before), summary(scenario)
    assert first.admitted, (
        f"the first user call ({summary(scenario)}):\n{describe([first], origin)}"
    )


def test_a_user_is_refused_only_when_the_window_is_full(scenario: Scenario) -> None:
    attempts = scenario.attempts
    origin = scenario.origin_ms
    admitted = [a for a in attempts if a.admitted]
    starts = [a.started_ms for a in admitted]  # sorted: attempts are sorted by start
    user_refusals = [a for a in attempts if a.priority == "user" and not a.admitted]
    assert all(a.wait_ms is not None for a in user_refusals), "a refusal sent no rate_limited"

    # A refusal the store puts down to a full window (it reports a wait): the window must
    # provably have held the limit. The admissions it may have counted started before it
    # returned, and returned after the earliest instant a slice it counted can begin.
    wrong: list[tuple[Attempt, int]] = []
    for refusal in (a for a in user_refusals if a.wait_ms):
        earliest = refusal.started_ms - WINDOW_MS - SLICE_MS
        candidates = admitted[: bisect.bisect_right(starts, refusal.returned_ms)]
        counted = sum(1 for a in candidates if a.returned_ms > earliest)
        if counted < LIMIT:
            wrong.append((refusal, counted))
    assert not wrong, "\n".join(
        f"user refused at [{r.started_ms - origin:+d}, {r.returned_ms - origin:+d}] ms "
        f"(worker {r.worker}, wait {r.wait_ms} ms) with at most {n} admissions in its window"
        for r, n in wrong[:20]
    )
    # A refusal with no wait had room: the store refuses then only after losing the race to
    # other writers on every one of its attempts, one write each (slow requests make every
    # write a compare-and-set on a rolled slice).
    gave_up = [a for a in user_refusals if a.wait_ms == 0]
    assert all(a.requests >= STORE_ATTEMPTS for a in gave_up), (
        f"users refused with room, without racing {STORE_ATTEMPTS} times:\n"
        f"{describe([a for a in gave_up if a.requests < STORE_ATTEMPTS], origin)}"
    )

    # Users got the room background left them: at least its reserve in the first window, and
    # admissions again once the window freed, long after their first burst.
    users = [a for a in admitted if a.priority == "user"]
    assert len(users) >= LIMIT - BACKGROUND_CEILING, summary(scenario)
    first_user = users[0].started_ms
    assert any(a.started_ms > first_user + WINDOW_MS // 2 for a in users), (
        f"{summary(scenario)}:\n{describe(users, origin)}"
    )


def test_a_user_burst_pauses_background_and_no_background_is_admitted_while_paused(
    scenario: Scenario,
) -> None:
    origin = scenario.origin_ms
    # Every process saw the pause in get_status, for high user activity on an increasing trend.
    for report in scenario.reports:
        paused = [s for s in report.statuses if s.split.background_paused]
        assert paused, f"worker {report.worker} never saw background paused"
        assert all(
            "high user activity" in s.split.reason and "increasing" in s.split.reason
            for s in paused
        ), {s.split.reason for s in paused}

    spans = paused_spans(scenario.observations)
    assert spans, "no two consecutive reads of the item showed one paused split"
    attempts = scenario.attempts
    during = [a for a in attempts if any(inside(a, span) for span in spans)]
    admitted_background = [a for a in during if a.priority == "background" and a.admitted]
    assert not admitted_background, (
        f"background admitted while the split paused it "
        f"(paused spans {[(s - origin, e - origin) for s, e in spans]}):\n"
        f"{describe(admitted_background, origin)}"
    )
    # The pause, not a full window, kept background out: users were admitted meanwhile, and
    # background asked and was refused.
    assert any(a.priority == "user" and a.admitted for a in during), summary(scenario)
    assert any(a.priority == "background" and not a.admitted for a in during), summary(scenario)
    assert sum(end - start for start, end in spans) >= 3 * RECALCULATION_MS, spans


def test_every_process_reports_the_same_split_when_read_at_the_same_time(
    scenario: Scenario,
) -> None:
    for kind in ("between", "at-due"):
        rounds = [r for r in scenario.rounds if r.kind == kind]
        usable = [r for r in rounds if r.single_split]
        assert usable, f"{kind}: every round straddled a recomputation: {rounds}"
        for round_ in usable:
            workers = sorted(s.worker for s in round_.samples)
            assert workers == list(range(len(BACKGROUND_WORKERS) + len(USER_WORKERS)))
            splits = {s.split for s in round_.samples}
            assert splits == {round_.after.split}, (
                f"{kind}: workers reported {[(s.worker, s.split) for s in round_.samples]}, "
                f"the item holds {round_.after.split}"
            )
