"""DynamoDB requests and capacity per ``DynamoDBRateLimitStore`` call, and ``acquire`` throughput
against raw botocore doing the same conditional UpdateItem.

A measurement, not a test: it prints what it measured and whether the targets are met, and
exits 0 either way. One DynamoDB Local (:func:`start_local_dynamodb`: ``DYNAMODB_ENDPOINT``,
else Docker, else the jar) and one fresh table serve the whole run. Every window is 60 s, on
the real clock.

**Costs** (a counting pass, ``operation_completed`` events of the store, HTTP requests counted
on its client's ``before-send`` as a cross-check), for limit 10 and limit 10000:

* ``acquire`` admitted, in the steady state: the window exists and this store knows it. For
  limit 10 that is the 2nd to 10th call on each of several resources (the 1st creates the
  window and is reported on its own row); for limit 10000 it is every call after the 1st on
  one resource, which never gets near its limit. A call that lands in a new slice rolls the
  window over in the same single request (it shows in the capacity: the roll-over rewrites
  the counters and the item's expiry);
* ``acquire`` refused, limit 10, by the store that filled the window (it knows the counts:
  no request), and by a second store that last saw the window with room (its write fails its
  condition and returns the full window: one request);
* ``can_proceed``: one consistent GetItem, for a full window (limit 10) and a part-full one
  (limit 10000).

Targets: 1 request per admitted ``acquire`` and per ``can_proceed``, 0 per refusal from known
counts, 1 per refusal learnt from a failed write; and the same capacity per in-slice admission
for both limits (the item holds at most 61 counters, whatever the limit).

**Throughput**: ``acquire`` (limit 10000, admitted) against a plain botocore client sending
what an admission is: ``UpdateItem`` of the same item adding 1 to the newest slot of ``Counts``
under the store's condition (``CurSlice``, ``WindowMs`` unchanged, the slot below the limit),
``ALL_NEW`` back,
``ALL_OLD`` on a failed condition (from which it learns a new slice and tries once more, as the
store does). Same endpoint, region, timeouts and retry mode. After a warm-up, each round (on a
fresh resource) alternates one store call and one raw call, each side charged for its own calls
only; a side's ops/s is the median of its rounds. Target: store/raw >= 0.85.

    .venv/bin/python bench/bench_rate_limit.py [--calls N] [--seconds S] [--rounds N]
                                               [--json] [--[no-]docker]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from comic_vine_dynamodb_store.models import RateLimitEvent
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import REGION, progress

WINDOW_MS = 60_000
SMALL_LIMIT = 10
BIG_LIMIT = 10_000
REFUSALS_PER_WINDOW = 5
TARGET_RATIO = 0.85

Store = DynamoDBRateLimitStore


# --------------------------------------------------------------------------- counting


@dataclass(slots=True)
class Cost:
    """What one row's calls cost, from the store's events and its client's sends."""

    calls: int = 0
    unexpected_answers: int = 0
    events: int = 0
    failures: int = 0
    requests: int = 0
    requests_sent: int = 0
    capacity: float = 0.0
    roll_overs: int = 0
    in_slice_capacity: list[float] = field(default_factory=list)


class Meter:
    """Attributes each event and each sent request of ``store`` to the row being counted."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.client: Any = store._windows._get_connection().connection.client
        self.cost: Cost | None = None
        self._updates: list[bool] = []  # per UpdateItem sent: does it roll the window over?

    def _on_event(self, sender: object, event: signals.OperationEvent) -> None:
        if self.cost is None:
            return
        self.cost.events += 1
        self.cost.requests += event.requests
        self.cost.capacity += event.consumed_capacity
        if event.outcome != "success":
            self.cost.failures += 1
        rolls = self._updates[-1] if self._updates else None
        if event.operation == "acquire" and event.requests == 1 and rolls is False:
            self.cost.in_slice_capacity.append(event.consumed_capacity)

    def _on_send(self, **_: Any) -> None:
        if self.cost is not None:
            self.cost.requests_sent += 1

    def _on_update(self, params: dict[str, Any], **_: Any) -> None:
        if self.cost is None:
            return
        # A roll-over sets the newest slice; an in-slice admission only adds to a slot.
        expression = params.get("UpdateExpression", "")
        names = params.get("ExpressionAttributeNames", {})
        rolls = any(
            f"{placeholder} =" in expression
            for placeholder, name in names.items()
            if name == "CurSlice"
        )
        self._updates.append(rolls)
        if rolls:
            self.cost.roll_overs += 1

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        # Stores on the same table share one bound model, so one client: each meter hooks it
        # under its own id and counts only while one of its own calls runs.
        events = self.client.meta.events
        send_id, update_id = f"bench-send-{id(self)}", f"bench-update-{id(self)}"
        update_event = "before-parameter-build.dynamodb.UpdateItem"
        signals.operation_completed.connect(self._on_event, sender=self.store)
        events.register_first("before-send.dynamodb", self._on_send, unique_id=send_id)
        events.register(update_event, self._on_update, unique_id=update_id)
        try:
            yield
        finally:
            signals.operation_completed.disconnect(self._on_event, sender=self.store)
            events.unregister("before-send.dynamodb", unique_id=send_id)
            events.unregister(update_event, unique_id=update_id)

    def call(self, cost: Cost, fn: Callable[[], object], expected: object) -> None:
        """One call of ``fn`` counted against ``cost``; ``expected`` is its right answer."""
        self._updates.clear()
        self.cost = cost
        try:
            cost.calls += 1
            if fn() != expected:
                cost.unexpected_answers += 1
        finally:
            self.cost = None


@dataclass(slots=True)
class CostRow:
    """One row of the cost table."""

    operation: str
    limit: int | None  # None: calls on windows of both limits
    outcome: str
    calls: int
    requests_per_call: float
    requests_sent_per_call: float
    capacity_per_call: float
    in_slice_capacity_per_call: float | None
    roll_overs: int
    target_requests_per_call: int
    unexpected_answers: int
    failures: int
    met: bool


def cost_row(operation: str, limit: int | None, outcome: str, cost: Cost, target: int) -> CostRow:
    calls = max(1, cost.calls)
    return CostRow(
        operation=operation,
        limit=limit,
        outcome=outcome,
        calls=cost.calls,
        requests_per_call=cost.requests / calls,
        requests_sent_per_call=cost.requests_sent / calls,
        capacity_per_call=cost.capacity / calls,
        in_slice_capacity_per_call=(
            statistics.fmean(cost.in_slice_capacity)
            if cost.in_slice_capacity and outcome.startswith("admitted")
            else None
        ),
        roll_overs=cost.roll_overs,
        target_requests_per_call=target,
        unexpected_answers=cost.unexpected_answers,
        failures=cost.failures,
        met=(
            cost.calls > 0
            and cost.requests == cost.requests_sent == target * cost.calls
            and cost.unexpected_answers == 0
            and cost.failures == 0
        ),
    )


def measure_costs(main: Store, other: Store, calls: int) -> list[CostRow]:
    """The counting pass: ``calls`` (about) calls per row."""
    meter, other_meter = Meter(main), Meter(other)
    create, small_admitted, small_known, small_stale, small_read = (Cost() for _ in range(5))
    big_admitted, big_read = Cost(), Cost()
    resources = [f"cost-{SMALL_LIMIT}-{i}" for i in range(math.ceil(calls / (SMALL_LIMIT - 1)))]
    with meter.attached(), other_meter.attached():
        for resource in resources:
            meter.call(create, functools.partial(main.acquire, resource), True)
            other.can_proceed(resource)  # the second store's last view: one admission
            for _ in range(SMALL_LIMIT - 1):
                meter.call(small_admitted, functools.partial(main.acquire, resource), True)
            for _ in range(REFUSALS_PER_WINDOW):
                meter.call(small_known, functools.partial(main.acquire, resource), False)
            other_meter.call(small_stale, functools.partial(other.acquire, resource), False)
            meter.call(small_read, functools.partial(main.can_proceed, resource), False)

        big = f"cost-{BIG_LIMIT}"
        meter.call(create, functools.partial(main.acquire, big), True)
        for _ in range(len(resources) * (SMALL_LIMIT - 1)):
            meter.call(big_admitted, functools.partial(main.acquire, big), True)
        for _ in range(len(resources)):
            meter.call(big_read, functools.partial(main.can_proceed, big), True)
    return [
        cost_row("acquire", None, "admitted, creates the window", create, 1),
        cost_row("acquire", SMALL_LIMIT, "admitted (steady state)", small_admitted, 1),
        cost_row("acquire", BIG_LIMIT, "admitted (steady state)", big_admitted, 1),
        cost_row("acquire", SMALL_LIMIT, "refused, from known counts", small_known, 0),
        cost_row("acquire", SMALL_LIMIT, "refused, stale store learns", small_stale, 1),
        cost_row("can_proceed", SMALL_LIMIT, "False (window full)", small_read, 1),
        cost_row("can_proceed", BIG_LIMIT, "True", big_read, 1),
    ]


# --------------------------------------------------------------------------- throughput


class RawAdmission:
    """What an admission is, sent with a plain botocore client on the store's item."""

    def __init__(self, client: Any, table: str, resource: str, limit: int) -> None:
        self.client = client
        pk, sk = RateLimitEvent.key_of("", resource)
        item = client.get_item(
            TableName=table, Key={"PK": {"S": pk}, "SK": {"S": sk}}, ConsistentRead=True
        )["Item"]
        self.current_slice: str = item["CurSlice"]["N"]
        self.slots = len(item["Counts"]["L"])
        self.conflicts = 0
        self.refusals = 0
        self.request: dict[str, Any] = {
            "TableName": table,
            "Key": {"PK": {"S": pk}, "SK": {"S": sk}},
            "ExpressionAttributeNames": {
                "#counts": "Counts",
                "#slice": "CurSlice",
                "#window": "WindowMs",
            },
            "ExpressionAttributeValues": {
                ":one": {"N": "1"},
                ":window": item["WindowMs"],
                ":allowance": {"N": str(limit)},
            },
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            "ReturnConsumedCapacity": "TOTAL",
        }

    def __call__(self) -> object:
        for _ in range(2):
            self.request["ExpressionAttributeValues"][":slice"] = {"N": self.current_slice}
            slot = int(self.current_slice) % self.slots  # slice k lives in slot k mod len
            self.request["UpdateExpression"] = f"SET #counts[{slot}] = #counts[{slot}] + :one"
            self.request["ConditionExpression"] = (
                f"#slice = :slice AND #window = :window AND #counts[{slot}] < :allowance"
            )
            try:
                return self.client.update_item(**self.request)
            except ClientError as exc:
                response: Any = exc.response
                if response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                self.conflicts += 1
                # The store rolled the window on: learn its slice, as the store would.
                self.current_slice = response["Item"]["CurSlice"]["N"]
        self.refusals += 1
        return None


Throughput = common.LimiterThroughput


def measure_throughput(
    main: Store, raw_client: Any, table: str, *, rounds: int, round_s: float, warmup_s: float
) -> Throughput:
    return common.limiter_throughput(
        main.acquire,
        lambda resource: RawAdmission(raw_client, table, resource, BIG_LIMIT),
        rounds=rounds,
        round_s=round_s,
        warmup_s=warmup_s,
        target_ratio=TARGET_RATIO,
    )


# --------------------------------------------------------------------------- the run


def capacity_equal(rows: list[CostRow]) -> tuple[float | None, float | None, bool]:
    """In-slice capacity per admitted acquire for both limits, and whether they are equal."""
    by_limit = {
        r.limit: r.in_slice_capacity_per_call
        for r in rows
        if r.operation == "acquire" and r.outcome == "admitted (steady state)"
    }
    small, big = by_limit.get(SMALL_LIMIT), by_limit.get(BIG_LIMIT)
    return small, big, small is not None and small == big


def measure(
    endpoint: str, *, calls: int, rounds: int, round_s: float, warmup_s: float
) -> tuple[list[CostRow], Throughput]:
    """Create a table, measure on it, delete it."""
    with common.fresh_table("bench-rate-limit", endpoint) as table:
        return measure_on(
            endpoint, table, calls=calls, rounds=rounds, round_s=round_s, warmup_s=warmup_s
        )


def measure_on(
    endpoint: str, table: str, *, calls: int, rounds: int, round_s: float, warmup_s: float
) -> tuple[list[CostRow], Throughput]:
    """Measure on ``table``."""
    settings: dict[str, Any] = {
        "table_name": table,
        "region": REGION,
        "endpoint": endpoint,
        "resource_configs": {
            f"cost-{BIG_LIMIT}": {"limit": BIG_LIMIT, "window_ms": WINDOW_MS},
            **{
                f"throughput-{i}": {"limit": BIG_LIMIT, "window_ms": WINDOW_MS}
                for i in range(rounds + 1)
            },
        },
        "default_config": {"limit": SMALL_LIMIT, "window_ms": WINDOW_MS},
    }
    main: Store = DynamoDBRateLimitStore(**settings)
    other: Store = DynamoDBRateLimitStore(**settings)
    raw_client: Any = common.raw_client(endpoint, main.options)
    try:
        progress(f"table {table}; counting about {calls} calls per row")
        rows = measure_costs(main, other, calls)
        progress(f"acquire vs raw UpdateItem: warm-up {warmup_s:.1f} s, {rounds} x {round_s:.2f} s")
        throughput = measure_throughput(
            main, raw_client, table, rounds=rounds, round_s=round_s, warmup_s=warmup_s
        )
        return rows, throughput
    finally:
        main.close()
        other.close()
        raw_client.close()


# --------------------------------------------------------------------------- output


def render(rows: list[CostRow], throughput: Throughput) -> str:
    """The plain-text report."""
    out = common.table_lines(
        (
            "operation",
            "limit",
            "outcome",
            "calls",
            "requests/call",
            "capacity/call",
            "in-slice capacity",
            "roll-overs",
            "target",
            "met?",
        ),
        [
            (
                r.operation,
                "any" if r.limit is None else str(r.limit),
                r.outcome,
                str(r.calls),
                f"{r.requests_per_call:g}",
                f"{r.capacity_per_call:.3g}",
                "-"
                if r.in_slice_capacity_per_call is None
                else f"{r.in_slice_capacity_per_call:g}",
                str(r.roll_overs),
                f"{r.target_requests_per_call} request",
                "yes" if r.met else "NO",
            )
            for r in rows
        ],
        left=3,
    )
    out.append("")
    for r in rows:
        if r.requests_sent_per_call != r.requests_per_call or r.unexpected_answers or r.failures:
            out.append(
                f"{r.operation} {r.limit} {r.outcome}: {r.requests_sent_per_call:g} request(s) "
                f"sent per call, {r.unexpected_answers} unexpected answer(s), {r.failures} failed"
            )
    small, big = capacity_equal(rows)[:2]
    out.append(
        f"capacity per in-slice admission: limit {SMALL_LIMIT} {small}, limit {BIG_LIMIT} {big}"
        f" -> {'equal' if capacity_equal(rows)[2] else 'NOT equal'}"
    )
    out.append("")
    out.extend(
        common.table_lines(
            ("operation", "store ops/s", "raw ops/s", "ratio (store/raw)"),
            [
                (
                    f"acquire (limit {BIG_LIMIT})",
                    f"{throughput.store_ops_s:.0f}",
                    f"{throughput.raw_ops_s:.0f}",
                    f"{throughput.ratio:.3f}",
                )
            ],
            left=1,
        )
    )
    out.append(
        f"median per-round ratio {throughput.paired_ratio:.3f}; client CPU per call store "
        f"{throughput.store_cpu_us_per_call:.0f} us, raw {throughput.raw_cpu_us_per_call:.0f} us;"
        f" store refusals {throughput.store_refusals}, raw failed conditions "
        f"{throughput.raw_conflicts} (new slices), raw refusals {throughput.raw_refusals}"
    )
    out.append(
        f"ops/s per round: store {throughput.store_rounds_ops_s}, raw {throughput.raw_rounds_ops_s}"
    )
    out.append(
        f"targets: requests per call as listed, equal capacity for both limits, ratio >= "
        f"{TARGET_RATIO} -> {'MET' if all_met(rows, throughput) else 'NOT MET'}"
    )
    return "\n".join(out)


def all_met(rows: list[CostRow], throughput: Throughput) -> bool:
    return all(r.met for r in rows) and capacity_equal(rows)[2] and throughput.met


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = common.parser_for(__doc__)
    parser.add_argument(
        "--calls", type=int, default=200, help="calls counted per cost row (default 200)"
    )
    common.add_timing_args(
        parser,
        seconds_help="timed seconds of throughput (default 10)",
        rounds_help="throughput rounds (default 10)",
    )
    common.add_output_args(parser)
    args = parser.parse_args(argv)
    if args.calls < 1 or args.seconds <= 0 or args.rounds < 1:
        parser.error("--calls and --rounds must be >= 1 and --seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.use_dummy_credentials()
    rounds: int = args.rounds
    round_s = args.seconds / rounds
    warmup_s = common.warmup_seconds(args.seconds)
    started = time.perf_counter()
    with common.local_dynamodb(args.docker) as db:
        rows, throughput = measure(
            db.endpoint, calls=args.calls, rounds=rounds, round_s=round_s, warmup_s=warmup_s
        )
    elapsed = time.perf_counter() - started
    small, big, equal = capacity_equal(rows)
    if args.json:
        report = {
            "dynamodb_local": db.kind,
            "python": sys.version.split()[0],
            "window_ms": WINDOW_MS,
            "rounds": rounds,
            "round_seconds": round_s,
            "warmup_seconds": warmup_s,
            "total_seconds": round(elapsed, 2),
            "target": {
                "min_ratio": TARGET_RATIO,
                "requests_per_call": {
                    f"{r.operation} {r.limit or 'any'} {r.outcome}": r.target_requests_per_call
                    for r in rows
                },
                "capacity_equal_for_limits": [SMALL_LIMIT, BIG_LIMIT],
            },
            "target_met": all_met(rows, throughput),
            "costs": [asdict(r) for r in rows],
            "in_slice_capacity": {str(SMALL_LIMIT): small, str(BIG_LIMIT): big, "equal": equal},
            "throughput": asdict(throughput),
        }
        print(json.dumps(report, indent=2))
    else:
        print(render(rows, throughput))
        print(
            f"({db.kind} DynamoDB Local, {WINDOW_MS // 1000} s windows, {rounds} rounds x "
            f"{round_s:.2f} s of alternating store/raw calls, {elapsed:.1f} s in all)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
