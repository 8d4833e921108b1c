"""What a GET through ``GuardedSession`` costs in DynamoDB requests, and the time a hit adds.

A measurement, not a test: it prints what it measured and exits 0. One DynamoDB Local
(:func:`start_local_dynamodb`: ``DYNAMODB_ENDPOINT``, else Docker, else the jar), one fresh
table, and one ``FakeComicVine`` on loopback (its limit set out of reach) serve the whole run.
A ``GuardedSession`` runs over a ``DynamoDBCacheStore``, a ``DynamoDBDedupeStore`` and a
``DynamoDBRateLimitStore`` (a limit that is never reached, 60 s windows) on that table.

The counting pass meters every store: the ``operation_completed`` events (requests and
consumed capacity per store operation) and the HTTP requests each store's botocore client
sends (``before-send``, which must agree). Each logical GET is one of:

* ``miss``: an issue nobody asked for yet. Cache read (a miss), dedupe registration (the
  owner), a second cache read (another caller may have just finished), admission, the API,
  cache write, dedupe completion;
* ``hit``: the same issues again. One cache read;
* ``joined``: a second thread asks for an issue while the first thread's request is at the API
  (``--join-latency-ms`` per answer, so the first one is still in flight). Cache read,
  registration (which joins), polls of the job until it completes, and the cache read the
  finished job points to. Only the second thread's requests are counted.

Every answer is checked: the body is the API's, ``from_cache`` is as expected, and the API
served each issue once.

The timing pass compares a hit with a bare ``requests.Session`` GET of the same URL from the
same server (which serves it every time). After a warm-up, each round alternates one guarded
GET and one bare GET, each side charged for its own calls only, so machine noise lands on both
sides alike. A side's GETs per second is the median of its rounds; the ratio is guarded/bare;
the time added per hit is ``1/guarded - 1/bare``. Nothing is attached to any signal while
timing.

    .venv/bin/python bench/bench_client.py [--calls N] [--joins N] [--join-latency-ms MS]
                                           [--seconds S] [--rounds N] [--json] [--[no-]docker]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from comic_vine_dynamodb_store.client import GuardedSession, request_key
from comic_vine_dynamodb_store.demo.fake_api import FakeComicVine
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import REGION, Rounds, progress

API_KEY = "bench-key"
OUT_OF_REACH = 1_000_000_000
"""The API's limit and the limiter's: nothing in a run comes near it."""
JOIN_TIMEOUT_S = 30.0
MISS_FIRST_ISSUE = 1
WARMUP_ISSUE = 999

Store = Any

_caller = threading.local()
"""What the GET running on this thread is counted as (``tag``); thread idents are reused."""


def caller_tag() -> str | None:
    tag: str | None = getattr(_caller, "tag", None)
    return tag


def issue_url(base_url: str, number: int) -> str:
    return f"{base_url}/issue/4000-{number}/?api_key={API_KEY}"


def issue_path(number: int) -> str:
    return f"/api/issue/4000-{number}/"


# --------------------------------------------------------------------------- metering


@dataclass(frozen=True, slots=True)
class Operation:
    """One ``operation_completed`` event: which store did what, for which tagged caller."""

    store: str
    operation: str
    requests: int
    capacity: float
    outcome: str
    caller: str | None


@dataclass(slots=True, weakref_slot=True)
class Meter:
    """Every store operation and every HTTP request the stores' clients send, by caller."""

    operations: list[Operation] = field(default_factory=list)
    sends: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.operations.clear()
            self.sends.clear()

    def on_operation(self, sender: object, event: signals.OperationEvent) -> None:
        with self.lock:
            self.operations.append(
                Operation(
                    event.store,
                    event.operation,
                    event.requests,
                    event.consumed_capacity,
                    event.outcome,
                    caller_tag(),
                )
            )

    def on_send(self, **_: Any) -> None:
        with self.lock:
            self.sends.append(caller_tag())


def store_clients(stores: list[Store]) -> list[Any]:
    """The botocore clients the stores' requests go out on (each once)."""
    clients: dict[int, Any] = {}
    for store in stores:
        client = store._model(store.item_model)._get_connection().connection.client
        clients[id(client)] = client
    return list(clients.values())


@contextmanager
def metering(stores: list[Store]) -> Iterator[Meter]:
    """A :class:`Meter` attached to ``stores`` for the block only."""
    meter = Meter()
    clients = store_clients(stores)
    for store in stores:
        signals.operation_completed.connect(meter.on_operation, sender=store)
    for client in clients:
        client.meta.events.register_first(
            "before-send.dynamodb", meter.on_send, unique_id="bench-client-count"
        )
    try:
        yield meter
    finally:
        for client in clients:
            client.meta.events.unregister("before-send.dynamodb", unique_id="bench-client-count")
        for store in stores:
            signals.operation_completed.disconnect(meter.on_operation, sender=store)


# --------------------------------------------------------------------------- the costs


@dataclass(slots=True)
class Cost:
    """What one kind of logical GET cost, summed over its GETs."""

    case: str
    gets: int
    api_calls: int
    requests: int = 0
    requests_sent: int = 0
    capacity: float = 0.0
    failures: int = 0
    wrong_answers: int = 0
    polls: int = 0
    breakdown: dict[str, int] = field(default_factory=dict)
    capacity_breakdown: dict[str, float] = field(default_factory=dict)

    @property
    def requests_per_get(self) -> float:
        return self.requests / self.gets

    @property
    def capacity_per_get(self) -> float:
        return self.capacity / self.gets

    @property
    def consistent(self) -> bool:
        """Events and sent requests agree, no operation failed, every answer was right."""
        return (
            self.requests == self.requests_sent and self.failures == 0 and self.wrong_answers == 0
        )


def tally(case: str, gets: int, api_calls: int, meter: Meter, caller: str | None = None) -> Cost:
    """The cost of ``gets`` GETs from what ``meter`` saw (of ``caller`` only, if given)."""
    with meter.lock:
        operations = [op for op in meter.operations if caller is None or op.caller == caller]
        sends = [tag for tag in meter.sends if caller is None or tag == caller]
    breakdown: Counter[str] = Counter()
    capacity: dict[str, float] = {}
    for op in operations:
        name = f"{op.store}.{op.operation}"
        breakdown[name] += op.requests
        capacity[name] = capacity.get(name, 0.0) + op.capacity
    return Cost(
        case=case,
        gets=gets,
        api_calls=api_calls,
        requests=sum(op.requests for op in operations),
        requests_sent=len(sends),
        capacity=sum(op.capacity for op in operations),
        failures=sum(1 for op in operations if op.outcome != "success"),
        polls=sum(1 for op in operations if op.operation == "wait_for"),
        breakdown=dict(sorted(breakdown.items())),
        capacity_breakdown=dict(sorted(capacity.items())),
    )


def expected_bodies(numbers: range) -> dict[int, bytes]:
    """Every issue's body, from an API of its own (bodies depend only on the URL)."""
    with FakeComicVine(limit=OUT_OF_REACH) as reference, requests.Session() as bare:
        return {n: bare.get(issue_url(reference.base_url, n)).content for n in numbers}


def count_misses_and_hits(
    session: GuardedSession, api: FakeComicVine, meter: Meter, numbers: range
) -> list[Cost]:
    """One miss, then one hit, of every issue in ``numbers``."""
    bodies = expected_bodies(numbers)
    costs = []
    for case, from_cache in (("miss", False), ("hit", True)):
        api.reset_counts()
        meter.reset()
        wrong = 0
        for n in numbers:
            response = session.get(issue_url(api.base_url, n))
            if (
                response.status_code != 200
                or response.content != bodies[n]
                or response.from_cache is not from_cache  # type: ignore[attr-defined]
            ):
                wrong += 1
        cost = tally(case, len(numbers), api.total_calls, meter)
        if api.calls != ({} if from_cache else {issue_path(n): 1 for n in numbers}):
            wrong += 1  # an issue fetched twice, or a hit that reached the API
        cost.wrong_answers = wrong
        costs.append(cost)
    return costs


def count_joins(
    session: GuardedSession, api: FakeComicVine, meter: Meter, numbers: range, latency_s: float
) -> Cost:
    """For each issue: a first thread's GET goes to the API (slowed by ``latency_s``); once it
    is there, a second thread GETs the same issue. Only the second thread is counted."""
    bodies = expected_bodies(numbers)
    api.reset_counts()
    meter.reset()
    api.latency_s = latency_s
    in_flight = threading.Event()
    asked: dict[str, str] = {}
    joined: list[str | None] = []

    def on_upstream(sender: object, event: signals.ClientEvent) -> None:
        if event.key == asked.get("key"):
            in_flight.set()

    def on_joined(sender: object, event: signals.ClientEvent) -> None:
        if event.status == 200:
            joined.append(caller_tag())

    wrong = 0
    signals.client_upstream_call.connect(on_upstream, sender=session.flow)
    signals.client_dedupe_joined.connect(on_joined, sender=session.flow)
    try:
        for n in numbers:
            url = issue_url(api.base_url, n)
            asked["key"] = request_key("GET", url)
            in_flight.clear()
            answers: dict[str, requests.Response] = {}

            def get(role: str, url: str = url, answers: dict[str, Any] = answers) -> None:
                _caller.tag = f"{role} {url}"
                answers[role] = session.get(url)

            owner = threading.Thread(target=get, args=("owner",))
            owner.start()
            if not in_flight.wait(JOIN_TIMEOUT_S):
                raise RuntimeError(f"the first GET of issue {n} never reached the API")
            joiner = threading.Thread(target=get, args=("joiner",))
            joiner.start()
            for thread in (owner, joiner):
                thread.join(JOIN_TIMEOUT_S)
            first, second = answers.get("owner"), answers.get("joiner")
            if (
                first is None
                or second is None
                or first.content != bodies[n]
                or second.content != bodies[n]
                or first.from_cache  # type: ignore[attr-defined]
                or not second.from_cache  # type: ignore[attr-defined]
            ):
                wrong += 1
    finally:
        signals.client_upstream_call.disconnect(on_upstream, sender=session.flow)
        signals.client_dedupe_joined.disconnect(on_joined, sender=session.flow)
        api.latency_s = 0.0
    joiners = [f"joiner {issue_url(api.base_url, n)}" for n in numbers]
    # Each second GET must have joined the first one's job (not found it in the cache).
    wrong += sum(1 for tag in joiners if joined.count(tag) != 1) + (len(joined) != len(joiners))
    parts = [tally("joined", 1, 0, meter, tag) for tag in joiners]
    cost = Cost(
        case="joined",
        gets=len(parts),
        api_calls=0,
        requests=sum(p.requests for p in parts),
        requests_sent=sum(p.requests_sent for p in parts),
        capacity=sum(p.capacity for p in parts),
        failures=sum(p.failures for p in parts),
        polls=sum(p.polls for p in parts),
        breakdown=dict(sorted(sum((Counter(p.breakdown) for p in parts), Counter()).items())),
        capacity_breakdown={
            name: sum(p.capacity_breakdown.get(name, 0.0) for p in parts)
            for name in sorted({name for p in parts for name in p.capacity_breakdown})
        },
    )
    if api.calls != {issue_path(n): 1 for n in numbers}:
        wrong += 1
    cost.wrong_answers = wrong
    return cost


# --------------------------------------------------------------------------- the time of a hit


@dataclass(frozen=True, slots=True)
class Timing:
    """A hit against a bare GET, rounds alternating."""

    guarded_gets_s: float
    bare_gets_s: float
    ratio: float
    paired_ratio: float
    added_us_per_hit: float
    guarded_cpu_us_per_get: float
    bare_cpu_us_per_get: float
    guarded_rounds_gets_s: list[float]
    bare_rounds_gets_s: list[float]
    api_calls_by_guarded: int


def time_hits(
    session: GuardedSession,
    api: FakeComicVine,
    *,
    number: int,
    rounds: int,
    round_s: float,
    warmup_s: float,
) -> Timing:
    """Hits of issue ``number`` against bare GETs of it, in alternating rounds; the guarded
    side is checked first to be a hit with the API's body."""
    url = issue_url(api.base_url, number)
    with requests.Session() as bare:
        expected = bare.get(url).content
        session.get(url)  # the hit's value, stored
        hit = session.get(url)
        if not hit.from_cache or hit.content != expected:  # type: ignore[attr-defined]
            raise RuntimeError("the guarded GET is not a hit with the API's body")

        bare_gets = 0

        def guarded_get() -> object:
            return session.get(url)

        def bare_get() -> object:
            nonlocal bare_gets
            bare_gets += 1
            return bare.get(url)

        api.reset_counts()
        common.alternating_round(guarded_get, bare_get, warmup_s)
        result = Rounds()
        for _ in range(rounds):
            guarded_sample, bare_sample = common.alternating_round(guarded_get, bare_get, round_s)
            result.store.append(guarded_sample)
            result.raw.append(bare_sample)
    timing = common.medians(result)
    return Timing(
        guarded_gets_s=timing.store_ops_s,
        bare_gets_s=timing.raw_ops_s,
        ratio=timing.ratio,
        paired_ratio=timing.paired_ratio,
        added_us_per_hit=(1 / timing.store_ops_s - 1 / timing.raw_ops_s) * 1e6,
        guarded_cpu_us_per_get=timing.store_cpu_us_per_call,
        bare_cpu_us_per_get=timing.raw_cpu_us_per_call,
        guarded_rounds_gets_s=timing.store_rounds_ops_s,
        bare_rounds_gets_s=timing.raw_rounds_ops_s,
        api_calls_by_guarded=api.total_calls - bare_gets,
    )


# --------------------------------------------------------------------------- the run


@dataclass(slots=True)
class Report:
    costs: list[Cost]
    timing: Timing


def measure(
    endpoint: str,
    *,
    calls: int,
    joins: int,
    join_latency_s: float,
    rounds: int,
    round_s: float,
    warmup_s: float,
) -> Report:
    """Create a table, measure on it, delete it."""
    with common.fresh_table("bench-client", endpoint) as table:
        settings: dict[str, Any] = {
            "table_name": table,
            "region": REGION,
            "endpoint": endpoint,
            "cleanup_interval_ms": 0,
        }
        limit = {"limit": OUT_OF_REACH, "window_ms": 60_000}
        cache: DynamoDBCacheStore[Any] = DynamoDBCacheStore(**settings)
        dedupe: DynamoDBDedupeStore[Any] = DynamoDBDedupeStore(**settings)
        limiter = DynamoDBRateLimitStore(default_config=limit, **settings)
        stores: list[Store] = [cache, dedupe, limiter]
        try:
            with (
                FakeComicVine(limit=OUT_OF_REACH) as api,
                GuardedSession(cache=cache, dedupe=dedupe, rate_limit=limiter) as session,
            ):
                progress(f"table {table}; API at {api.base_url}")
                for _ in range(3):  # clients, connections, the limiter's window: built
                    session.get(issue_url(api.base_url, WARMUP_ISSUE))
                misses = range(MISS_FIRST_ISSUE, MISS_FIRST_ISSUE + calls)
                joined = range(misses.stop, misses.stop + joins)
                with metering(stores) as meter:
                    progress(f"counting: {calls} misses, {calls} hits, {joins} joins")
                    costs = count_misses_and_hits(session, api, meter, misses)
                    costs.append(count_joins(session, api, meter, joined, join_latency_s))
                progress(f"timing hits: warm-up {warmup_s:.1f} s, {rounds} rounds of {round_s} s")
                timing = time_hits(
                    session,
                    api,
                    number=joined.stop,
                    rounds=rounds,
                    round_s=round_s,
                    warmup_s=warmup_s,
                )
        finally:
            for store in stores:
                store.close()
    return Report(costs=costs, timing=timing)


# --------------------------------------------------------------------------- output


def render(report: Report, join_latency_ms: int) -> str:
    """The plain-text report."""
    header = (
        "GET",
        "GETs",
        "DynamoDB requests per GET",
        "capacity per GET",
        "API calls per GET",
        "consistent?",
    )
    rows = [
        (
            c.case,
            str(c.gets),
            f"{c.requests_per_get:.2f}",
            f"{c.capacity_per_get:.2f}",
            f"{c.api_calls / c.gets:g}",
            "yes" if c.consistent else "NO",
        )
        for c in report.costs
    ]
    out = [*common.table_lines(header, rows), ""]
    for c in report.costs:
        per_get = ", ".join(
            f"{name} {n / c.gets:.2f} ({c.capacity_breakdown.get(name, 0.0) / c.gets:.2f})"
            for name, n in c.breakdown.items()
        )
        out.append(f"{c.case}: requests (capacity) per GET by store operation: {per_get}")
        if c.case == "joined":
            out.append(
                f"joined: {c.polls / c.gets:.2f} polls of the job per GET while the first "
                f"request waited {join_latency_ms} ms at the API"
            )
        if not c.consistent:
            out.append(
                f"{c.case}: {c.requests_sent} requests sent vs {c.requests} in events, "
                f"{c.failures} failed operation(s), {c.wrong_answers} wrong answer(s)"
            )
    t = report.timing
    out.append("")
    out.extend(
        common.table_lines(
            ("hit vs bare GET", "guarded GETs/s", "bare GETs/s", "ratio", "added per hit"),
            [
                (
                    "same URL, same server",
                    f"{t.guarded_gets_s:.0f}",
                    f"{t.bare_gets_s:.0f}",
                    f"{t.ratio:.3f}",
                    f"{t.added_us_per_hit:+.0f} us",
                )
            ],
        )
    )
    out.append(
        f"median per-round ratio {t.paired_ratio:.3f}; client CPU per GET guarded "
        f"{t.guarded_cpu_us_per_get:.0f} us, bare {t.bare_cpu_us_per_get:.0f} us"
    )
    out.append(f"GETs/s per round: guarded {t.guarded_rounds_gets_s}, bare {t.bare_rounds_gets_s}")
    out.append(f"guarded GETs that reached the API while timed: {t.api_calls_by_guarded}")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = common.parser_for(__doc__)
    parser.add_argument(
        "--calls", type=int, default=100, help="issues missed, then hit (default 100)"
    )
    parser.add_argument("--joins", type=int, default=20, help="joined GETs (default 20)")
    parser.add_argument(
        "--join-latency-ms",
        type=int,
        default=200,
        help="the API's answer time while joins are counted (default 200)",
    )
    common.add_timing_args(
        parser,
        seconds_help="timed seconds of hits and bare GETs, warm-up excluded (default 10)",
        rounds_help="timed rounds (default 10)",
    )
    common.add_output_args(parser)
    args = parser.parse_args(argv)
    if args.calls < 1 or args.joins < 1 or args.join_latency_ms < 0:
        parser.error("--calls and --joins must be >= 1, --join-latency-ms >= 0")
    if args.seconds <= 0 or args.rounds < 1:
        parser.error("--seconds must be > 0 and --rounds >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.use_dummy_credentials()
    rounds: int = args.rounds
    round_s = args.seconds / rounds
    warmup_s = common.warmup_seconds(args.seconds)
    started = time.perf_counter()
    with common.local_dynamodb(args.docker) as db:
        report = measure(
            db.endpoint,
            calls=args.calls,
            joins=args.joins,
            join_latency_s=args.join_latency_ms / 1000,
            rounds=rounds,
            round_s=round_s,
            warmup_s=warmup_s,
        )
    elapsed = time.perf_counter() - started
    if args.json:
        print(
            json.dumps(
                {
                    "dynamodb_local": db.kind,
                    "python": sys.version.split()[0],
                    "calls": args.calls,
                    "joins": args.joins,
                    "join_latency_ms": args.join_latency_ms,
                    "rounds": rounds,
                    "round_seconds": round_s,
                    "warmup_seconds": warmup_s,
                    "total_seconds": round(elapsed, 2),
                    "costs": [
                        {
                            **asdict(c),
                            "requests_per_get": c.requests_per_get,
                            "capacity_per_get": c.capacity_per_get,
                            "consistent": c.consistent,
                        }
                        for c in report.costs
                    ],
                    "hit_timing": asdict(report.timing),
                },
                indent=2,
            )
        )
    else:
        print(render(report, args.join_latency_ms))
        print(
            f"({db.kind} DynamoDB Local, {rounds} rounds x {round_s:.2f} s of alternating "
            f"guarded/bare GETs, median per side, {elapsed:.1f} s in all)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
