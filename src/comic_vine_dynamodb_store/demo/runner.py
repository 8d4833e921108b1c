"""``make demo``: many processes share one table, and the API never sees more than its limit.

One run, end to end, on this machine:

1. DynamoDB: ``--endpoint`` when given (any DynamoDB, AWS included: nothing is started),
   otherwise :func:`~comic_vine_dynamodb_store.local.start_local_dynamodb`
   (``DYNAMODB_ENDPOINT``, else Docker, else the jar).
2. The table: ``--table`` if it exists and verifies (:func:`verify_table`), else created with
   :func:`create_table` (a fresh ``comic-vine-demo-<random>`` name without ``--table``). Every
   item the run writes carries a per-run ``key_prefix``, so a shared table is never mixed up
   with another run's or another application's items (a limiter's ``issue`` window included).
3. A :class:`FakeComicVine` on loopback that answers at most ``API_LIMIT`` requests per
   resource in any ``API_WINDOW_S`` and 420 beyond, and a second one that serves the reference
   bodies (bodies depend only on the URL).
4. ``--workers`` processes ("spawn": each its own interpreter, botocore clients and stores),
   each a :class:`GuardedSession` over a ``DynamoDBCacheStore``, a ``DynamoDBDedupeStore`` and
   a ``DynamoDBAdaptiveRateLimitStore``, shared by ``THREADS_PER_WORKER`` threads. A third of
   them (at least one) crawl the list pages ``/api/issues/?offset=...`` in order with
   ``priority="background"``, all from the same first page, as uncoordinated crawlers do; the
   others stand for people who open popular issues: Zipf-skewed over ``POPULAR_ISSUES`` ids, so
   many ask for the same URL at once, with ``priority="user"``.

Demand is far above the API's limit on both resources. The limiter admits ``LIMITER_LIMIT``
per ``LIMITER_WINDOW_MS``, a window half as long again as the API's: it counts a request when
it admits it and the API when it arrives, and on two cores shared by DynamoDB Local and a
few dozen threads the time between the two varies by up to about a second; the extra 5 s
cover that with room to spare. A person waits at most ``USER_MAX_WAIT_MS`` for the limiter
(then gets ``RateLimitedError`` and moves on), a crawler ``BACKGROUND_MAX_WAIT_MS``, more than
any wait a window can ask for. Comic Vine limits each resource on its own, and so does the
limiter (``issue`` for the people, ``issues`` for the crawl): each priority has a window of
its own here, and the adaptive split only matters where both ask for one resource.

Workers send each request's record (priority, URL, where the answer came from, status,
latency, SHA-256 of the body, what the limiter did) and their DynamoDB totals (the
``requests`` and ``consumed_capacity`` of every ``operation_completed`` signal) to the parent
through a queue; the parent shows live progress and then a summary table (``--json``: one
JSON object on stdout instead, nothing else there).

The run fails (exit 1) when an invariant breaks:

* the API answered 420 (``upstream_420``);
* a URL reached the API twice (``duplicate_upstream_fetches``): responses are cached for
  longer than any run, and dedupe lets one caller fetch while the others wait;
* an answer's body is not the reference body of its URL, or its status not 200
  (``wrong_bodies``), or a request failed otherwise, or a worker died (``errors``).

Exit codes: 0 every invariant holds; 1 one broke; 2 the demo could not run (bad flags, a table
that does not verify, no DynamoDB); 130 interrupted (Ctrl-C: the workers stop, the summary of
what ran is printed, then everything is torn down).

The table is deleted at the end only when this run created it on a DynamoDB Local (the one
started here, ``DYNAMODB_ENDPOINT``, or an ``--endpoint`` on a loopback address): a table on
another endpoint (AWS) is kept, as is any table that existed before. Its items expire through
their TTLs. Dummy AWS credentials are set (when none are) only for a DynamoDB Local the demo
finds itself, never for ``--endpoint``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import queue
import random
import signal
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any, NamedTuple, TypeAlias, TypeVar, get_args
from urllib.parse import urlencode, urlsplit

import requests
from botocore.exceptions import BotoCoreError
from pynamodb.exceptions import PynamoDBException
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from comic_vine_dynamodb_store.client import GuardedSession
from comic_vine_dynamodb_store.demo.fake_api import FakeComicVine
from comic_vine_dynamodb_store.errors import DynamoDBStoreError, RateLimitedError
from comic_vine_dynamodb_store.local import LocalDynamoDB, start_local_dynamodb
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.adaptive import DynamoDBAdaptiveRateLimitStore
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore
from comic_vine_dynamodb_store.stores.contracts import Priority
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore
from comic_vine_dynamodb_store.table import (
    create_table,
    delete_table,
    table_exists,
    verify_table,
)

__all__ = ["add_arguments", "main", "run"]

# -- the scenario ------------------------------------------------------------------------------

API_LIMIT = 60
API_WINDOW_S = 10.0
"""The fake API's limit per resource: Comic Vine's 200 an hour, scaled down to seconds."""
LIMITER_LIMIT = 60
LIMITER_WINDOW_MS = 15_000
"""The limiter's: the API's limit over a window 5 s longer (see the module docs)."""
ADAPTIVE_CONFIG: dict[str, Any] = {
    "monitoring_window_ms": 30_000,
    "recalculation_interval_ms": 2_000,
    "sustained_inactivity_threshold_ms": 60_000,
}
"""The adaptive split's windows, scaled down like the limit."""
API_LATENCY_S = 0.1
"""Time the API takes to answer: callers of a URL in flight overlap, as with the real one."""
ISSUES_TOTAL = 1_000_000
"""Issues the API knows: 10,000 list pages, more than the limit lets a crawl fetch in 40
minutes (after the last one it starts again, from the cache)."""
PAGE_SIZE = 100
POPULAR_ISSUES = 200
ZIPF_EXPONENT = 1.1
"""Issue ``k`` of the popular ones is asked for with a weight of ``1 / k ** 1.1``."""
USER_PAUSE_S = 0.05
"""Mean pause of a person between two pages."""
THREADS_PER_WORKER = 4
USER_MAX_WAIT_MS = 5_000
BACKGROUND_MAX_WAIT_MS = 30_000
DEDUPE_MAX_WAIT_MS = 2 * BACKGROUND_MAX_WAIT_MS
"""How long a caller waits for the one fetching its URL: longer than the fetcher may wait for
the limiter, so nobody stops waiting for a fetch still to come and fetches the URL again."""
CACHE_TTL_BEYOND_RUN_S = 3_600
"""Responses stay cached this long after the run's end: within the run, a URL must reach the
API at most once."""
HTTP_TIMEOUT_S = 30.0
API_KEY = "demo-api-key"
REGION = "us-east-1"

DEFAULT_WORKERS = 6
DEFAULT_SECONDS = 30.0
"""With DynamoDB Local's start (2 to 4 s), the workers' (2 to 4 s) and the teardown, a default
``make demo`` took 40 to 43 s on a 2-core machine busy with other work: well under a minute."""

# -- process plumbing ----------------------------------------------------------------------------

READY_TIMEOUT_S = 120.0
"""Workers importing botocore and building stores, on two busy cores."""
DRAIN_TIMEOUT_S = 30.0
"""After the end: requests in flight finish, a crawler's limiter wait is cut short."""
JOIN_TIMEOUT_S = 5.0
FLUSH_EVERY_S = 0.25
WORKER_GRACE_S = 30.0
"""A worker stops on its own this long after the run's end, whatever the parent does."""
REFRESH_EVERY_S = 0.25

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_CANNOT_RUN = 2
EXIT_INTERRUPTED = 130

PRIORITIES: tuple[Priority, ...] = get_args(Priority)
PROTECTIONS = ("limiter", "cache", "dedupe")

S = TypeVar("S")
Message: TypeAlias = tuple[Any, ...]
Outbox: TypeAlias = "Queue[Message]"


# ============================================================================== worker side


class Record(NamedTuple):
    """One logical request of one worker thread.

    ``key`` is the URL as the API counts it (path, sorted query without ``api_key``).
    ``outcome``: ``cache``, ``dedupe`` (another caller's response), ``upstream`` (this call's
    own), ``refused`` (``RateLimitedError``: nothing sent), ``cut`` (the run ended while it
    waited for the limiter) or ``error``. ``limiter``: ``waited`` (refused at first, then
    admitted), ``refused`` (refused and never admitted) or ``""``.
    """

    priority: str
    key: str
    outcome: str
    status: int | None
    latency_ms: float
    sha256: str | None
    upstream_calls: int
    limiter: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker process needs: where the table and the API are, what it plays."""

    index: int
    priority: Priority
    threads: int
    seconds: float
    base_url: str
    table: str
    endpoint: str | None
    region: str | None
    key_prefix: str
    disabled: frozenset[str]
    seed: int


class _RunEndedError(Exception):
    """Raised from the flow's limiter wait once the run is over, so no request outlives it."""


@dataclass(slots=True)
class _DynamoDBTotals:
    """What a worker's stores asked of DynamoDB: requests and capacity, by store."""

    requests: int = 0
    capacity: float = 0.0
    failed: int = 0
    by_store: dict[str, list[float]] = field(default_factory=dict)
    unavailable: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "capacity": self.capacity,
            "failed": self.failed,
            "by_store": {name: list(pair) for name, pair in self.by_store.items()},
            "unavailable": self.unavailable,
        }


class _Worker:
    """One process: its stores, one session, ``spec.threads`` threads asking through it."""

    def __init__(self, spec: WorkerSpec, outbox: Outbox, stop: Event) -> None:
        self.spec = spec
        self.outbox = outbox
        self.stop = stop
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._totals = _DynamoDBTotals()
        self._local = threading.local()
        self._pages = itertools.count()
        self._deadline = math.inf
        self.parent = os.getppid()
        where: dict[str, Any] = {
            "table_name": spec.table,
            "endpoint": spec.endpoint,
            "region": spec.region,
            "key_prefix": spec.key_prefix,
            "cleanup_interval_ms": 0,
        }
        self._stores: list[Any] = []
        cache: DynamoDBCacheStore[Any] | None = None
        dedupe: DynamoDBDedupeStore[Any] | None = None
        limiter: DynamoDBAdaptiveRateLimitStore | None = None
        # Each store is metered from its first request on (the warm-up, which builds its
        # botocore client before the clock starts, included).
        if "cache" not in spec.disabled:
            cache = self._metered(DynamoDBCacheStore(**where))
            cache.get("warm-up")
        if "dedupe" not in spec.disabled:
            dedupe = self._metered(
                DynamoDBDedupeStore(max_wait_time_ms=DEDUPE_MAX_WAIT_MS, **where)
            )
            dedupe.is_in_progress("warm-up")
        if "limiter" not in spec.disabled:
            limiter = self._metered(
                DynamoDBAdaptiveRateLimitStore(
                    default_config={"limit": LIMITER_LIMIT, "window_ms": LIMITER_WINDOW_MS},
                    adaptive_config=ADAPTIVE_CONFIG,
                    **where,
                )
            )
            limiter.can_proceed("warm-up", spec.priority)
        self.session = GuardedSession(
            cache=cache,
            dedupe=dedupe,
            rate_limit=limiter,
            cache_ttl_seconds=math.ceil(spec.seconds) + CACHE_TTL_BEYOND_RUN_S,
            priority=spec.priority,
            max_wait_ms=USER_MAX_WAIT_MS if spec.priority == "user" else BACKGROUND_MAX_WAIT_MS,
            sleep=self._sleep,
        )
        self.session.trust_env = False  # the API is on loopback: never through a proxy
        flow = self.session.flow
        signals.client_dedupe_joined.connect(self._on_joined, sender=flow, weak=False)
        signals.client_limiter_waited.connect(self._on_waited, sender=flow, weak=False)
        signals.client_upstream_call.connect(self._on_upstream, sender=flow, weak=False)
        signals.client_store_unavailable.connect(self._on_unavailable, sender=flow, weak=False)
        weights = [1 / rank**ZIPF_EXPONENT for rank in range(1, POPULAR_ISSUES + 1)]
        self._cumulative = list(itertools.accumulate(weights))

    def _metered(self, store: S) -> S:
        signals.operation_completed.connect(self._on_operation, sender=store, weak=False)
        self._stores.append(store)
        return store

    # -- signals (sent on the thread that makes the request) -------------------------------

    def _on_operation(self, sender: object, event: signals.OperationEvent) -> None:
        with self._lock:
            totals = self._totals
            totals.requests += event.requests
            totals.capacity += event.consumed_capacity
            totals.failed += event.outcome != "success"
            pair = totals.by_store.setdefault(event.store, [0, 0.0])
            pair[0] += event.requests
            pair[1] += event.consumed_capacity

    def _on_joined(self, sender: object, event: signals.ClientEvent) -> None:
        if event.status is not None:
            self._local.joined = True

    def _on_waited(self, sender: object, event: signals.ClientEvent) -> None:
        self._local.limiter = "waited" if event.admitted else "refused"

    def _on_upstream(self, sender: object, event: signals.ClientEvent) -> None:
        self._local.upstream_calls += 1

    def _on_unavailable(self, sender: object, event: signals.ClientEvent) -> None:
        with self._lock:
            self._totals.unavailable += 1

    def _sleep(self, seconds: float) -> None:
        """The flow's limiter wait: ends early, with :class:`_RunEndedError`, when the run does."""
        self._local.limiter = self._local.limiter or "refused"
        if self.stop.wait(seconds) or not self._running():
            raise _RunEndedError

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> None:
        """Ask until told to stop; records go to the parent every ``FLUSH_EVERY_S``."""
        self._deadline = time.monotonic() + self.spec.seconds + WORKER_GRACE_S
        threads = [
            threading.Thread(target=self._ask, args=(n,), name=f"asker-{n}", daemon=True)
            for n in range(self.spec.threads)
        ]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            self.stop.wait(FLUSH_EVERY_S)
            self.flush()
        for thread in threads:
            thread.join()
        self.flush()

    def _running(self) -> bool:
        """Until the parent says stop; on its own after the run's end plus a grace, or at
        once if the parent is gone (this process was handed to another parent)."""
        return (
            not self.stop.is_set()
            and time.monotonic() < self._deadline
            and os.getppid() == self.parent
        )

    def _ask(self, thread: int) -> None:
        rng = random.Random(f"{self.spec.seed}:{self.spec.index}:{thread}")
        user = self.spec.priority == "user"
        while self._running():
            if user:
                number = rng.choices(range(1, POPULAR_ISSUES + 1), cum_weights=self._cumulative)
                path, params = f"/issue/4000-{number[0]}/", {"format": "json"}
            else:
                with self._lock:
                    page = next(self._pages) % (ISSUES_TOTAL // PAGE_SIZE)
                path = "/issues/"
                params = {
                    "format": "json",
                    "limit": str(PAGE_SIZE),
                    "offset": str(page * PAGE_SIZE),
                }
            record = self._request(path, params)
            with self._lock:
                self._records.append(record)
            if record.outcome == "cut":
                return
            if user and self.stop.wait(rng.uniform(0, 2 * USER_PAUSE_S)):
                return

    def _request(self, path: str, params: dict[str, str]) -> Record:
        state = self._local
        state.joined, state.limiter, state.upstream_calls = False, "", 0
        key = f"/api{path}?{urlencode(sorted(params.items()))}"
        outcome, status, digest, error = "error", None, None, None
        began = time.perf_counter()
        try:
            response = self.session.get(
                self.spec.base_url + path,
                params={**params, "api_key": API_KEY},
                priority=self.spec.priority,
                timeout=HTTP_TIMEOUT_S,
            )
        except RateLimitedError:
            outcome = "refused"
            state.limiter = "refused"
        except _RunEndedError:
            outcome = "cut"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            status = response.status_code
            digest = hashlib.sha256(response.content).hexdigest()
            if not getattr(response, "from_cache", False):
                outcome = "upstream"
            else:
                outcome = "dedupe" if state.joined else "cache"
        return Record(
            priority=self.spec.priority,
            key=key,
            outcome=outcome,
            status=status,
            latency_ms=(time.perf_counter() - began) * 1000,
            sha256=digest,
            upstream_calls=state.upstream_calls,
            limiter=state.limiter,
            error=error,
        )

    def flush(self) -> None:
        """Send the records made since the last flush, with the DynamoDB totals so far."""
        with self._lock:
            records, self._records = self._records, []
            totals = self._totals.snapshot()
        self.outbox.put(("batch", self.spec.index, records, totals))

    def close(self) -> None:
        self.session.close()
        for store in self._stores:
            store.close()


def worker_main(spec: WorkerSpec, outbox: Outbox, start: Event, stop: Event) -> None:
    """A worker process: build, report ready, run between ``start`` and ``stop``, report done.

    Ctrl-C belongs to the parent (it reaches the whole process group): the parent stops the
    workers through ``stop``, after they have sent what they saw.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        worker = _Worker(spec, outbox, stop)
    except Exception:
        outbox.put(("failed", spec.index, traceback.format_exc()))
        return
    outbox.put(("ready", spec.index, os.getpid()))
    try:
        if start.wait(READY_TIMEOUT_S) and not stop.is_set():
            worker.run()
    except Exception:
        outbox.put(("failed", spec.index, traceback.format_exc()))
    finally:
        try:
            worker.close()
        finally:
            outbox.put(("done", spec.index))
            if os.getppid() != worker.parent:
                outbox.cancel_join_thread()  # nobody reads: exit without flushing the queue


# ============================================================================== parent side


class _SetupError(Exception):
    """The demo cannot run as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class _Settings:
    workers: int
    seconds: float
    endpoint: str | None
    table: str | None
    region: str | None
    as_json: bool
    disabled: frozenset[str]

    @property
    def split(self) -> tuple[int, int]:
        """(user, background) workers: a third crawl, at least one of each."""
        background = max(1, self.workers // 3)
        return self.workers - background, background


def _is_loopback(endpoint: str) -> bool:
    host = (urlsplit(endpoint).hostname or "").lower()
    return host in {"localhost", "::1"} or host.startswith("127.")


def _use_dummy_credentials() -> None:
    """DynamoDB Local takes any credentials; dummy ones keep botocore off instance metadata."""
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        os.environ["AWS_ACCESS_KEY_ID"] = "local"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "local"
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (0 for none)."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore Ctrl-C for the block (teardown must finish; every wait in it is bounded)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass(slots=True)
class _Tally:
    """Everything the workers reported, and the running counts the live view shows."""

    records: list[Record] = field(default_factory=list)
    totals: dict[int, dict[str, Any]] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    limiter: Counter[str] = field(default_factory=Counter)

    def add(self, worker: int, records: list[Record], totals: dict[str, Any]) -> None:
        self.records.extend(records)
        self.totals[worker] = totals
        self.outcomes.update(record.outcome for record in records)
        self.limiter.update(r.limiter for r in records if r.limiter and r.outcome != "cut")

    @property
    def dynamodb_requests(self) -> int:
        return sum(int(t["requests"]) for t in self.totals.values())


class _Demo:
    """One run: its DynamoDB, table, APIs and workers, and what they reported."""

    def __init__(self, settings: _Settings, err: Console) -> None:
        self.settings = settings
        self.err = err
        self.run_id = uuid.uuid4().hex[:8]
        self.local: LocalDynamoDB | None = None
        self.endpoint: str | None = settings.endpoint
        self.region: str | None = settings.region if settings.endpoint else REGION
        self.source = "endpoint"
        self.table = settings.table or f"comic-vine-demo-{self.run_id}"
        self.table_created = False
        self.table_deleted = False
        self.api: FakeComicVine | None = None
        self.reference: FakeComicVine | None = None
        self.processes: list[SpawnProcess] = []
        self.specs: list[WorkerSpec] = []
        self.outbox: Outbox | None = None
        self.start_event: Event | None = None
        self.stop_event: Event | None = None
        self.ready: set[int] = set()
        self.done: set[int] = set()
        self.tally = _Tally()
        self.began = time.monotonic()
        self.run_started: float | None = None
        self.run_ended: float | None = None
        self.api_calls: Counter[str] = Counter()
        self.api_rejected = 0
        self.expected: dict[str, str] = {}

    def say(self, message: str) -> None:
        self.err.print(Text.assemble(("demo ", "bold"), message), soft_wrap=True)

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        """DynamoDB, the table, the APIs, then the workers, each ready to go."""
        if self.endpoint is None:
            _use_dummy_credentials()
            self.say("starting DynamoDB Local...")
            started = time.monotonic()
            self.local = start_local_dynamodb()
            self.endpoint, self.source = self.local.endpoint, self.local.kind
            self.say(
                f"DynamoDB Local ({self.local.kind}) at {self.endpoint} "
                f"in {time.monotonic() - started:.1f} s"
            )
        self._prepare_table()
        self.api = FakeComicVine(
            limit=API_LIMIT,
            window_s=API_WINDOW_S,
            latency_s=API_LATENCY_S,
            totals={"issue": ISSUES_TOTAL},
        )
        self.api.start()
        self.reference = FakeComicVine(limit=2**62, totals={"issue": ISSUES_TOTAL})
        self.reference.start()
        self.say(
            f"fake Comic Vine at {self.api.base_url}: {API_LIMIT} requests per resource per "
            f"{API_WINDOW_S:g} s; limiter: {LIMITER_LIMIT} per {LIMITER_WINDOW_MS / 1000:g} s"
        )
        self._start_workers()

    def _prepare_table(self) -> None:
        try:
            self._find_or_create_table()
        except (PynamoDBException, BotoCoreError) as exc:
            message = f"DynamoDB at {self.endpoint} did not answer as expected: {exc}"
            raise _SetupError(message) from exc

    def _find_or_create_table(self) -> None:
        assert self.endpoint is not None
        where: dict[str, Any] = {"region": self.region, "endpoint": self.endpoint}
        if table_exists(self.table, **where):
            mismatches = verify_table(self.table, **where)
            if mismatches:
                listed = "; ".join(str(m) for m in mismatches)
                raise _SetupError(f"table {self.table!r} exists but does not verify: {listed}")
            self.say(f"table {self.table} exists and verifies: reused")
            return
        self.table_created = create_table(self.table, exist_ok=True, **where)
        self.say(f"table {self.table} created")

    def _start_workers(self) -> None:
        assert self.api is not None
        ctx = multiprocessing.get_context("spawn")
        self.outbox = ctx.Queue()
        self.start_event, self.stop_event = ctx.Event(), ctx.Event()
        users, crawlers = self.settings.split
        roles: list[Priority] = [
            "user" if n < users else "background" for n in range(users + crawlers)
        ]
        self.specs = [
            WorkerSpec(
                index=index,
                priority=role,
                threads=THREADS_PER_WORKER,
                seconds=self.settings.seconds,
                base_url=self.api.base_url,
                table=self.table,
                endpoint=self.endpoint,
                region=self.region,
                key_prefix=f"demo-{self.run_id}",
                disabled=self.settings.disabled,
                seed=index,
            )
            for index, role in enumerate(roles)
        ]
        self.say(
            f"starting {len(roles)} workers ({users} user, {crawlers} background, "
            f"{THREADS_PER_WORKER} threads each)..."
        )
        started = time.monotonic()
        # Started with Ctrl-C ignored, which they inherit: only the parent handles it.
        with _sigint_ignored():
            for spec in self.specs:
                process = ctx.Process(
                    target=worker_main,
                    args=(spec, self.outbox, self.start_event, self.stop_event),
                    name=f"demo-{spec.priority}-{spec.index}",
                    daemon=True,
                )
                process.start()
                self.processes.append(process)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(self.ready) < len(self.specs):
            self._receive(timeout=0.5)
            if self.tally.failures:
                index, trace = next(iter(self.tally.failures.items()))
                raise _SetupError(f"worker {index} could not start:\n{trace}")
            if time.monotonic() > deadline:
                raise _SetupError(f"workers not ready within {READY_TIMEOUT_S:g} s")
        self.say(f"workers ready in {time.monotonic() - started:.1f} s")

    # -- run -------------------------------------------------------------------------------

    def drive(self) -> None:
        """Let the workers go for ``seconds``, showing progress, then tell them to stop."""
        assert self.start_event is not None
        assert self.stop_event is not None
        self.say(f"running for {self.settings.seconds:g} s (Ctrl-C stops early)")
        self.run_started = time.monotonic()
        deadline = self.run_started + self.settings.seconds
        self.start_event.set()
        try:
            with Live(self._progress(), console=self.err, refresh_per_second=4) as live:
                while time.monotonic() < deadline and len(self.done) < len(self.specs):
                    self._receive(timeout=REFRESH_EVERY_S)
                    live.update(self._progress())
                self.run_ended = time.monotonic()
                self.stop_event.set()
                live.update(self._progress())
        finally:
            if not self.err.is_terminal:
                self.err.line()  # a terminal's live display ends its own line

    def _receive(self, *, timeout: float) -> None:
        """Handle the workers' messages for up to ``timeout`` seconds."""
        assert self.outbox is not None
        until = time.monotonic() + timeout
        while True:
            try:
                message = self.outbox.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                return
            kind, index = message[0], message[1]
            if kind == "ready":
                self.ready.add(index)
            elif kind == "batch":
                self.tally.add(index, message[2], message[3])
            elif kind == "failed":
                self.tally.failures[index] = message[2]
            elif kind == "done":
                self.done.add(index)

    def _progress(self) -> Text:
        started = self.run_started if self.run_started is not None else time.monotonic()
        elapsed = (self.run_ended or time.monotonic()) - started
        outcomes, limiter = self.tally.outcomes, self.tally.limiter
        answered = sum(outcomes[name] for name in ("cache", "dedupe", "upstream"))
        rejected = self.api.rejected if self.api is not None else 0
        parts = [
            f"{elapsed:.0f}/{self.settings.seconds:g} s",
            f"{answered:,} answered ({answered / max(elapsed, 1e-9):.0f}/s)",
            f"{outcomes['cache']:,} cache hits",
            f"{outcomes['dedupe']:,} dedupe joins",
            f"{outcomes['upstream']:,} upstream",
            f"{rejected} API 420s",
            f"{limiter['waited']:,} limiter waits",
            f"{limiter['refused']:,} refusals",
            f"{self.tally.dynamodb_requests:,} DynamoDB requests",
        ]
        return Text(" | ".join(parts))

    # -- stop ------------------------------------------------------------------------------

    def stop_workers(self) -> None:
        """Stop the workers, take in their last records, and make sure every one is gone."""
        if self.stop_event is not None:
            self.stop_event.set()
        if self.start_event is not None:
            self.start_event.set()  # workers still waiting to start see the stop and leave
        if self.run_started is not None and self.run_ended is None:
            self.run_ended = time.monotonic()
        if self.outbox is not None:
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while self._running_workers() - self.done and time.monotonic() < deadline:
                self._receive(timeout=0.2)
            self._receive(timeout=0.0)
        for process in self.processes:
            process.join(JOIN_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join(JOIN_TIMEOUT_S)
        if self.outbox is not None:
            self._receive(timeout=0.0)
            self.outbox.close()
            self.outbox.join_thread()
        if self.api is not None:
            self.api_calls = self.api.calls
            self.api_rejected = self.api.rejected

    def _running_workers(self) -> set[int]:
        return {index for index, process in enumerate(self.processes) if process.is_alive()}

    def close(self) -> None:
        """Stop the APIs, delete the table if this run made it on a DynamoDB Local, stop
        DynamoDB Local if this run started it."""
        for api in (self.api, self.reference):
            if api is not None:
                api.stop()
        local = self.local is not None or (
            self.endpoint is not None and _is_loopback(self.endpoint)
        )
        if self.table_created and local and self.endpoint is not None:
            try:
                self.table_deleted = delete_table(
                    self.table, region=self.region, endpoint=self.endpoint, missing_ok=True
                )
            except (DynamoDBStoreError, PynamoDBException, BotoCoreError) as exc:
                self.say(f"could not delete table {self.table}: {exc}")
        elif self.table_created:
            self.say(f"table {self.table} kept on {self.endpoint}")
        if self.local is not None:
            self.local.close()

    # -- verdict ---------------------------------------------------------------------------

    def fetch_reference_digests(self) -> None:
        """SHA-256 of the body of every URL answered 200, from the reference API (which
        nobody else asked), for :meth:`summary` to compare with."""
        assert self.reference is not None
        keys = {r.key for r in self.tally.records if r.status == 200}
        base = self.reference.base_url.removesuffix("/api")
        with requests.Session() as session:
            session.trust_env = False  # loopback, never through a proxy
            for key in sorted(keys - self.expected.keys()):
                separator = "&" if "?" in key else "?"
                response = session.get(
                    f"{base}{key}{separator}api_key={API_KEY}",
                    headers={"Accept-Encoding": "identity"},
                    timeout=HTTP_TIMEOUT_S,
                )
                self.expected[key] = hashlib.sha256(response.content).hexdigest()

    def summary(self, *, interrupted: bool) -> dict[str, Any]:
        """The run in numbers: every JSON key, the table's rows, the invariants."""
        records = self.tally.records
        logical = [r for r in records if r.outcome != "cut"]
        answered = [r for r in logical if r.status is not None]
        expected = self.expected
        wrong = sum(
            1
            for r in answered
            if r.status != 420 and (r.status != 200 or r.sha256 != expected.get(r.key))
        )
        errors = sum(1 for r in logical if r.outcome == "error") + len(self.tally.failures)
        duplicates = sum(n - 1 for n in self.api_calls.values() if n > 1)

        def by_priority(count: Callable[[Record], int]) -> dict[str, int]:
            return {p: sum(count(r) for r in logical if r.priority == p) for p in PRIORITIES}

        def latency(priority: str | None) -> dict[str, float]:
            ordered = sorted(
                r.latency_ms for r in answered if priority is None or r.priority == priority
            )
            return {
                "p50_ms": round(_percentile(ordered, 0.50), 1),
                "p99_ms": round(_percentile(ordered, 0.99), 1),
            }

        totals = self.tally.totals.values()
        dynamodb_requests = sum(int(t["requests"]) for t in totals)
        capacity = sum(float(t["capacity"]) for t in totals)
        by_store: dict[str, dict[str, float]] = {}
        for t in totals:
            for name, (n, units) in t["by_store"].items():
                entry = by_store.setdefault(name, {"requests": 0, "consumed_capacity": 0.0})
                entry["requests"] += n
                entry["consumed_capacity"] = round(entry["consumed_capacity"] + units, 1)
        roles = {spec.index: spec.priority for spec in self.specs}
        dynamodb_by_priority = {
            p: sum(int(t["requests"]) for i, t in self.tally.totals.items() if roles[i] == p)
            for p in PRIORITIES
        }
        upstream_420 = self.api_rejected
        invariants = {
            "upstream_420": upstream_420 == 0,
            "duplicate_upstream_fetches": duplicates == 0,
            "wrong_bodies": wrong == 0,
            "errors": errors == 0,
        }
        n = max(len(logical), 1)
        resource_calls: Counter[str] = Counter()
        for key, calls in self.api_calls.items():
            resource_calls[key.removeprefix("/api/").split("/", 1)[0]] += calls
        run_s = (self.run_ended or time.monotonic()) - (self.run_started or time.monotonic())
        users, crawlers = self.settings.split
        return {
            "ok": all(invariants.values()),
            "broken": sorted(name for name, held in invariants.items() if not held),
            "interrupted": interrupted,
            "logical_requests": len(logical),
            "cache_hits": sum(r.outcome == "cache" for r in logical),
            "dedupe_joins": sum(r.outcome == "dedupe" for r in logical),
            "upstream_calls": sum(r.upstream_calls for r in records),
            "upstream_420": upstream_420,
            "duplicate_upstream_fetches": duplicates,
            "wrong_bodies": wrong,
            "errors": errors,
            "unfinished": len(records) - len(logical),
            "admitted": {
                p: sum(r.upstream_calls for r in records if r.priority == p) for p in PRIORITIES
            },
            "refused": by_priority(lambda r: r.limiter != ""),
            "waited": by_priority(lambda r: r.limiter == "waited"),
            "rate_limited": by_priority(lambda r: r.outcome == "refused"),
            "by_priority": {
                p: {
                    "logical_requests": sum(r.priority == p for r in logical),
                    "cache_hits": sum(r.priority == p and r.outcome == "cache" for r in logical),
                    "dedupe_joins": sum(r.priority == p and r.outcome == "dedupe" for r in logical),
                    "upstream": sum(r.priority == p and r.outcome == "upstream" for r in logical),
                    "dynamodb_requests": dynamodb_by_priority[p],
                    **latency(p),
                }
                for p in PRIORITIES
            },
            **latency(None),
            "dynamodb_requests": dynamodb_requests,
            "consumed_capacity": round(capacity, 1),
            "dynamodb_requests_per_request": round(dynamodb_requests / n, 2),
            "consumed_capacity_per_request": round(capacity / n, 2),
            "dynamodb_by_store": by_store,
            "dynamodb_failed_operations": sum(int(t["failed"]) for t in totals),
            "store_unavailable": sum(int(t["unavailable"]) for t in totals),
            "api": {
                "served": sum(self.api_calls.values()),
                "distinct_urls": len(self.api_calls),
                "by_resource": dict(sorted(resource_calls.items())),
            },
            "limits": {
                "api_limit": API_LIMIT,
                "api_window_s": API_WINDOW_S,
                "limiter_limit": LIMITER_LIMIT,
                "limiter_window_ms": LIMITER_WINDOW_MS,
                "user_max_wait_ms": USER_MAX_WAIT_MS,
                "background_max_wait_ms": BACKGROUND_MAX_WAIT_MS,
            },
            "workers": {"user": users, "background": crawlers, "threads": THREADS_PER_WORKER},
            "seconds": self.settings.seconds,
            "disabled": sorted(self.settings.disabled),
            "dynamodb": {
                "source": self.source,
                "endpoint": self.endpoint,
                "table": self.table,
                "table_created": self.table_created,
                "table_deleted": self.table_deleted,
            },
            "run_s": round(run_s, 2),
            "total_s": round(time.monotonic() - self.began, 2),
        }


# -- output ---------------------------------------------------------------------------------------


def render(summary: dict[str, Any]) -> Group:
    """The summary table, then one line per invariant."""
    by = summary["by_priority"]
    workers = summary["workers"]
    limits = summary["limits"]
    table = Table(
        title=(
            f"{workers['user']} user + {workers['background']} background workers x "
            f"{workers['threads']} threads, {summary['run_s']:g} s"
        ),
        title_justify="left",
        caption=(
            f"API: {limits['api_limit']} per {limits['api_window_s']:g} s per resource; "
            f"limiter: {limits['limiter_limit']} per {limits['limiter_window_ms'] / 1000:g} s; "
            f"waits for it: user up to {limits['user_max_wait_ms'] / 1000:g} s, "
            f"background up to {limits['background_max_wait_ms'] / 1000:g} s"
        ),
        caption_justify="left",
    )
    table.add_column("")
    for name in ("user", "background", "all"):
        table.add_column(name, justify="right")

    def row(label: str, user: object, background: object, total: object) -> None:
        table.add_row(
            label, *(f"{v:,}" if isinstance(v, int) else str(v) for v in (user, background, total))
        )

    def split(label: str, values: dict[str, int], total: int | None = None) -> None:
        row(
            label,
            values["user"],
            values["background"],
            total if total is not None else sum(values.values()),
        )

    split("logical requests", {p: by[p]["logical_requests"] for p in PRIORITIES})
    split("cache hits", {p: by[p]["cache_hits"] for p in PRIORITIES})
    split("dedupe joins", {p: by[p]["dedupe_joins"] for p in PRIORITIES})
    split("upstream calls (admitted)", summary["admitted"])
    split("limiter: refused, then admitted", summary["waited"])
    split("limiter: refused for good, not sent", summary["rate_limited"])
    row("p50 latency (ms)", by["user"]["p50_ms"], by["background"]["p50_ms"], summary["p50_ms"])
    row("p99 latency (ms)", by["user"]["p99_ms"], by["background"]["p99_ms"], summary["p99_ms"])
    split(
        "DynamoDB requests",
        {p: by[p]["dynamodb_requests"] for p in PRIORITIES},
        summary["dynamodb_requests"],
    )
    table.add_section()
    row("DynamoDB requests per request", "", "", f"{summary['dynamodb_requests_per_request']:.2f}")
    row("capacity units per request", "", "", f"{summary['consumed_capacity_per_request']:.2f}")
    row("capacity units in all", "", "", f"{summary['consumed_capacity']:,.1f}")
    row("upstream 420s", "", "", summary["upstream_420"])
    row("URLs fetched upstream twice", "", "", summary["duplicate_upstream_fetches"])
    row("wrong bodies", "", "", summary["wrong_bodies"])
    row("errors", "", "", summary["errors"])
    lines: list[Table | Text] = [table]
    checks = (
        ("upstream_420", "the API never answered 420"),
        ("duplicate_upstream_fetches", "no URL reached the API twice"),
        ("wrong_bodies", "every body is the API's body for its URL"),
        ("errors", "no request failed, no worker died"),
    )
    for name, text in checks:
        held = name not in summary["broken"]
        lines.append(
            Text(f"{'ok    ' if held else 'BROKEN'} {text}", style="green" if held else "bold red")
        )
    if summary["interrupted"]:
        lines.append(Text("interrupted: the numbers cover the run until Ctrl-C", style="yellow"))
    return Group(*lines)


# -- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's flags, for ``python -m comic_vine_dynamodb_store.demo`` and the CLI."""
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"worker processes, a third of them background crawlers (default {DEFAULT_WORKERS})",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help=f"how long the workers run (default {DEFAULT_SECONDS:g})",
    )
    parser.add_argument(
        "--endpoint",
        help="a running DynamoDB to use instead of starting DynamoDB Local (AWS: "
        "https://dynamodb.<region>.amazonaws.com, with your own credentials)",
    )
    parser.add_argument(
        "--region",
        help="region of --endpoint (default AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)",
    )
    parser.add_argument(
        "--table",
        help="table to use: reused if it exists and verifies, else created "
        "(default a fresh comic-vine-demo-<random>)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the summary as one JSON object on stdout"
    )
    # Turns a protection off, to watch an invariant break (the tests do).
    parser.add_argument(
        "--disable", action="append", choices=PROTECTIONS, default=[], help=argparse.SUPPRESS
    )


def _settings(args: argparse.Namespace) -> _Settings:
    if args.workers < 2:
        raise _SetupError("--workers must be at least 2 (one user, one background)")
    if not args.seconds > 0:
        raise _SetupError("--seconds must be more than 0")
    if args.region and not args.endpoint:
        raise _SetupError("--region goes with --endpoint")
    return _Settings(
        workers=args.workers,
        seconds=args.seconds,
        endpoint=args.endpoint,
        table=args.table,
        region=args.region,
        as_json=args.json,
        disabled=frozenset(args.disable),
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo as ``args`` say; the exit code (see the module docs)."""
    err = Console(stderr=True)
    try:
        settings = _settings(args)
    except _SetupError as exc:
        err.print(f"demo: {exc}", highlight=False, markup=False, soft_wrap=True)
        return EXIT_CANNOT_RUN
    demo = _Demo(settings, err)
    interrupted = False
    failure: str | None = None
    summary: dict[str, Any] | None = None
    try:
        demo.start()
        demo.drive()
    except KeyboardInterrupt:
        interrupted = True
    except (_SetupError, DynamoDBStoreError) as exc:
        failure = str(exc)
    finally:
        with _sigint_ignored():
            if interrupted:
                demo.say("interrupted: stopping the workers...")
            demo.stop_workers()
            ran = demo.run_started is not None and failure is None
            if ran:
                demo.fetch_reference_digests()
            demo.close()
            if ran:
                summary = demo.summary(interrupted=interrupted)
    if failure is not None:
        err.print(f"demo: {failure}", highlight=False, markup=False, soft_wrap=True)
        return EXIT_CANNOT_RUN
    if summary is None:
        return EXIT_INTERRUPTED
    _report(summary, as_json=settings.as_json)
    for index, trace in sorted(demo.tally.failures.items()):
        err.print(f"worker {index} failed:\n{trace}", highlight=False, markup=False)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if summary["ok"] else EXIT_BROKEN


def _report(summary: dict[str, Any], *, as_json: bool) -> None:
    """The summary on stdout: one JSON object, or the table."""
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        sys.stdout.flush()
    else:
        Console().print(render(summary))


def main(argv: list[str] | None = None) -> int:
    """``python -m comic_vine_dynamodb_store.demo [flags]``."""
    parser = argparse.ArgumentParser(
        prog="python -m comic_vine_dynamodb_store.demo",
        description=(
            "Worker processes share one DynamoDB table to cache, de-duplicate and rate-limit "
            "their calls to a local fake Comic Vine API, which must never answer 420."
        ),
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
