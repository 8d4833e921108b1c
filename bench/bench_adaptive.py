"""DynamoDB requests and capacity per ``DynamoDBAdaptiveRateLimitStore`` call for each priority,
the amortized cost of ``acquire`` with several stores on one resource, and ``acquire``
throughput against raw botocore doing the same conditional UpdateItem.

A measurement, not a test: it prints what it measured and whether the targets are met, and
exits 0 either way. One DynamoDB Local (:func:`start_local_dynamodb`: ``DYNAMODB_ENDPOINT``,
else Docker, else the jar) and one fresh table serve the whole run.

**Costs per call** (a counting pass on the real clock, 60 s windows, the default adaptive
config: the split is recomputed every 30 s, so not during a row). Requests and capacity come
from the store's ``operation_completed`` events; the HTTP requests counted on its client's
``before-send`` must agree, and every request is classified on the client (GetItem, PutItem,
UpdateItem adding in place or moving to new slices / storing a new split, failed conditions).
Rows:

* ``acquire`` that creates the resource's item (one PutItem), and the first ``acquire`` of a
  store on an item another store created (it knows nothing of it: its PutItem fails and returns
  the item, then it writes: two requests);
* ``acquire`` admitted in the steady state (the item exists and the store knows it), user and
  background, on a resource of limit 10000 that never gets near its limit (a call that lands in
  a new slice moves the rings on in the same single request: it shows as a move);
* ``acquire`` refused, limit 10 (the split "no traffic yet" gives background 5): by the store
  that filled the window or the background share (it knows the counts: no request), by a
  store whose last view still had room (its write fails its condition and returns the item:
  one request), and by the filling store once its knowledge is older than one slice (one
  consistent GetItem, then the refusal);
* ``can_proceed`` for each priority (one consistent GetItem), on a full window and on a
  part-full one; ``get_status`` (one consistent GetItem).

Targets: one request per call, but two for a store's first call and none for a refusal from
known state. A row is met when every call sent exactly its target, as many requests as its
events report, and gave the expected answer.

**Amortized** (``--stores`` stores on one resource, one ``acquire`` each in turn, half of the
stores user, half background, ``--amortized-calls`` calls): the stores share a simulated clock
that moves ``--step-ms`` per call, so the run crosses slices and split recomputations at a known
rate whatever the machine's speed (limit 10000 per 60 s, slices of 1 s; the split recomputed
every 2 s; no pause on an increasing trend and ``max_user_scaling`` 1, so that background keeps
half the limit and nothing is refused: the figure is the cost of admissions alone). The store's
docstring bounds it: one request per ``acquire``, plus one per store whenever a slice rolls or
the split is due and another store wrote since its last request (and one for a store's first
call on the item another store created). So requests per ``acquire`` tend to
``1 + stores x (1 / calls per slice + 1 / calls per recomputation interval)``: with 4 stores
and 10 ms per call, 100 calls a slice and 200 a recomputation, about 1.06. Target: no
refusal, and no more requests than that bound (printed as ``bound/call``).

**Throughput**: background ``acquire`` (limit 10000, admitted) against a plain botocore client
sending what an in-place admission is: ``UpdateItem`` of the same item adding 1 to the current
slots of ``Tot``, ``Bg`` and ``ActBg`` under the store's condition (``CurSlice``, ``ActSlice``,
``WindowMs``, ``ActivityMs`` and ``ComputedAt`` unchanged, the ``Tot`` and ``Bg`` slots below the
limit and the background share), ``ALL_NEW`` back, ``ALL_OLD`` on a failed condition (from which
it learns the new slices and split and tries once more, as the store does). Same endpoint, region,
timeouts and retry mode. After a warm-up, each round (on a fresh resource) alternates one store
call and one raw call, each side charged for its own calls only; a side's ops/s is the median
of its rounds. Target: store/raw >= 0.85.

    .venv/bin/python bench/bench_adaptive.py [--calls N] [--stores N] [--amortized-calls N]
                                             [--step-ms MS] [--seconds S] [--rounds N]
                                             [--json] [--[no-]docker]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from comic_vine_dynamodb_store.models import AdaptiveStats
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.adaptive import DynamoDBAdaptiveRateLimitStore
from comic_vine_dynamodb_store.stores.contracts import Priority
from comic_vine_dynamodb_store.stores.rate_limit_core import SliceLayout

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import REGION, progress

WINDOW_MS = 60_000
SLICE_MS = SliceLayout.for_window(WINDOW_MS).slice_ms
SMALL_LIMIT = 10
SMALL_BACKGROUND_MAX = 5  # "no traffic yet": users keep max(floor(0.3 x 10), 5) = 5
BIG_LIMIT = 10_000
REFUSALS_PER_WINDOW = 5
TARGET_RATIO = 0.85
AMORTIZED_RECALCULATION_MS = 2_000
AMORTIZED_ADAPTIVE_CONFIG: dict[str, Any] = {
    "monitoring_window_ms": 60_000,
    "recalculation_interval_ms": AMORTIZED_RECALCULATION_MS,
    "background_pause_on_increasing_trend": False,
    "max_user_scaling": 1.0,
}
SIMULATED_AHEAD_MS = 3_600_000  # DynamoDB Local's TTL reaper runs on the real clock

PRIORITIES: tuple[Priority, Priority] = ("user", "background")

Store = DynamoDBAdaptiveRateLimitStore


# --------------------------------------------------------------------------- counting


@dataclass(slots=True)
class Cost:
    """What one row's calls cost, from the stores' events and their client's requests."""

    calls: int = 0
    unexpected_answers: int = 0
    events: int = 0
    failures: int = 0
    requests: int = 0
    requests_sent: int = 0
    capacity: float = 0.0
    reads: int = 0
    puts: int = 0
    in_place_writes: int = 0
    whole_writes: int = 0
    failed_conditions: int = 0


class Meter:
    """Attributes each event of ``stores`` and each request of their client to the row being
    counted (stores on one table share one bound model, so one client)."""

    def __init__(self, stores: Sequence[Store]) -> None:
        self.stores = list(stores)
        self.client: Any = stores[0]._items._get_connection().connection.client
        for store in stores[1:]:
            if store._items._get_connection().connection.client is not self.client:
                raise RuntimeError("the stores do not share one client")
        self.cost: Cost | None = None

    def _on_event(self, sender: object, event: signals.OperationEvent) -> None:
        if self.cost is None:
            return
        self.cost.events += 1
        self.cost.requests += event.requests
        self.cost.capacity += event.consumed_capacity
        if event.outcome != "success":
            self.cost.failures += 1

    def _on_send(self, **_: Any) -> None:
        if self.cost is not None:
            self.cost.requests_sent += 1

    def _on_parameters(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        cost = self.cost
        if cost is None:
            return
        if model.name == "GetItem":
            cost.reads += 1
        elif model.name == "PutItem":
            cost.puts += 1
        elif model.name == "UpdateItem":
            # A move sets the newest slice (or a new split); an in-place admission only adds.
            names = params.get("ExpressionAttributeNames", {})
            expression = params.get("UpdateExpression", "")
            moved = any(
                f"{placeholder} =" in expression
                for placeholder, name in names.items()
                if name in {"CurSlice", "ActSlice", "ComputedAt"}
            )
            if moved:
                cost.whole_writes += 1
            else:
                cost.in_place_writes += 1

    def _on_response(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.cost is None:
            return
        if parsed.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            self.cost.failed_conditions += 1

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        events = self.client.meta.events
        ids = {
            "before-send.dynamodb": (self._on_send, f"bench-send-{id(self)}"),
            "before-parameter-build.dynamodb": (self._on_parameters, f"bench-params-{id(self)}"),
            "after-call.dynamodb": (self._on_response, f"bench-response-{id(self)}"),
        }
        for store in self.stores:
            signals.operation_completed.connect(self._on_event, sender=store)
        for name, (handler, unique_id) in ids.items():
            events.register_first(name, handler, unique_id=unique_id)
        try:
            yield
        finally:
            for store in self.stores:
                signals.operation_completed.disconnect(self._on_event, sender=store)
            for name, (_, unique_id) in ids.items():
                events.unregister(name, unique_id=unique_id)

    def call(
        self, cost: Cost, fn: Callable[[], object], expected: Callable[[object], bool]
    ) -> None:
        """One call of ``fn`` counted against ``cost``; ``expected`` says its answer is right."""
        self.cost = cost
        try:
            cost.calls += 1
            if not expected(fn()):
                cost.unexpected_answers += 1
        finally:
            self.cost = None


def is_true(answer: object) -> bool:
    return answer is True


def is_false(answer: object) -> bool:
    return answer is False


def is_full_status(answer: object) -> bool:
    return getattr(answer, "remaining", None) == 0 and getattr(answer, "adaptive", None) is not None


@dataclass(slots=True)
class CostRow:
    """One row of the cost table."""

    operation: str
    priority: str
    limit: int | None  # None: calls on resources of both limits
    outcome: str
    calls: int
    requests_per_call: float
    requests_sent_per_call: float
    capacity_per_call: float
    reads: int
    puts: int
    in_place_writes: int
    whole_writes: int
    failed_conditions: int
    target_requests_per_call: int
    unexpected_answers: int
    failures: int
    met: bool


COST_ROWS: tuple[tuple[str, str, str, int | None, str, int], ...] = (
    # counted as, operation, priority, limit (None: both), outcome, target requests per call
    ("create", "acquire", "any", None, "admitted, creates the resource", 1),
    ("first", "acquire", "user", SMALL_LIMIT, "admitted, store's first call", 2),
    ("user admitted", "acquire", "user", BIG_LIMIT, "admitted (steady state)", 1),
    ("background admitted", "acquire", "background", BIG_LIMIT, "admitted (steady state)", 1),
    ("user known", "acquire", "user", SMALL_LIMIT, "refused, from known state", 0),
    ("background known", "acquire", "background", SMALL_LIMIT, "refused, from known state", 0),
    ("user stale", "acquire", "user", SMALL_LIMIT, "refused, learnt from a failed write", 1),
    (
        "background stale",
        "acquire",
        "background",
        SMALL_LIMIT,
        "refused, learnt from a failed write",
        1,
    ),
    ("old knowledge", "acquire", "both", SMALL_LIMIT, "refused, state older than a slice", 1),
    ("can_proceed user True", "can_proceed", "user", None, "True", 1),
    ("can_proceed background True", "can_proceed", "background", None, "True", 1),
    ("can_proceed user False", "can_proceed", "user", SMALL_LIMIT, "False (window full)", 1),
    (
        "can_proceed background False",
        "can_proceed",
        "background",
        SMALL_LIMIT,
        "False (share full)",
        1,
    ),
    ("get_status", "get_status", "-", SMALL_LIMIT, "window full", 1),
)


def cost_row(
    cost: Cost, operation: str, priority: str, limit: int | None, outcome: str, *, target: int
) -> CostRow:
    calls = max(1, cost.calls)
    return CostRow(
        operation=operation,
        priority=priority,
        limit=limit,
        outcome=outcome,
        calls=cost.calls,
        requests_per_call=cost.requests / calls,
        requests_sent_per_call=cost.requests_sent / calls,
        capacity_per_call=cost.capacity / calls,
        reads=cost.reads,
        puts=cost.puts,
        in_place_writes=cost.in_place_writes,
        whole_writes=cost.whole_writes,
        failed_conditions=cost.failed_conditions,
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


@dataclass(frozen=True, slots=True)
class CostStores:
    """The stores of the counting pass, all on one table: ``main`` fills windows, ``newcomer``
    first meets resources ``main`` created, ``stale_user`` and ``stale_background`` last saw
    them with room."""

    main: Store
    newcomer: Store
    stale_user: Store
    stale_background: Store


def measure_costs(stores: CostStores, calls: int) -> list[CostRow]:
    """The counting pass: about ``calls`` calls per row."""
    main, newcomer = stores.main, stores.newcomer
    stale_user, stale_background = stores.stale_user, stores.stale_background
    meter, newcomer_meter = Meter([main]), Meter([newcomer])
    user_meter, background_meter = Meter([stale_user]), Meter([stale_background])
    rows: dict[str, Cost] = {spec[0]: Cost() for spec in COST_ROWS}
    setup = Cost()
    per_resource = max(1, math.ceil(calls / REFUSALS_PER_WINDOW))
    resources = [f"cost-{SMALL_LIMIT}-{i}" for i in range(per_resource)]
    meters = (meter, newcomer_meter, user_meter, background_meter)
    with contextlib.ExitStack() as attached:
        for m in meters:
            attached.enter_context(m.attached())
        for resource in resources:
            acquire = functools.partial(main.acquire, resource)
            meter.call(rows["create"], functools.partial(acquire, "background"), is_true)
            newcomer_meter.call(
                rows["first"], functools.partial(newcomer.acquire, resource, "user"), is_true
            )
            # The stale stores' last view: two admissions, room left.
            user_meter.call(
                rows["can_proceed user True"],
                functools.partial(stale_user.can_proceed, resource, "user"),
                is_true,
            )
            background_meter.call(
                rows["can_proceed background True"],
                functools.partial(stale_background.can_proceed, resource, "background"),
                is_true,
            )
            for _ in range(SMALL_BACKGROUND_MAX - 1):  # background fills its share
                meter.call(setup, functools.partial(acquire, "background"), is_true)
            for _ in range(REFUSALS_PER_WINDOW):
                meter.call(
                    rows["background known"], functools.partial(acquire, "background"), is_false
                )
            for _ in range(SMALL_LIMIT - SMALL_BACKGROUND_MAX - 1):  # users fill the window
                meter.call(setup, functools.partial(acquire, "user"), is_true)
            for _ in range(REFUSALS_PER_WINDOW):
                meter.call(rows["user known"], functools.partial(acquire, "user"), is_false)
            user_meter.call(
                rows["user stale"],
                functools.partial(stale_user.acquire, resource, "user"),
                is_false,
            )
            background_meter.call(
                rows["background stale"],
                functools.partial(stale_background.acquire, resource, "background"),
                is_false,
            )
            for priority in PRIORITIES:
                meter.call(
                    rows[f"can_proceed {priority} False"],
                    functools.partial(main.can_proceed, resource, priority),
                    is_false,
                )
            meter.call(
                rows["get_status"], functools.partial(main.get_status, resource), is_full_status
            )

        # main's knowledge of every full window is now older than a slice (or is made so):
        # its next refusal reads the item first.
        time.sleep(SLICE_MS / 1000 + 0.1)
        for i, resource in enumerate(resources):
            meter.call(
                rows["old knowledge"],
                functools.partial(main.acquire, resource, PRIORITIES[i % 2]),
                is_false,
            )

        big = f"cost-{BIG_LIMIT}"
        meter.call(rows["create"], functools.partial(main.acquire, big, "user"), is_true)
        for _ in range(calls):
            meter.call(rows["user admitted"], functools.partial(main.acquire, big, "user"), is_true)
            meter.call(
                rows["background admitted"],
                functools.partial(main.acquire, big, "background"),
                is_true,
            )
        for _ in range(len(resources)):
            for priority in PRIORITIES:
                meter.call(
                    rows[f"can_proceed {priority} True"],
                    functools.partial(main.can_proceed, big, priority),
                    is_true,
                )
    return [
        cost_row(rows[key], operation, priority, limit, outcome, target=target)
        for key, operation, priority, limit, outcome, target in COST_ROWS
    ]


# --------------------------------------------------------------------------- amortized


class SimulatedClock:
    """Epoch milliseconds that move only when told; an hour ahead of the real clock."""

    def __init__(self) -> None:
        self.now_ms = time.time_ns() // 1_000_000 + SIMULATED_AHEAD_MS

    def __call__(self) -> int:
        return self.now_ms


@dataclass(slots=True)
class Amortized:
    """The amortized run: several stores taking turns on one resource."""

    stores: int
    calls: int
    step_ms: int
    admitted: int
    requests: int
    requests_sent: int
    requests_per_call: float
    capacity_per_call: float
    in_place_writes: int
    whole_writes: int
    failed_conditions: int
    reads: int
    puts: int
    slices_crossed: int
    recomputations_due: int
    bound: int
    bound_per_call: float
    met: bool


def measure_amortized(
    endpoint: str, table: str, *, stores: int, calls: int, step_ms: int
) -> Amortized:
    """``calls`` acquires by ``stores`` stores in turn on one resource, the clock moving
    ``step_ms`` per call."""
    clock = SimulatedClock()
    made = [
        DynamoDBAdaptiveRateLimitStore(
            table_name=table,
            region=REGION,
            endpoint=endpoint,
            default_config={"limit": BIG_LIMIT, "window_ms": WINDOW_MS},
            adaptive_config=AMORTIZED_ADAPTIVE_CONFIG,
            cleanup_interval_ms=0,
            clock=clock,
        )
        for _ in range(stores)
    ]
    try:
        meter = Meter(made)
        cost = Cost()
        resource = "amortized"
        started = clock.now_ms
        with meter.attached():
            for i in range(calls):
                store = made[i % stores]
                priority: Priority = "user" if i % stores < stores / 2 else "background"
                meter.call(cost, functools.partial(store.acquire, resource, priority), is_true)
                clock.now_ms += step_ms
        span_ms = clock.now_ms - started
        slices = clock.now_ms // SLICE_MS - started // SLICE_MS
        recomputations = span_ms // AMORTIZED_RECALCULATION_MS
        # One request per call, plus at most one per store for its first call (the item
        # another store created: a failed PutItem), every new slice and every recomputation.
        bound = calls + stores * (1 + slices + recomputations)
        return Amortized(
            stores=stores,
            calls=calls,
            step_ms=step_ms,
            admitted=calls - cost.unexpected_answers,
            requests=cost.requests,
            requests_sent=cost.requests_sent,
            requests_per_call=cost.requests / calls,
            capacity_per_call=cost.capacity / calls,
            in_place_writes=cost.in_place_writes,
            whole_writes=cost.whole_writes,
            failed_conditions=cost.failed_conditions,
            reads=cost.reads,
            puts=cost.puts,
            slices_crossed=slices,
            recomputations_due=recomputations,
            bound=bound,
            bound_per_call=bound / calls,
            met=(
                cost.unexpected_answers == 0
                and cost.failures == 0
                and cost.requests == cost.requests_sent <= bound
            ),
        )
    finally:
        for store in made:
            store.close()


# --------------------------------------------------------------------------- throughput


class RawAdmission:
    """What an in-place background admission is, sent with a plain botocore client."""

    def __init__(self, client: Any, table: str, resource: str) -> None:
        self.client = client
        pk, sk = AdaptiveStats.key_of("", resource)
        item = client.get_item(
            TableName=table, Key={"PK": {"S": pk}, "SK": {"S": sk}}, ConsistentRead=True
        )["Item"]
        self.conflicts = 0
        self.refusals = 0
        self.request: dict[str, Any] = {
            "TableName": table,
            "Key": {"PK": {"S": pk}, "SK": {"S": sk}},
            "ExpressionAttributeNames": {
                "#tot": "Tot",
                "#bg": "Bg",
                "#actbg": "ActBg",
                "#slice": "CurSlice",
                "#actslice": "ActSlice",
                "#window": "WindowMs",
                "#activity": "ActivityMs",
                "#computed": "ComputedAt",
            },
            "ExpressionAttributeValues": {
                ":one": {"N": "1"},
                ":window": item["WindowMs"],
                ":activity": item["ActivityMs"],
                ":allowance": {"N": str(BIG_LIMIT)},
            },
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            "ReturnConsumedCapacity": "TOTAL",
        }
        self._learn(item)

    def _learn(self, item: dict[str, Any]) -> None:
        values = self.request["ExpressionAttributeValues"]
        values[":slice"] = item["CurSlice"]
        values[":actslice"] = item["ActSlice"]
        values[":computed"] = item["ComputedAt"]
        values[":share"] = item["BackgroundMax"]
        # The current slots: slice k of a ring of n slots is slot k mod n.
        rate = int(item["CurSlice"]["N"]) % len(item["Tot"]["L"])
        activity = int(item["ActSlice"]["N"]) % len(item["ActBg"]["L"])
        self.request["UpdateExpression"] = (
            f"SET #tot[{rate}] = #tot[{rate}] + :one, #bg[{rate}] = #bg[{rate}] + :one,"
            f" #actbg[{activity}] = #actbg[{activity}] + :one"
        )
        self.request["ConditionExpression"] = (
            "#slice = :slice AND #actslice = :actslice AND #window = :window"
            f" AND #activity = :activity AND #tot[{rate}] < :allowance"
            f" AND #bg[{rate}] < :share AND #computed = :computed"
        )

    def __call__(self) -> object:
        for _ in range(2):
            try:
                return self.client.update_item(**self.request)
            except ClientError as exc:
                response: Any = exc.response
                if response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                self.conflicts += 1
                # The store moved a slice or recomputed the split: learn it, as the store would.
                self._learn(response["Item"])
        self.refusals += 1
        return None


Throughput = common.LimiterThroughput


def measure_throughput(
    main: Store, raw_client: Any, table: str, *, rounds: int, round_s: float, warmup_s: float
) -> Throughput:
    return common.limiter_throughput(
        lambda resource: main.acquire(resource, "background"),
        lambda resource: RawAdmission(raw_client, table, resource),
        rounds=rounds,
        round_s=round_s,
        warmup_s=warmup_s,
        target_ratio=TARGET_RATIO,
    )


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True, slots=True)
class Settings:
    """What the command line asked for."""

    calls: int
    stores: int
    amortized_calls: int
    step_ms: int
    rounds: int
    round_s: float
    warmup_s: float


def measure(endpoint: str, settings: Settings) -> tuple[list[CostRow], Amortized, Throughput]:
    """Create a table, measure on it, delete it."""
    with common.fresh_table("bench-adaptive", endpoint) as table:
        return measure_on(endpoint, table, settings)


def measure_on(
    endpoint: str, table: str, settings: Settings
) -> tuple[list[CostRow], Amortized, Throughput]:
    """Measure on ``table``."""
    options: dict[str, Any] = {
        "table_name": table,
        "region": REGION,
        "endpoint": endpoint,
        "default_config": {"limit": SMALL_LIMIT, "window_ms": WINDOW_MS},
        "resource_configs": {
            f"cost-{BIG_LIMIT}": {"limit": BIG_LIMIT, "window_ms": WINDOW_MS},
            **{
                f"throughput-{i}": {"limit": BIG_LIMIT, "window_ms": WINDOW_MS}
                for i in range(settings.rounds + 1)
            },
        },
        "cleanup_interval_ms": 0,
    }
    stores = CostStores(*(DynamoDBAdaptiveRateLimitStore(**options) for _ in range(4)))
    raw_client: Any = common.raw_client(endpoint, stores.main.options)
    try:
        progress(f"table {table}; counting about {settings.calls} calls per row")
        rows = measure_costs(stores, settings.calls)
        progress(
            f"amortized: {settings.stores} stores, {settings.amortized_calls} calls, "
            f"{settings.step_ms} ms apart on a simulated clock"
        )
        amortized = measure_amortized(
            endpoint,
            table,
            stores=settings.stores,
            calls=settings.amortized_calls,
            step_ms=settings.step_ms,
        )
        progress(
            f"acquire vs raw UpdateItem: warm-up {settings.warmup_s:.1f} s, "
            f"{settings.rounds} x {settings.round_s:.2f} s"
        )
        throughput = measure_throughput(
            stores.main,
            raw_client,
            table,
            rounds=settings.rounds,
            round_s=settings.round_s,
            warmup_s=settings.warmup_s,
        )
        return rows, amortized, throughput
    finally:
        for store in (stores.main, stores.newcomer, stores.stale_user, stores.stale_background):
            store.close()
        raw_client.close()


# --------------------------------------------------------------------------- output


def render(rows: list[CostRow], amortized: Amortized, throughput: Throughput) -> str:
    """The plain-text report."""
    out = common.table_lines(
        (
            "operation",
            "priority",
            "limit",
            "outcome",
            "calls",
            "requests/call",
            "capacity/call",
            "get",
            "put",
            "add",
            "move",
            "failed cond.",
            "target",
            "met?",
        ),
        [
            (
                r.operation,
                r.priority,
                "any" if r.limit is None else str(r.limit),
                r.outcome,
                str(r.calls),
                f"{r.requests_per_call:g}",
                f"{r.capacity_per_call:.3g}",
                str(r.reads),
                str(r.puts),
                str(r.in_place_writes),
                str(r.whole_writes),
                str(r.failed_conditions),
                str(r.target_requests_per_call),
                "yes" if r.met else "NO",
            )
            for r in rows
        ],
        left=4,
    )
    for r in rows:
        if r.requests_sent_per_call != r.requests_per_call or r.unexpected_answers or r.failures:
            out.append(
                f"{r.operation} {r.priority} {r.outcome}: {r.requests_sent_per_call:g} request(s)"
                f" sent per call, {r.unexpected_answers} unexpected answer(s), {r.failures} failed"
            )
    out.append(
        "(get: GetItem, put: PutItem, add: UpdateItem adding in place, move: UpdateItem moving to"
        " new slices or storing a new split, failed cond.: writes whose condition failed)"
    )
    out.append("")
    a = amortized
    out.extend(
        common.table_lines(
            (
                "amortized acquire",
                "calls",
                "admitted",
                "requests",
                "requests/call",
                "bound/call",
                "capacity/call",
                "add",
                "whole",
                "failed cond.",
                "get",
                "put",
                "slices",
                "splits due",
                "met?",
            ),
            [
                (
                    f"{a.stores} stores, {a.step_ms} ms apart",
                    str(a.calls),
                    str(a.admitted),
                    str(a.requests),
                    f"{a.requests_per_call:.3f}",
                    f"{a.bound_per_call:.3f}",
                    f"{a.capacity_per_call:.3g}",
                    str(a.in_place_writes),
                    str(a.whole_writes),
                    str(a.failed_conditions),
                    str(a.reads),
                    str(a.puts),
                    str(a.slices_crossed),
                    str(a.recomputations_due),
                    "yes" if a.met else "NO",
                )
            ],
        )
    )
    out.append("")
    out.extend(
        common.table_lines(
            ("operation", "store ops/s", "raw ops/s", "ratio (store/raw)"),
            [
                (
                    f"acquire background (limit {BIG_LIMIT})",
                    f"{throughput.store_ops_s:.0f}",
                    f"{throughput.raw_ops_s:.0f}",
                    f"{throughput.ratio:.3f}",
                )
            ],
        )
    )
    out.append(
        f"median per-round ratio {throughput.paired_ratio:.3f}; client CPU per call store "
        f"{throughput.store_cpu_us_per_call:.0f} us, raw {throughput.raw_cpu_us_per_call:.0f} us;"
        f" store refusals {throughput.store_refusals}, raw failed conditions "
        f"{throughput.raw_conflicts} (new slices or splits), raw refusals "
        f"{throughput.raw_refusals}"
    )
    out.append(
        f"ops/s per round: store {throughput.store_rounds_ops_s}, raw {throughput.raw_rounds_ops_s}"
    )
    out.append(
        f"targets: requests per call as listed, amortized within its bound, ratio >= "
        f"{TARGET_RATIO} -> {'MET' if all_met(rows, amortized, throughput) else 'NOT MET'}"
    )
    return "\n".join(out)


def all_met(rows: list[CostRow], amortized: Amortized, throughput: Throughput) -> bool:
    return all(r.met for r in rows) and amortized.met and throughput.met


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = common.parser_for(__doc__)
    parser.add_argument(
        "--calls", type=int, default=200, help="calls counted per cost row (default 200)"
    )
    parser.add_argument(
        "--stores", type=int, default=4, help="stores of the amortized run (default 4)"
    )
    parser.add_argument(
        "--amortized-calls",
        type=int,
        default=2000,
        help="acquire calls of the amortized run (default 2000)",
    )
    parser.add_argument(
        "--step-ms",
        type=int,
        default=10,
        help="simulated ms between two calls of the amortized run (default 10)",
    )
    common.add_timing_args(
        parser,
        seconds_help="timed seconds of throughput (default 10)",
        rounds_help="throughput rounds (default 10)",
    )
    common.add_output_args(parser)
    args = parser.parse_args(argv)
    if (
        min(args.calls, args.rounds, args.stores, args.amortized_calls, args.step_ms) < 1
        or args.seconds <= 0
    ):
        parser.error(
            "--calls, --rounds, --stores, --amortized-calls and --step-ms must be >= 1 "
            "and --seconds > 0"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.use_dummy_credentials()
    rounds: int = args.rounds
    settings = Settings(
        calls=args.calls,
        stores=args.stores,
        amortized_calls=args.amortized_calls,
        step_ms=args.step_ms,
        rounds=rounds,
        round_s=args.seconds / rounds,
        warmup_s=common.warmup_seconds(args.seconds),
    )
    started = time.perf_counter()
    with common.local_dynamodb(args.docker) as db:
        rows, amortized, throughput = measure(db.endpoint, settings)
    elapsed = time.perf_counter() - started
    if args.json:
        report = {
            "dynamodb_local": db.kind,
            "python": sys.version.split()[0],
            "window_ms": WINDOW_MS,
            "rounds": rounds,
            "round_seconds": settings.round_s,
            "warmup_seconds": settings.warmup_s,
            "total_seconds": round(elapsed, 2),
            "target": {
                "min_ratio": TARGET_RATIO,
                "requests_per_call": {
                    f"{r.operation} {r.priority} {r.limit or 'any'} {r.outcome}": (
                        r.target_requests_per_call
                    )
                    for r in rows
                },
                "amortized_requests_at_most": amortized.bound,
            },
            "target_met": all_met(rows, amortized, throughput),
            "costs": [asdict(r) for r in rows],
            "amortized": asdict(amortized),
            "throughput": asdict(throughput),
        }
        print(json.dumps(report, indent=2))
    else:
        print(render(rows, amortized, throughput))
        print(
            f"({db.kind} DynamoDB Local, {WINDOW_MS // 1000} s windows, {rounds} rounds x "
            f"{settings.round_s:.2f} s of alternating store/raw calls, {elapsed:.1f} s in all)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
