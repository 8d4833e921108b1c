"""simyan through ``protect`` in three processes: one ``FakeComicVine``, one DynamoDB table.

The parent starts one ``FakeComicVine`` whose per-resource limit is below what the workers ask
for. Each worker process ("spawn": its own interpreter, botocore clients and stores) builds
the DynamoDB cache, dedupe and rate-limit stores on the test's table, the rate limit set to
the API's own ``LIMIT``, and one simyan ``Comicvine`` pointed at the fake and put behind them
with ``protect``. Several threads per worker, released together by one barrier, then ask for
the same issues (each thread in its own order) and the same list pages.

What must hold: each URL reaches the API exactly once, every thread gets the bodies simyan
validated (the same issues with the same names everywhere), and the API never answers 420:
the shared limiter makes the flow wait instead.

The limiter's window is the API's plus a margin. The limiter counts a request at the start of
its admission, the API when the request arrives; on two busy cores an admission's round trip
to DynamoDB Local takes a quarter of a second or more, so with equal windows a request
admitted as an old one leaves the limiter's window can reach the API while that old one is
still in the API's, and the API answers 420 (a few per run here). The margin covers that
time, as the minute in ``COMIC_VINE_RATE_LIMIT`` does for Comic Vine's hour; each worker
reports its slowest admission, so a 420 says whether the margin was too small.

The harness (worker processes, queues, timeouts, cleanup) is ``fleet``'s. Like the other
process tests, this module does not import pytest, so each spawned worker imports less.
"""

from __future__ import annotations

import math
import random
import threading
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from simyan.comicvine import Comicvine  # type: ignore[import-untyped]

from comic_vine_dynamodb_store.demo import FakeComicVine
from comic_vine_dynamodb_store.integrations.simyan import protect
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore
from tests.concurrency import fleet as harness
from tests.concurrency.fleet import BARRIER_TIMEOUT_S, REGION, Outbox, WorkerSpec, now_ms

API_KEY = "process-test-key"
WORKERS = 3
THREADS = 3
ISSUE_IDS = tuple(range(1, 21))
LIST_RESULTS = 250  # list_issues pages: offsets 0, 100 and 200
LIMIT = 10  # per resource per window, for the API and the shared limiter alike
API_WINDOW_MS = 1500
LIMITER_WINDOW_MS = API_WINDOW_MS + 1500
JOIN_MARGIN_S = 60.0


# --------------------------------------------------------------------------- worker side


IssueSeen = tuple[int, str | None, str | None, int]
"""What a thread kept of a validated ``Issue``: id, name, number and volume id."""


@dataclass(frozen=True, slots=True)
class ThreadReport:
    """What one thread got, and when it started and finished (epoch ms)."""

    worker: int
    thread: int
    issues: tuple[IssueSeen, ...]
    listed: tuple[int, ...]
    started_ms: int
    returned_ms: int
    error: str | None


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """One worker's threads, and what its flow announced meanwhile."""

    worker: int
    threads: tuple[ThreadReport, ...]
    upstream_keys: tuple[str, ...]
    limiter_waits: int
    served_by_others: int
    slowest_admission_ms: int


class TimedRateLimitStore(DynamoDBRateLimitStore):
    """The DynamoDB rate-limit store, keeping how long its slowest admission took."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.slowest_admission_ms = 0
        self._slowest_lock = threading.Lock()

    def acquire(self, resource: str) -> bool:
        started = now_ms()
        admitted = super().acquire(resource)
        if admitted:
            with self._slowest_lock:
                self.slowest_admission_ms = max(self.slowest_admission_ms, now_ms() - started)
        return admitted


class _Stores:
    """The worker's stores and its protected ``Comicvine``, closed together."""

    def __init__(
        self,
        cache: DynamoDBCacheStore[Any],
        dedupe: DynamoDBDedupeStore[Any],
        rate_limit: TimedRateLimitStore,
        comicvine: Any,
    ) -> None:
        self.cache = cache
        self.dedupe = dedupe
        self.rate_limit = rate_limit
        self.comicvine = comicvine

    def close(self) -> None:
        self.comicvine._session.close()
        for store in (self.cache, self.dedupe, self.rate_limit):
            store.close()


class _Worker:
    """What a worker process does on command; every public method is a command."""

    def __init__(self, index: int, store: _Stores, barrier: Barrier) -> None:
        self.index = index
        self.store = store
        self.barrier = barrier
        self._lock = threading.Lock()
        self._upstream: list[str] = []
        self._limiter_waits = 0
        self._served_by_others = 0
        flow = store.comicvine._session.flow
        signals.client_upstream_call.connect(self._on_upstream, sender=flow, weak=False)
        signals.client_limiter_waited.connect(self._on_limiter_wait, sender=flow, weak=False)
        for signal in (signals.client_cache_hit, signals.client_dedupe_joined):
            signal.connect(self._on_served_by_others, sender=flow, weak=False)

    def _on_upstream(self, sender: object, event: signals.ClientEvent) -> None:
        with self._lock:
            self._upstream.append(event.key)

    def _on_limiter_wait(self, sender: object, event: signals.ClientEvent) -> None:
        with self._lock:
            self._limiter_waits += 1

    def _on_served_by_others(self, sender: object, event: signals.ClientEvent) -> None:
        with self._lock:
            self._served_by_others += 1

    def _fetch_one(
        self, thread: int, issue_ids: Sequence[int], list_results: int, out: list[ThreadReport]
    ) -> None:
        comicvine = self.store.comicvine
        order = list(issue_ids)
        random.Random(f"{self.index}-{thread}").shuffle(order)
        issues: list[IssueSeen] = []
        listed: tuple[int, ...] = ()
        error: str | None = None
        started = returned = 0
        try:
            self.barrier.wait(BARRIER_TIMEOUT_S)
            started = now_ms()
            for position, issue_id in enumerate(order):
                if position == len(order) // 2:
                    listed = tuple(b.id for b in comicvine.list_issues(max_results=list_results))
                issue = comicvine.get_issue(issue_id)
                issues.append((issue.id, issue.name, issue.number, issue.volume.id))
            returned = now_ms()
        except Exception:
            error = traceback.format_exc()
        out.append(
            ThreadReport(
                self.index, thread, tuple(sorted(issues)), listed, started, returned, error
            )
        )

    def fetch(self, issue_ids: Sequence[int], list_results: int, threads: int) -> WorkerReport:
        """``threads`` threads, released by the barrier, each asking for every issue of
        ``issue_ids`` (in an order of its own) and, halfway, for ``list_results`` issues."""
        reports: list[ThreadReport] = []
        running = [
            threading.Thread(
                target=self._fetch_one,
                args=(t, issue_ids, list_results, reports),
                name=f"simyan-{self.index}-{t}",
            )
            for t in range(threads)
        ]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join(BARRIER_TIMEOUT_S + JOIN_MARGIN_S)
        with self._lock:
            return WorkerReport(
                self.index,
                tuple(sorted(reports, key=lambda r: r.thread)),
                tuple(self._upstream),
                self._limiter_waits,
                self._served_by_others,
                self.store.rate_limit.slowest_admission_ms,
            )


def make_worker(spec: WorkerSpec, barrier: Barrier | None, outbox: Outbox) -> _Worker:
    """A worker's stores and protected ``Comicvine``, every store's client built first."""
    assert barrier is not None
    table: dict[str, Any] = {"table_name": spec.table, "endpoint": spec.endpoint, "region": REGION}
    cache: DynamoDBCacheStore[Any] = DynamoDBCacheStore(**table)
    dedupe: DynamoDBDedupeStore[Any] = DynamoDBDedupeStore(**table)
    rate_limit = TimedRateLimitStore(
        **table, default_config={"limit": spec.options["limit"], "window_ms": LIMITER_WINDOW_MS}
    )
    cache.get(f"warm-up-{spec.index}")
    dedupe.is_in_progress(f"warm-up-{spec.index}")
    rate_limit.acquire(f"warm-up-{spec.index}")  # an admission's writes, before any race
    simyan_dir = Path(spec.options["simyan_dir"])
    comicvine = protect(
        Comicvine(
            API_KEY,
            base_url=spec.options["base_url"],
            cache_path=simyan_dir / f"cache-{spec.index}.sqlite",
            ratelimit_path=simyan_dir / f"limits-{spec.index}.sqlite",
        ),
        cache=cache,
        dedupe=dedupe,
        rate_limit=rate_limit,
        max_wait_ms=30_000,
    )
    return _Worker(spec.index, _Stores(cache, dedupe, rate_limit, comicvine), barrier)


# --------------------------------------------------------------------------- tests


def issue_key(base_url: str, issue_id: int) -> str:
    return f"GET {base_url}/issue/4000-{issue_id}/?format=json"


def test_three_processes_ask_the_api_once_per_url_within_its_rate_limit(
    endpoint: str, table_name: str, tmp_path: Path
) -> None:
    with FakeComicVine(limit=LIMIT, window_s=API_WINDOW_MS / 1000, latency_s=0.02) as api:
        options = [
            {"base_url": api.base_url, "limit": LIMIT, "simyan_dir": str(tmp_path)}
        ] * WORKERS
        with harness.fleet_of(
            make_worker,
            endpoint,
            table_name,
            options,
            barrier_parties=WORKERS * THREADS,
            name="simyan-worker",
        ) as fleet:
            reports: list[WorkerReport] = fleet.call_all(
                range(WORKERS), "fetch", ISSUE_IDS, LIST_RESULTS, THREADS
            )
        calls, rejected = api.calls, api.rejected
        base_url = api.base_url

    # The API never had to refuse a request.
    slowest_ms = max(report.slowest_admission_ms for report in reports)
    assert rejected == 0, (
        f"{rejected} answers 420; slowest admission {slowest_ms} ms, "
        f"margin {LIMITER_WINDOW_MS - API_WINDOW_MS} ms"
    )
    threads = [t for report in reports for t in report.threads]
    assert len(threads) == WORKERS * THREADS
    assert [t.error for t in threads if t.error] == []

    # Every URL reached the API once.
    pages = [0, 100, 200]
    expected_calls = {
        **{f"/api/issue/4000-{n}/?format=json": 1 for n in ISSUE_IDS},
        **{f"/api/issues/?format=json&limit=100&offset={offset}": 1 for offset in pages},
    }
    assert calls == expected_calls
    upstream = Counter(key for report in reports for key in report.upstream_keys)
    assert set(upstream.values()) == {1}
    assert {issue_key(base_url, n) for n in ISSUE_IDS} <= set(upstream)
    assert len(upstream) == len(expected_calls)

    # Demand was above the limit: the flow waited for the shared limiter instead.
    assert len(ISSUE_IDS) > LIMIT
    assert sum(report.limiter_waits for report in reports) > 0
    span_ms = max(t.returned_ms for t in threads) - min(t.started_ms for t in threads)
    windows_needed = math.ceil(len(ISSUE_IDS) / LIMIT) - 1
    assert span_ms >= windows_needed * LIMITER_WINDOW_MS, span_ms

    # Every thread of every process got the same validated bodies, most of them from others.
    asked = WORKERS * THREADS * (len(ISSUE_IDS) + len(pages))
    assert sum(report.served_by_others for report in reports) == asked - len(expected_calls)
    first = threads[0]
    assert [issue[0] for issue in first.issues] == list(ISSUE_IDS)
    for issue_id, name, number, volume_id in first.issues:
        assert name == (None if issue_id % 5 == 0 else f"Issue {issue_id}")
        assert number == str((issue_id - 1) % 10 + 1)
        assert volume_id == (issue_id - 1) // 10 + 1
    assert first.listed == tuple(range(1, LIST_RESULTS + 1))
    for thread in threads:
        assert thread.issues == first.issues, (thread.worker, thread.thread)
        assert thread.listed == first.listed, (thread.worker, thread.thread)
