"""Throughput of ``DynamoDBCacheStore.get``/``set`` against raw botocore doing the same request.

A measurement, not a test: it prints what it measured and whether the target (store at least
85 % of raw botocore's ops/s, exactly one DynamoDB request per call) is met, and exits 0 either
way. One DynamoDB Local (:func:`start_local_dynamodb`: ``DYNAMODB_ENDPOINT``, else Docker, else
the jar) and one fresh table serve the whole run.

Both sides send the same request over the same endpoint, region, timeouts and retry mode:

* ``get``: a hit on a ~1 KB JSON value, i.e. ``GetItem`` with ``ConsistentRead=True`` of the
  store's ``PK``/``SK`` (checked against the request the store actually builds);
* ``set``: ``PutItem`` of exactly the items the store writes, ttl 3600 s: two of the store's own
  requests are captured on its client and replayed in turn, so each raw write, like each store
  write, changes the expiry and so GSI1 (see :func:`two_store_puts`).

After a warm-up, each round alternates one store call and one raw call, each side charged for
its own calls only, so machine noise lands on both sides alike; a side's ops/s is the median of
its rounds, the ratio is store/raw of those medians (the median of the per-round ratios and
this process's CPU time per call are printed too: both are steadier on a busy machine).
Requests and consumed capacity per store call come from a separate counting pass:
``before-send`` events on the store's client and ``operation_completed`` events, both attached
for that pass only, so the timed calls run unobserved (as a store with no receivers does).

    .venv/bin/python bench/bench_cache.py [--seconds S] [--rounds N] [--value-bytes B]
                                          [--json] [--[no-]docker]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from comic_vine_dynamodb_store.models import CacheItem
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import REGION, Call, Rounds, counting_sends, progress

TTL_SECONDS = 3600
TARGET_RATIO = 0.85
TARGET_REQUESTS_PER_CALL = 1
COUNTING_CALLS = 50
GET_KEY = "bench:get:issue-4000-123456"
SET_KEY = "bench:set:issue-4000-123456"

RawCall = Callable[[], dict[str, Any]]


def sample_value(json_bytes: int) -> dict[str, Any]:
    """A Comic Vine-like issue record whose compact JSON text is ``json_bytes`` long."""
    value: dict[str, Any] = {
        "id": 123456,
        "api_detail_url": "https://comicvine.gamespot.com/api/issue/4000-123456/",
        "site_detail_url": "https://comicvine.gamespot.com/x-men-1/4000-123456/",
        "name": "The Uncanny X-Men",
        "issue_number": "1",
        "cover_date": "1963-09-01",
        "store_date": None,
        "date_added": "2008-06-06 11:10:16",
        "date_last_updated": "2024-01-15 08:27:51",
        "volume": {"id": 2133, "name": "The X-Men", "api_detail_url": "/api/volume/4050-2133/"},
        "image": {
            "icon_url": "https://comicvine.gamespot.com/a/uploads/square_avatar/0/4/1-xm1.jpg",
            "medium_url": "https://comicvine.gamespot.com/a/uploads/scale_medium/0/4/1-xm1.jpg",
        },
        "person_credits": [
            {"id": 40439, "name": "Stan Lee", "role": "writer, editor"},
            {"id": 5614, "name": "Jack Kirby", "role": "penciler, cover"},
            {"id": 6498, "name": "Paul Reinman", "role": "inker"},
        ],
        "has_staff_review": False,
        "deck": "",
    }
    room = json_bytes - len(json.dumps(value, separators=(",", ":")))
    sentence = "Professor X gathers five gifted teenagers at his school for mutants. "
    value["deck"] = (sentence * (1 + max(0, room) // len(sentence)))[: max(0, room)]
    return value


# --------------------------------------------------------------------------- measuring


def interleaved(store: Call, raw: Call, *, rounds: int, round_s: float, warmup_s: float) -> Rounds:
    """Warm both sides up, then time ``rounds`` rounds of alternating calls."""
    common.alternating_round(store, raw, warmup_s)
    result = Rounds()
    for _ in range(rounds):
        store_sample, raw_sample = common.alternating_round(store, raw, round_s)
        result.store.append(store_sample)
        result.raw.append(raw_sample)
    return result


@dataclass(slots=True)
class Cost:
    """What ``calls`` calls cost DynamoDB in a counting pass."""

    calls: int
    requests_sent: int = 0
    capacity: float = 0.0
    events: int = 0
    failures: int = 0
    requests_per_event: list[int] = field(default_factory=list)

    @property
    def exactly_one_request_each(self) -> bool:
        """Every call sent one request (and, for the store, reported one)."""
        reported = self.events == 0 or (
            self.events == self.calls
            and self.failures == 0
            and set(self.requests_per_event) == {TARGET_REQUESTS_PER_CALL}
        )
        return reported and self.requests_sent == self.calls * TARGET_REQUESTS_PER_CALL


def store_cost(store: DynamoDBCacheStore[Any], client: Any, call: Call, calls: int) -> Cost:
    """Requests and capacity of ``calls`` store calls, from ``before-send`` and
    ``operation_completed``; both meters are attached for this pass only."""
    cost = Cost(calls=calls)

    def on_operation(sender: object, event: signals.OperationEvent) -> None:
        cost.events += 1
        cost.capacity += event.consumed_capacity
        cost.requests_per_event.append(event.requests)
        if event.outcome != "success":
            cost.failures += 1

    signals.operation_completed.connect(on_operation, sender=store)
    try:
        with counting_sends(client, cost):
            for _ in range(calls):
                call()
    finally:
        signals.operation_completed.disconnect(on_operation, sender=store)
    return cost


def raw_cost(client: Any, call: RawCall, calls: int) -> Cost:
    """Requests and capacity of ``calls`` raw calls (capacity as the responses report it)."""
    cost = Cost(calls=calls)
    with counting_sends(client, cost):
        for _ in range(calls):
            consumed = call().get("ConsumedCapacity", {})
            cost.capacity += float(consumed.get("CapacityUnits", 0.0))
    return cost


def captured_request(client: Any, operation: str, call: Call) -> dict[str, Any]:
    """The API parameters of the one ``operation`` request ``call`` makes on ``client``."""
    seen: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        seen.append(copy.deepcopy(params))

    event = f"before-parameter-build.dynamodb.{operation}"
    client.meta.events.register(event, capture, unique_id="bench-capture")
    try:
        call()
    finally:
        client.meta.events.unregister(event, unique_id="bench-capture")
    if len(seen) != 1:
        raise RuntimeError(f"expected one {operation} request, saw {len(seen)}")
    return seen[0]


# --------------------------------------------------------------------------- the run


@dataclass(slots=True)
class Result:
    """One row of the report, with the detail behind it."""

    operation: str
    store_ops_s: float
    raw_ops_s: float
    ratio: float
    paired_ratio: float
    requests_per_call: float
    reported_requests_per_call: float
    capacity_per_call: float
    raw_requests_per_call: float
    raw_capacity_per_call: float
    store_cpu_us_per_call: float
    raw_cpu_us_per_call: float
    overhead_us_per_call: float
    store_rounds_ops_s: list[float]
    raw_rounds_ops_s: list[float]
    met: bool


def summarize(operation: str, rounds: Rounds, store: Cost, raw: Cost) -> Result:
    """Medians, ratio and per-call cost of one operation."""
    timing = common.medians(rounds)
    return Result(
        operation=operation,
        store_ops_s=timing.store_ops_s,
        raw_ops_s=timing.raw_ops_s,
        ratio=timing.ratio,
        paired_ratio=timing.paired_ratio,
        requests_per_call=store.requests_sent / store.calls,
        reported_requests_per_call=sum(store.requests_per_event) / store.calls,
        capacity_per_call=store.capacity / store.calls,
        raw_requests_per_call=raw.requests_sent / raw.calls,
        raw_capacity_per_call=raw.capacity / raw.calls,
        store_cpu_us_per_call=timing.store_cpu_us_per_call,
        raw_cpu_us_per_call=timing.raw_cpu_us_per_call,
        overhead_us_per_call=(1 / timing.store_ops_s - 1 / timing.raw_ops_s) * 1e6,
        store_rounds_ops_s=timing.store_rounds_ops_s,
        raw_rounds_ops_s=timing.raw_rounds_ops_s,
        met=timing.ratio >= TARGET_RATIO and store.exactly_one_request_each,
    )


def two_store_puts(client: Any, store: DynamoDBCacheStore[Any], value: Any) -> list[dict[str, Any]]:
    """Two PutItem requests of the store for ``SET_KEY``, with different expiries.

    Replaying one request would rewrite an identical item, which leaves GSI1 alone; the store
    writes a new expiry (``ExpiresAt``, ``TTL``, ``GSI1SK``) on every set, so the raw side
    alternates two of its requests to make DynamoDB do the same work (index update included).
    """
    first = captured_request(client, "PutItem", lambda: store.set(SET_KEY, value, TTL_SECONDS))
    for _ in range(100):
        time.sleep(0.002)
        second = captured_request(client, "PutItem", lambda: store.set(SET_KEY, value, TTL_SECONDS))
        if second["Item"] != first["Item"]:
            return [first, second]
    raise RuntimeError("the store wrote the same item twice; cannot vary the raw PutItem")


def measure(
    endpoint: str, *, rounds: int, round_s: float, warmup_s: float, value_bytes: int
) -> list[Result]:
    """Create a table, measure get and set on it, delete it."""
    with common.fresh_table("bench-cache", endpoint) as table:
        return measure_on(
            endpoint,
            table,
            rounds=rounds,
            round_s=round_s,
            warmup_s=warmup_s,
            value_bytes=value_bytes,
        )


def measure_on(
    endpoint: str, table: str, *, rounds: int, round_s: float, warmup_s: float, value_bytes: int
) -> list[Result]:
    """Measure get and set on ``table``."""
    store: DynamoDBCacheStore[Any] = DynamoDBCacheStore(
        table_name=table, region=REGION, endpoint=endpoint, cleanup_interval_ms=0
    )
    raw: Any = common.raw_client(endpoint, store.options)
    try:
        store_client: Any = store._items._get_connection().connection.client
        value = sample_value(value_bytes)
        encoded = len(json.dumps(value, separators=(",", ":")))
        progress(f"table {table}; value of {encoded} bytes of JSON")

        # get: the store's own GetItem must be exactly the raw one.
        store.set(GET_KEY, value, TTL_SECONDS)
        pk, sk = CacheItem.key_of(store.options.key_prefix, GET_KEY)
        get_params: dict[str, Any] = {
            "TableName": table,
            "Key": {"PK": {"S": pk}, "SK": {"S": sk}},
            "ConsistentRead": True,
            "ReturnConsumedCapacity": "TOTAL",  # PynamoDB asks for it on every data request
        }
        store_get = captured_request(store_client, "GetItem", lambda: store.get(GET_KEY))
        if store_get != get_params:
            raise RuntimeError(f"store GetItem differs from the raw one: {store_get}")
        if store.get(GET_KEY) != value:
            raise RuntimeError("store.get did not return the value just set")
        if raw.get_item(**get_params).get("Item") is None:
            raise RuntimeError("raw GetItem missed the stored item")

        # set: replay the store's own PutItem requests, checked against what it stored.
        puts = two_store_puts(store_client, store, value)
        key = {name: puts[1]["Item"][name] for name in ("PK", "SK")}
        if raw.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"] != puts[1]["Item"]:
            raise RuntimeError("the captured PutItem item differs from the stored item")
        next_put = itertools.cycle(puts).__next__

        def store_get_call() -> object:
            return store.get(GET_KEY)

        def raw_get_call() -> dict[str, Any]:
            response: dict[str, Any] = raw.get_item(**get_params)
            return response

        def store_set_call() -> object:
            store.set(SET_KEY, value, TTL_SECONDS)
            return None

        def raw_set_call() -> dict[str, Any]:
            response: dict[str, Any] = raw.put_item(**next_put())
            return response

        cases: list[tuple[str, Call, RawCall]] = [
            ("get", store_get_call, raw_get_call),
            ("set", store_set_call, raw_set_call),
        ]
        results = []
        for operation, store_call, raw_call in cases:
            progress(f"{operation}: warm-up {warmup_s:.1f} s, {rounds} rounds of {round_s:.2f} s")
            timing = interleaved(
                store_call, raw_call, rounds=rounds, round_s=round_s, warmup_s=warmup_s
            )
            costs = (
                store_cost(store, store_client, store_call, COUNTING_CALLS),
                raw_cost(raw, raw_call, COUNTING_CALLS),
            )
            results.append(summarize(operation, timing, *costs))
        return results
    finally:
        store.close()
        raw.close()


# --------------------------------------------------------------------------- output


def render_table(results: list[Result]) -> str:
    """The plain-text report."""
    header = (
        "operation",
        "store ops/s",
        "raw ops/s",
        "ratio (store/raw)",
        "requests per call",
        "capacity per call",
    )
    rows = [
        (
            r.operation,
            f"{r.store_ops_s:.0f}",
            f"{r.raw_ops_s:.0f}",
            f"{r.ratio:.3f}",
            f"{r.requests_per_call:g}",
            f"{r.capacity_per_call:g}",
        )
        for r in results
    ]
    out = [*common.table_lines(header, rows), ""]
    for r in results:
        verdict = "met" if r.met else "NOT met"
        out.append(
            f"{r.operation}: {r.overhead_us_per_call:+.0f} us/call wall over raw; median "
            f"per-round ratio {r.paired_ratio:.3f}; client CPU per call store "
            f"{r.store_cpu_us_per_call:.0f} us, raw {r.raw_cpu_us_per_call:.0f} us; "
            f"store events report {r.reported_requests_per_call:g} request(s) per call; "
            f"raw: {r.raw_requests_per_call:g} request(s), {r.raw_capacity_per_call:g} capacity "
            f"per call; target {verdict}"
        )
    for r in results:
        out.append(
            f"{r.operation} ops/s per round: store {r.store_rounds_ops_s}, raw {r.raw_rounds_ops_s}"
        )
    met = all(r.met for r in results)
    out.append(
        f"target: ratio >= {TARGET_RATIO} and exactly {TARGET_REQUESTS_PER_CALL} request per "
        f"call -> {'MET' if met else 'NOT MET'}"
    )
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = common.parser_for(__doc__)
    common.add_timing_args(
        parser,
        seconds_help="timed seconds for both operations, warm-up excluded (default 10)",
        rounds_help="timed rounds per operation (default 10)",
    )
    parser.add_argument(
        "--value-bytes",
        type=int,
        default=1024,
        help="compact JSON size of the cached value (default 1024; from 1024 up the store "
        "zlib-compresses it)",
    )
    common.add_output_args(parser)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1:
        parser.error("--seconds must be > 0 and --rounds >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.use_dummy_credentials()
    rounds: int = args.rounds
    round_s = args.seconds / (2 * rounds)  # 2 operations, both sides in each round
    warmup_s = common.warmup_seconds(args.seconds)
    started = time.perf_counter()
    with common.local_dynamodb(args.docker) as db:
        results = measure(
            db.endpoint,
            rounds=rounds,
            round_s=round_s,
            warmup_s=warmup_s,
            value_bytes=args.value_bytes,
        )
    elapsed = time.perf_counter() - started
    met = all(r.met for r in results)
    if args.json:
        report = {
            "dynamodb_local": db.kind,
            "python": sys.version.split()[0],
            "value_json_bytes": args.value_bytes,
            "rounds": rounds,
            "round_seconds": round_s,
            "warmup_seconds": warmup_s,
            "total_seconds": round(elapsed, 2),
            "target": {"min_ratio": TARGET_RATIO, "requests_per_call": TARGET_REQUESTS_PER_CALL},
            "target_met": met,
            "results": [asdict(r) for r in results],
        }
        print(json.dumps(report, indent=2))
    else:
        print(render_table(results))
        print(
            f"({db.kind} DynamoDB Local, {rounds} rounds x {round_s:.2f} s of alternating "
            f"store/raw calls per operation, "
            f"median per side, {elapsed:.1f} s in all)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
