"""``GuardedSession`` across real processes: one API, one table, every request made once.

Four worker processes ("spawn": fresh interpreters) each build their own
``DynamoDBCacheStore``, ``DynamoDBDedupeStore`` and ``DynamoDBRateLimitStore`` on one DynamoDB
Local table and one ``GuardedSession`` over them, shared by three threads. The parent runs one
``FakeComicVine`` that answers at most ``LIMIT`` requests of the ``issue`` resource per
``API_WINDOW_S``: below the demand, 50 distinct issues. Every thread asks for all 50, in its
own shuffled order, for several passes; all twelve threads start together on one barrier.

What must hold: every issue reaches the API exactly once (cache and dedupe across processes),
every caller gets the issue's exact body, and the API never answers 420, because the limiter
makes the callers wait for room instead. Bodies are checked against a second
``FakeComicVine`` (bodies depend only on the URL).

The limiter allows the same ``LIMIT`` per a longer window, ``LIMITER_WINDOW_S``. It counts a
request when DynamoDB admits it, the API when the request arrives; what lies between (the
rest of the ``acquire`` call, the send) differs from request to request. On two cores shared
with DynamoDB Local and twelve racing threads, ``acquire`` calls take up to ~0.75 s and sends
up to ~0.35 s, so with equal windows the API sees a 21st request inside its window (6 to 8
answers 420 per run). The window must be longer than the API's by more than that spread.

The harness (worker processes, queues, timeouts, cleanup) is ``fleet``'s. Like the other
process tests, this module does not import pytest, so each spawned worker imports less.
"""

from __future__ import annotations

import hashlib
import random
import threading
import traceback
from collections import Counter
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from typing import Any

import requests

from comic_vine_dynamodb_store.client import GuardedSession
from comic_vine_dynamodb_store.demo.fake_api import FakeComicVine
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore
from tests.concurrency import fleet as harness
from tests.concurrency.fleet import BARRIER_TIMEOUT_S, REGION, Outbox, WorkerSpec

API_KEY = "cv-process-key"
PROCESSES = 4
THREADS = 3
PASSES = 3
ISSUES = tuple(range(1, 51))
LIMIT = 25
API_WINDOW_S = 2.0
LIMITER_WINDOW_S = 4.0
"""25 per 2 s at the API; the limiter, 25 per 4 s (slices of 67 ms): 50 issues take two
windows."""
THREAD_JOIN_S = 120.0
SEED = 4000


def issue_url(base_url: str, number: int) -> str:
    return f"{base_url}/issue/4000-{number}/?api_key={API_KEY}"


# --------------------------------------------------------------------------- worker side


@dataclass(frozen=True, slots=True)
class Fetch:
    """One GET of one thread: what it asked for and what it got."""

    worker: int
    thread: int
    pass_: int
    issue: int
    status: int
    sha256: str
    from_cache: bool


@dataclass(frozen=True, slots=True)
class Report:
    """What one worker process saw: its GETs and the flow's signals for them."""

    worker: int
    fetches: tuple[Fetch, ...]
    upstream_calls: int
    limiter_waits: Counter[bool]
    dedupe_joins: int
    unavailable: int


class _Resources:
    """The worker's session and stores, closed together when the worker stops."""

    def __init__(self, session: GuardedSession, *stores: Any) -> None:
        self.session = session
        self.stores = stores

    def close(self) -> None:
        self.session.close()
        for store in self.stores:
            store.close()


class _Worker:
    """One process: a ``GuardedSession`` shared by ``THREADS`` threads; ``fetch`` is its
    command."""

    def __init__(
        self, index: int, base_url: str, resources: _Resources, barrier: Barrier | None
    ) -> None:
        self.index = index
        self.base_url = base_url
        self.store = resources
        self.session = resources.session
        self.barrier = barrier
        self._lock = threading.Lock()
        self._upstream = 0
        self._waits: Counter[bool] = Counter()
        self._joins = 0
        self._unavailable = 0
        flow = self.session.flow
        signals.client_upstream_call.connect(self._on_upstream, sender=flow, weak=False)
        signals.client_limiter_waited.connect(self._on_wait, sender=flow, weak=False)
        signals.client_dedupe_joined.connect(self._on_join, sender=flow, weak=False)
        signals.client_store_unavailable.connect(self._on_unavailable, sender=flow, weak=False)

    def _on_upstream(self, sender: object, event: signals.ClientEvent) -> None:
        with self._lock:
            self._upstream += 1

    def _on_wait(self, sender: object, event: signals.ClientEvent) -> None:
        with self._lock:
            self._waits[bool(event.admitted)] += 1

    def _on_join(self, sender: object, event: signals.ClientEvent) -> None:
        with self._lock:
            self._joins += 1

    def _on_unavailable(self, sender: object, event: signals.ClientEvent) -> None:
        with self._lock:
            self._unavailable += 1

    def _run_thread(
        self, thread: int, passes: list[list[int]], out: list[Fetch], errors: list[str]
    ) -> None:
        try:
            if self.barrier is None:
                raise RuntimeError("client workers start together: start them with a barrier")
            self.barrier.wait(BARRIER_TIMEOUT_S)
            for pass_, order in enumerate(passes):
                for issue in order:
                    response = self.session.get(issue_url(self.base_url, issue))
                    out.append(
                        Fetch(
                            worker=self.index,
                            thread=thread,
                            pass_=pass_,
                            issue=issue,
                            status=response.status_code,
                            sha256=hashlib.sha256(response.content).hexdigest(),
                            from_cache=bool(response.from_cache),  # type: ignore[attr-defined]
                        )
                    )
        except Exception:
            errors.append(f"thread {thread}:\n{traceback.format_exc()}")

    def fetch(self, plan: list[list[list[int]]]) -> Report:
        """Run one thread per entry of ``plan`` (its passes, each an order of issues)."""
        outs: list[list[Fetch]] = [[] for _ in plan]
        errors: list[str] = []
        threads = [
            threading.Thread(target=self._run_thread, args=(i, passes, outs[i], errors))
            for i, passes in enumerate(plan)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(THREAD_JOIN_S)
        if any(thread.is_alive() for thread in threads):
            errors.append(f"a thread did not finish within {THREAD_JOIN_S:.0f} s")
        if errors:
            raise RuntimeError("\n".join(errors))
        with self._lock:
            return Report(
                worker=self.index,
                fetches=tuple(fetch for out in outs for fetch in out),
                upstream_calls=self._upstream,
                limiter_waits=Counter(self._waits),
                dedupe_joins=self._joins,
                unavailable=self._unavailable,
            )


def make_worker(spec: WorkerSpec, barrier: Barrier | None, outbox: Outbox) -> _Worker:
    """The worker's stores and session, each store's client built by a first request."""
    where: dict[str, Any] = {
        "table_name": spec.table,
        "endpoint": spec.endpoint,
        "region": REGION,
        "cleanup_interval_ms": 0,
    }
    limit = {"limit": spec.options["limit"], "window_ms": spec.options["window_ms"]}
    cache: DynamoDBCacheStore[Any] = DynamoDBCacheStore(**where)
    dedupe: DynamoDBDedupeStore[Any] = DynamoDBDedupeStore(poll_interval_ms=50, **where)
    limiter = DynamoDBRateLimitStore(resource_configs={"issue": limit}, **where)
    cache.get(f"warm-up-{spec.index}")
    dedupe.is_in_progress(f"warm-up-{spec.index}")
    limiter.can_proceed("warm-up")
    session = GuardedSession(cache=cache, dedupe=dedupe, rate_limit=limiter)
    resources = _Resources(session, cache, dedupe, limiter)
    return _Worker(spec.index, spec.options["base_url"], resources, barrier)


# --------------------------------------------------------------------------- parent side


def expected_digests() -> dict[int, str]:
    """The SHA-256 of every issue's body, from an API of its own (nobody else's counts)."""
    with FakeComicVine() as reference, requests.Session() as session:
        digests = {}
        for issue in ISSUES:
            response = session.get(issue_url(reference.base_url, issue))
            assert response.status_code == 200, response.text[:200]
            assert response.json()["results"]["id"] == issue
            digests[issue] = hashlib.sha256(response.content).hexdigest()
        return digests


def test_4_processes_of_3_threads_fetch_each_issue_once_within_the_api_limit(
    endpoint: str, table_name: str
) -> None:
    rng = random.Random(SEED)
    plans = [
        [[rng.sample(ISSUES, len(ISSUES)) for _ in range(PASSES)] for _ in range(THREADS)]
        for _ in range(PROCESSES)
    ]
    expected = expected_digests()
    assert len(set(expected.values())) == len(ISSUES)  # a wrong issue cannot pass for another

    with FakeComicVine(limit=LIMIT, window_s=API_WINDOW_S) as api:
        options = [
            {"base_url": api.base_url, "limit": LIMIT, "window_ms": int(LIMITER_WINDOW_S * 1000)}
        ] * PROCESSES
        with harness.fleet_of(
            make_worker,
            endpoint,
            table_name,
            options,
            barrier_parties=PROCESSES * THREADS,
            name="client-worker",
        ) as fleet:
            for worker, plan in enumerate(plans):
                fleet.send(worker, "fetch", plan)
            reports: list[Report] = [fleet.result(worker) for worker in range(PROCESSES)]
        calls = api.calls
        rejected = api.rejected

    fetches = [fetch for report in reports for fetch in report.fetches]
    upstream = sum(report.upstream_calls for report in reports)
    waits: Counter[bool] = sum((report.limiter_waits for report in reports), Counter())
    summary = (
        f"{len(fetches)} GETs, {upstream} upstream, limiter waits {dict(waits)}, "
        f"dedupe joins {sum(r.dedupe_joins for r in reports)}, API calls {sum(calls.values())}, "
        f"420s {rejected}"
    )

    # The API: never over its limit, and every issue asked for exactly once.
    assert rejected == 0, summary
    assert calls == {f"/api/issue/4000-{issue}/": 1 for issue in ISSUES}, summary

    # Every thread made every GET of its plan, in its order, and got the issue's own body.
    for report, plan in zip(reports, plans, strict=True):
        for thread, passes in enumerate(plan):
            made = [
                (fetch.pass_, fetch.issue) for fetch in report.fetches if fetch.thread == thread
            ]
            wanted = [(pass_, issue) for pass_, order in enumerate(passes) for issue in order]
            assert made == wanted, f"worker {report.worker} thread {thread}"
    wrong = [f for f in fetches if f.status != 200 or f.sha256 != expected[f.issue]]
    assert wrong == [], f"{len(wrong)} wrong answers, first {wrong[:3]} ({summary})"

    # One live response per issue in the whole fleet; every other GET was served by the
    # stores (the cache, or another caller's fetch through dedupe).
    live = Counter(fetch.issue for fetch in fetches if not fetch.from_cache)
    assert live == dict.fromkeys(ISSUES, 1), summary
    assert upstream == len(ISSUES), summary

    # The demand was above the limit: the flow waited for the limiter, and every wait ended
    # in an admission (a refusal would have raised RateLimitedError in a thread).
    assert waits[True] > 0, summary
    assert waits[False] == 0, summary
    assert sum(report.unavailable for report in reports) == 0, summary
