"""Every bench against one DynamoDB Local: what each store call costs in DynamoDB requests and
capacity, the throughput of the store against raw botocore, and what observability costs a store
call, as three tables and one JSON file.

A measurement, not a test: it prints what it measured and exits 0, even when a bench fails (the
failure is printed and recorded in the results). One DynamoDB Local
(:func:`common.local_dynamodb`: ``DYNAMODB_ENDPOINT``, else Docker, else the jar) serves the
whole run: its endpoint is handed to each bench script through ``DYNAMODB_ENDPOINT``, and each
script runs as a subprocess of this interpreter with ``--json`` (each one creates and deletes
its own table). What the scripts do not measure (a cache miss, a set of a new key, and a
chunked value: above 400 KB after compression) is measured here, on a table of its own, from
the ``operation_completed`` events of a ``DynamoDBCacheStore``.

The results are normalised into one structure, written to ``bench/results.json`` (``--out``):
``generated_at``, ``dynamodb_local``, ``python``, ``costs`` (``store``, ``operation``,
``case``, ``requests_per_call``, ``capacity_per_call``) and ``throughput`` (``store``,
``operation``, ``store_ops_s``, ``raw_ops_s``, ``ratio``), ``observability`` (``variants``:
``name``, ``ops_s``, ``cpu_us_per_call``, ``ratio_ops``, ``extra_cpu_us_per_call``,
``dispatch_us_per_call``; then
``send_ns_no_receiver``, ``send_ns_noop_receiver``, ``published_calls``,
``cloudwatch_requests``, ``cloudwatch_data``, ``rounds``, ``seconds``; absent when that bench
failed), plus ``platform``, ``quick``, ``total_seconds`` and ``failures``. The docs' cost
tables are generated from that file (``docs/hooks/costs.py``).

    .venv/bin/python bench/run_all.py [--quick] [--out PATH] [--plot PATH] [--[no-]docker]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from comic_vine_dynamodb_store.local import (
    DEFAULT_IMAGE,
    DYNAMODB_LOCAL_NPM_PACKAGE,
    DYNAMODB_LOCAL_NPM_VERSION,
    ENDPOINT_ENV,
    IMAGE_ENV,
    LocalDynamoDB,
)
from comic_vine_dynamodb_store.models import CacheChunk, CacheItem
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.serialization import encode_value
from comic_vine_dynamodb_store.stores.cache import CHUNK_PAYLOAD_BYTES, DynamoDBCacheStore

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cache
import common
from common import REGION, progress

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results.json"
CHILD_TIMEOUT_S = 1800.0
CHUNKED_JSON_BYTES = 1_000_000
"""The chunked value: ~1 MB of JSON that compresses to ~0.75 MB (random base64), 2 chunks."""


class CostRow(TypedDict):
    """What one kind of call costs DynamoDB, per call."""

    store: str
    operation: str
    case: str
    requests_per_call: float
    capacity_per_call: float


class ThroughputRow(TypedDict):
    """A store call against the raw request it stands for, in calls per second."""

    store: str
    operation: str
    store_ops_s: float
    raw_ops_s: float
    ratio: float


class ObservabilityRow(TypedDict):
    """A cache get with one kind of receiver on its store, against the one with none."""

    name: str
    ops_s: float
    cpu_us_per_call: float
    ratio_ops: float
    extra_cpu_us_per_call: float
    dispatch_us_per_call: float


class Observability(TypedDict):
    """What observability costs a store call (``bench_observability.py``)."""

    variants: list[ObservabilityRow]
    send_ns_no_receiver: float
    send_ns_noop_receiver: float
    published_calls: int
    cloudwatch_requests: int
    cloudwatch_data: int
    rounds: int
    seconds: float


@dataclass(slots=True)
class Collected:
    """Everything measured so far, and what failed."""

    costs: list[CostRow] = field(default_factory=list)
    throughput: list[ThroughputRow] = field(default_factory=list)
    observability: Observability | None = None
    failures: list[str] = field(default_factory=list)


def cost(
    store: str, operation: str, case: str, requests_per_call: float, capacity_per_call: float
) -> CostRow:
    return CostRow(
        store=store,
        operation=operation,
        case=case,
        requests_per_call=round(float(requests_per_call), 3),
        capacity_per_call=round(float(capacity_per_call), 3),
    )


def speed(store: str, operation: str, store_ops_s: float, raw_ops_s: float) -> ThroughputRow:
    return ThroughputRow(
        store=store,
        operation=operation,
        store_ops_s=round(float(store_ops_s), 1),
        raw_ops_s=round(float(raw_ops_s), 1),
        ratio=round(float(store_ops_s) / float(raw_ops_s), 3),
    )


# --------------------------------------------------------------------------- the bench scripts


def agree(into: Collected, what: str, reported: float, sent: float) -> None:
    """Record a row whose events report other request counts than its client sent."""
    if reported != sent:
        into.failures.append(
            f"{what}: {reported:g} request(s) per call in the events, {sent:g} sent"
        )


def normalise_cache(report: dict[str, Any], into: Collected) -> None:
    size = f"{report['value_json_bytes'] / 1024:g} KB value"
    cases = {"get": f"hit, {size}", "set": f"{size}, key exists"}
    for r in report["results"]:
        operation = r["operation"]
        case = cases.get(operation, size)
        agree(into, f"cache {operation}", r["reported_requests_per_call"], r["requests_per_call"])
        into.costs.append(
            cost("cache", operation, case, r["requests_per_call"], r["capacity_per_call"])
        )
        into.throughput.append(
            speed("cache", f"{operation} ({case})", r["store_ops_s"], r["raw_ops_s"])
        )


DEDUPE_CASES = {
    "register_or_join (owner)": ("register_or_join", "owner: the key is free"),
    "register_or_join (joiner)": ("register_or_join", "joiner: the job is pending"),
    "complete": ("complete", "the owner publishes its result"),
    "wait_for (completed)": ("wait_for", "the job is already complete"),
}


def normalise_dedupe(report: dict[str, Any], into: Collected) -> None:
    for r in report["results"]:
        operation, case = DEDUPE_CASES.get(r["operation"], (r["operation"], "-"))
        agree(into, f"dedupe {r['operation']}", r["requests_per_call"], r["requests_sent_per_call"])
        into.costs.append(
            cost("dedupe", operation, case, r["requests_per_call"], r["capacity_per_call"])
        )


def _limit(limit: int | None) -> str:
    return "any limit" if limit is None else f"limit {limit}"


def normalise_rate_limit(report: dict[str, Any], into: Collected) -> None:
    for r in report["costs"]:
        case = f"{_limit(r['limit'])}, {r['outcome']}"
        what = f"rate-limit {r['operation']} ({case})"
        agree(into, what, r["requests_per_call"], r["requests_sent_per_call"])
        into.costs.append(
            cost("rate-limit", r["operation"], case, r["requests_per_call"], r["capacity_per_call"])
        )
    t = report["throughput"]
    into.throughput.append(
        speed("rate-limit", "acquire (limit 10000, admitted)", t["store_ops_s"], t["raw_ops_s"])
    )


PRIORITY_NAMES = {"any": "any priority", "both": "either priority", "-": ""}


def normalise_adaptive(report: dict[str, Any], into: Collected) -> None:
    for r in report["costs"]:
        priority = PRIORITY_NAMES.get(r["priority"], r["priority"])
        parts = [p for p in (priority, _limit(r["limit"]), r["outcome"]) if p]
        what = f"adaptive {r['operation']} ({', '.join(parts)})"
        agree(into, what, r["requests_per_call"], r["requests_sent_per_call"])
        into.costs.append(
            cost(
                "adaptive",
                r["operation"],
                ", ".join(parts),
                r["requests_per_call"],
                r["capacity_per_call"],
            )
        )
    a = report["amortized"]
    agree(into, "adaptive acquire (amortized)", a["requests"], a["requests_sent"])
    into.costs.append(
        cost(
            "adaptive",
            "acquire",
            f"amortized: {a['stores']} stores taking turns on one resource, "
            f"{a['step_ms']} ms apart (bound {a['bound_per_call']:.3f})",
            a["requests_per_call"],
            a["capacity_per_call"],
        )
    )
    t = report["throughput"]
    into.throughput.append(
        speed(
            "adaptive",
            "acquire (background, limit 10000, admitted)",
            t["store_ops_s"],
            t["raw_ops_s"],
        )
    )


def normalise_client(report: dict[str, Any], into: Collected) -> None:
    cases = {
        "miss": "miss: nobody asked for it yet",
        "hit": "hit",
        "joined": f"joined: another caller's request is at the API "
        f"({report['join_latency_ms']} ms to answer)",
    }
    for c in report["costs"]:
        agree(into, f"client flow GET ({c['case']})", c["requests"], c["requests_sent"])
        into.costs.append(
            cost(
                "client flow",
                "GET",
                cases.get(c["case"], c["case"]),
                c["requests_per_get"],
                c["capacity_per_get"],
            )
        )
    t = report["hit_timing"]
    into.throughput.append(
        speed(
            "client flow", "GET hit vs a bare requests GET", t["guarded_gets_s"], t["bare_gets_s"]
        )
    )


OBSERVABILITY_BASE = "0 receivers"
"""The variant every other one is compared with."""


def _finite(value: Any, what: str, problems: list[str]) -> float:
    """``value`` as a float; a problem is recorded when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.append(f"{what} is {value!r}, not a finite number")
        return math.nan
    return float(value)


def _count(value: Any, what: str, problems: list[str]) -> int:
    """``value`` as an int; a problem is recorded when it is not a count."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.append(f"{what} is {value!r}, not a count")
        return 0
    return value


def normalise_observability(report: dict[str, Any], into: Collected) -> None:
    """The figures as the script reported them, kept only when they make sense: a
    ``0 receivers`` row with a ratio of 1 and nothing but finite numbers (else a failure)."""
    problems: list[str] = []
    variants = []
    for r in report["variants"]:
        name = str(r["name"])
        variants.append(
            ObservabilityRow(
                name=name,
                ops_s=_finite(r["ops_s"], f"{name}: ops_s", problems),
                cpu_us_per_call=_finite(r["cpu_us_per_call"], f"{name}: cpu_us_per_call", problems),
                ratio_ops=_finite(r["ratio_ops"], f"{name}: ratio_ops", problems),
                extra_cpu_us_per_call=_finite(
                    r["extra_cpu_us_per_call"], f"{name}: extra_cpu_us_per_call", problems
                ),
                dispatch_us_per_call=_finite(
                    r["dispatch_us_per_call"], f"{name}: dispatch_us_per_call", problems
                ),
            )
        )
    base = [v for v in variants if v["name"] == OBSERVABILITY_BASE]
    if not base:
        problems.append(f"no {OBSERVABILITY_BASE!r} row")
    elif base[0]["ratio_ops"] != 1.0:
        problems.append(f"{OBSERVABILITY_BASE!r} has a ratio of {base[0]['ratio_ops']!r}, not 1")
    observability = Observability(
        variants=variants,
        send_ns_no_receiver=_finite(report["send_ns_no_receiver"], "send_ns_no_receiver", problems),
        send_ns_noop_receiver=_finite(
            report["send_ns_noop_receiver"], "send_ns_noop_receiver", problems
        ),
        published_calls=_count(report["published_calls"], "published_calls", problems),
        cloudwatch_requests=_count(report["cloudwatch_requests"], "cloudwatch_requests", problems),
        cloudwatch_data=_count(report["cloudwatch_data"], "cloudwatch_data", problems),
        rounds=_count(report["rounds"], "rounds", problems),
        seconds=_finite(report["seconds"], "seconds", problems),
    )
    if problems:
        into.failures.append(f"observability: {'; '.join(problems)} (figures left out)")
        return
    into.observability = observability


@dataclass(frozen=True, slots=True)
class Bench:
    """A bench script, its arguments for a quick run, and how its JSON is normalised."""

    name: str
    script: str
    quick_args: tuple[str, ...]
    normalise: Callable[[dict[str, Any], Collected], None]


QUICK_TIMING = ("--seconds", "2", "--rounds", "4")
BENCHES = (
    Bench("cache", "bench_cache.py", QUICK_TIMING, normalise_cache),
    Bench("dedupe", "bench_dedupe.py", ("--calls", "50"), normalise_dedupe),
    Bench(
        "rate-limit", "bench_rate_limit.py", ("--calls", "50", *QUICK_TIMING), normalise_rate_limit
    ),
    Bench(
        "adaptive",
        "bench_adaptive.py",
        ("--calls", "20", "--amortized-calls", "400", *QUICK_TIMING),
        normalise_adaptive,
    ),
    Bench(
        "client",
        "bench_client.py",
        ("--calls", "20", "--joins", "5", *QUICK_TIMING),
        normalise_client,
    ),
    Bench(
        "observability",
        "bench_observability.py",
        ("--seconds", "3", "--rounds", "3"),
        normalise_observability,
    ),
)


def run_bench(bench: Bench, endpoint: str, *, quick: bool, into: Collected) -> None:
    """Run one script as a subprocess on ``endpoint`` and normalise its JSON into ``into``."""
    command = [
        sys.executable,
        str(BENCH_DIR / bench.script),
        *(bench.quick_args if quick else ()),
        "--json",
    ]
    progress(f"{bench.name}: {bench.script} {' '.join(command[2:])}")
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            env={**os.environ, ENDPOINT_ENV: endpoint},
            stdout=subprocess.PIPE,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        into.failures.append(f"{bench.script}: no answer within {CHILD_TIMEOUT_S:.0f} s")
        return
    if done.returncode != 0:
        into.failures.append(f"{bench.script}: exited with {done.returncode}")
        return
    rows = Collected()
    try:
        bench.normalise(json.loads(done.stdout), rows)
    except (ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
        into.failures.append(f"{bench.script}: unexpected output ({type(exc).__name__}: {exc})")
        return
    into.costs.extend(rows.costs)
    into.throughput.extend(rows.throughput)
    if rows.observability is not None:
        into.observability = rows.observability
    into.failures.extend(rows.failures)
    progress(f"{bench.name}: done in {time.perf_counter() - started:.1f} s")


# --------------------------------------------------------------------------- cache extras


@dataclass(slots=True, weakref_slot=True)  # blinker holds receivers weakly
class Meter:
    """The ``operation_completed`` events of one store and the requests its clients send."""

    calls: int = 0
    events: int = 0
    requests: int = 0
    requests_sent: int = 0
    capacity: float = 0.0
    failures: int = 0
    wrong_answers: int = 0

    def on_operation(self, sender: object, event: signals.OperationEvent) -> None:
        self.events += 1
        self.requests += event.requests
        self.capacity += event.consumed_capacity
        if event.outcome != "success":
            self.failures += 1

    def problems(self) -> str | None:
        """What is wrong with the counts, if anything."""
        wrong = []
        if self.events != self.calls:
            wrong.append(f"{self.events} events for {self.calls} calls")
        if self.requests != self.requests_sent:
            wrong.append(f"{self.requests} requests in events, {self.requests_sent} sent")
        if self.failures:
            wrong.append(f"{self.failures} failed call(s)")
        if self.wrong_answers:
            wrong.append(f"{self.wrong_answers} unexpected answer(s)")
        return "; ".join(wrong) or None


@contextlib.contextmanager
def metered(store: DynamoDBCacheStore[Any]) -> Iterator[Meter]:
    """A :class:`Meter` attached to ``store`` for the block only.

    The store binds its chunk model only while it uses it (bound models are held weakly), so
    the block holds both bound models: the store's chunk requests then go out on the client
    metered here.
    """
    meter = Meter()
    models = [store._model(entity) for entity in (CacheItem, CacheChunk)]
    clients = list(
        {id(c): c for c in (m._get_connection().connection.client for m in models)}.values()
    )
    signals.operation_completed.connect(meter.on_operation, sender=store)
    try:
        with contextlib.ExitStack() as stack:
            for client in clients:
                stack.enter_context(common.counting_sends(client, meter))
            yield meter
    finally:
        signals.operation_completed.disconnect(meter.on_operation, sender=store)
        del models


def chunked_value(json_bytes: int) -> dict[str, Any]:
    """A value of about ``json_bytes`` of JSON that zlib barely shrinks (random base64)."""
    blob = base64.b64encode(random.Random(4000).randbytes(json_bytes * 3 // 4)).decode()
    return {"id": 123456, "name": "The Uncanny X-Men", "scans": blob[:json_bytes]}


def measure_cache_extras(endpoint: str, *, calls: int, chunked_calls: int) -> list[CostRow]:
    """A miss, a set of a new key, and a chunked value's set (new key, then replacing a
    chunked value) and get, on a fresh table; returns the cost rows, raises if a count is off."""
    small = bench_cache.sample_value(1024)
    big = chunked_value(CHUNKED_JSON_BYTES)
    stored = encode_value(big).size
    if stored <= 400 * 1024:
        raise RuntimeError(f"the chunked value is only {stored} bytes stored")
    chunks = math.ceil(stored / CHUNK_PAYLOAD_BYTES)
    chunked = (
        f"chunked: {CHUNKED_JSON_BYTES / 1e6:g} MB of JSON, {stored / 1e3:.0f} KB stored "
        f"in {chunks} chunks"
    )
    ttl = bench_cache.TTL_SECONDS
    with common.fresh_table("bench-run-all-cache", endpoint) as table:
        store: DynamoDBCacheStore[Any] = DynamoDBCacheStore(
            table_name=table, region=REGION, endpoint=endpoint, cleanup_interval_ms=0
        )
        try:
            progress(f"cache extras: table {table}; chunked value {stored} bytes stored")
            store.get("warm-up")  # clients and connections built before counting
            store.set("warm-up", small, ttl)

            def get_miss(i: int) -> bool:
                return store.get(f"miss-{i}") is None

            def set_new(i: int) -> bool:
                store.set(f"new-{i}", small, ttl)
                return True

            def set_chunked(i: int) -> bool:
                store.set(f"chunked-{i}", big, ttl)
                return True

            def get_chunked(i: int) -> bool:
                return bool(store.get(f"chunked-{i}") == big)

            cases: list[tuple[str, str, Callable[[int], bool], int]] = [
                ("get", "miss", get_miss, calls),
                ("set", "1 KB value, new key", set_new, calls),
                ("set", f"{chunked}, new key", set_chunked, chunked_calls),
                ("get", f"hit, {chunked}", get_chunked, chunked_calls),
                ("set", f"{chunked}, replaces a chunked value", set_chunked, chunked_calls),
            ]
            rows = []
            for operation, case, call, n in cases:
                with metered(store) as meter:
                    for i in range(n):
                        meter.calls += 1
                        if not call(i):
                            meter.wrong_answers += 1
                problem = meter.problems()
                if problem is not None:
                    raise RuntimeError(f"cache {operation} ({case}): {problem}")
                rows.append(cost("cache", operation, case, meter.requests / n, meter.capacity / n))
            return rows
        finally:
            store.close()


# --------------------------------------------------------------------------- the run


def describe(db: LocalDynamoDB) -> str:
    if db.kind == "jar":
        return f"jar: {DYNAMODB_LOCAL_NPM_PACKAGE} {DYNAMODB_LOCAL_NPM_VERSION} from npm"
    if db.kind == "testcontainers":
        return f"Docker: {os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE}"
    return f"{ENDPOINT_ENV}: {db.endpoint}"


def order_cache_rows(costs: list[CostRow]) -> list[CostRow]:
    """Cache rows get first, then set (the script's rows and the extras interleave)."""
    order = {"get": 0, "set": 1}
    cache = sorted(
        (r for r in costs if r["store"] == "cache"), key=lambda r: order.get(r["operation"], 2)
    )
    return cache + [r for r in costs if r["store"] != "cache"]


def measure_all(db: LocalDynamoDB, *, quick: bool) -> Collected:
    into = Collected()
    for bench in BENCHES:
        run_bench(bench, db.endpoint, quick=quick, into=into)
        if bench.name == "cache":
            try:
                into.costs.extend(
                    measure_cache_extras(
                        db.endpoint, calls=20 if quick else 100, chunked_calls=5 if quick else 20
                    )
                )
            except Exception as exc:  # a measurement: report it and go on
                into.failures.append(f"cache extras: {type(exc).__name__}: {exc}")
    into.costs = order_cache_rows(into.costs)
    return into


def cost_table(rows: list[CostRow]) -> list[str]:
    return common.table_lines(
        ("store", "operation", "case", "requests/call", "capacity/call"),
        [
            (
                r["store"],
                r["operation"],
                r["case"],
                f"{r['requests_per_call']:g}",
                f"{r['capacity_per_call']:g}",
            )
            for r in rows
        ],
        left=3,
    )


def throughput_table(rows: list[ThroughputRow]) -> list[str]:
    return common.table_lines(
        ("store", "operation", "store ops/s", "raw ops/s", "ratio (store/raw)"),
        [
            (
                r["store"],
                r["operation"],
                f"{r['store_ops_s']:.0f}",
                f"{r['raw_ops_s']:.0f}",
                f"{r['ratio']:.3f}",
            )
            for r in rows
        ],
        left=2,
    )


def observability_lines(o: Observability) -> list[str]:
    table = common.table_lines(
        ("variant", "ops/s", "vs 0 receivers", "CPU us/call", "extra CPU us/call", "events us"),
        [
            (
                v["name"],
                f"{v['ops_s']:.0f}",
                f"{v['ratio_ops']:.3f}",
                f"{v['cpu_us_per_call']:.1f}",
                f"{v['extra_cpu_us_per_call']:+.1f}",
                f"{v['dispatch_us_per_call']:.2f}",
            )
            for v in o["variants"]
        ],
        left=1,
    )
    return [
        *table,
        f"signals.send alone: {o['send_ns_no_receiver']:.0f} ns with no receiver, "
        f"{o['send_ns_noop_receiver']:.0f} ns with one no-op receiver",
        f"CloudWatch: {o['published_calls']} calls buffered, flushed as {o['cloudwatch_data']} "
        f"aggregated data points in {o['cloudwatch_requests']} PutMetricData request(s)",
    ]


def plot(results: dict[str, Any], path: Path) -> None:
    """A horizontal bar chart of the throughput ratios, as a PNG."""
    import matplotlib  # noqa: PLC0415 (only --plot needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows: list[ThroughputRow] = results["throughput"]
    labels = [f"{r['store']}: {r['operation']}" for r in rows]
    ratios = [r["ratio"] for r in rows]
    # The client flow's hit is timed against a bare HTTP GET, not against botocore.
    colours = ["#dd8452" if r["store"] == "client flow" else "#4c72b0" for r in rows]
    fig, ax = plt.subplots(figsize=(10, 1.8 + 0.55 * len(rows)))
    bars = ax.barh(labels, ratios, color=colours)
    ax.bar_label(bars, labels=[f"{r:.2f}" for r in ratios], padding=3)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.axvline(0.85, color="grey", linestyle="--", linewidth=1, label="target of the stores: 0.85")
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.2, max(ratios, default=1.0) * 1.15))
    ax.set_xlabel("store calls/s / raw botocore calls/s (client flow: hit GETs/s / bare GETs/s)")
    ax.set_title(
        f"Throughput of the store calls against raw botocore\nDynamoDB Local "
        f"({results['dynamodb_local']}), Python {results['python']}, "
        f"{results['generated_at'][:10]}",
        fontsize=10,
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = common.parser_for(__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short timings and fewer calls in every bench (a smoke run of 1-2 minutes)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"where to write the results (default {DEFAULT_OUT.relative_to(BENCH_DIR.parent)})",
    )
    parser.add_argument(
        "--plot", type=Path, default=None, help="also write a PNG chart of the throughput ratios"
    )
    parser.add_argument(
        "--docker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run DynamoDB Local in Docker (--docker) or as the jar (--no-docker); "
        f"default: Docker if it can, else the jar ({ENDPOINT_ENV} overrides both)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.use_dummy_credentials()
    started = time.perf_counter()
    try:
        with common.local_dynamodb(args.docker) as db:
            collected = measure_all(db, quick=args.quick)
            local = describe(db)
    except Exception as exc:  # a measurement, not a test: say what failed, exit 0
        progress(f"no measurement: {type(exc).__name__}: {exc}")
        return 0
    elapsed = time.perf_counter() - started
    results: dict[str, Any] = {
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "dynamodb_local": local,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "quick": args.quick,
        "total_seconds": round(elapsed, 1),
        "costs": collected.costs,
        "throughput": collected.throughput,
        **({} if collected.observability is None else {"observability": collected.observability}),
        "failures": collected.failures,
    }
    print("DynamoDB requests and consumed capacity per call")
    print("\n".join(cost_table(collected.costs)))
    print()
    print("Throughput: the store call against the raw botocore call (client: hit vs bare GET)")
    print("\n".join(throughput_table(collected.throughput)))
    if collected.observability is not None:
        print()
        print("Observability: a cache get (~1 KB value) per kind of receiver, and raw botocore")
        print("\n".join(observability_lines(collected.observability)))
    for failure in collected.failures:
        print(f"FAILED: {failure}")
    print(
        f"(DynamoDB Local ({local}), Python {results['python']}, {results['platform']}; "
        f"{'quick' if args.quick else 'full'} run, {elapsed:.0f} s in all)"
    )
    if not collected.costs and not collected.throughput:
        progress(f"nothing measured: {args.out} left as it was")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    progress(f"wrote {args.out}")
    if args.plot is not None:
        try:
            plot(results, args.plot)
        except ImportError:
            progress("--plot needs matplotlib: .venv/bin/pip install matplotlib")
        else:
            progress(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
