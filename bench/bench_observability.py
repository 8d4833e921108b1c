"""What observability costs a store call: no receiver, a no-op receiver, the logging handler,
the CloudWatch publisher and EMF lines, side by side against raw botocore, in one run.

A measurement, not a test: it prints what it measured and exits 0. One DynamoDB Local
(``DYNAMODB_ENDPOINT``, else Docker, else the jar) and one fresh table serve the whole run.

Every variant is a ``DynamoDBCacheStore.get`` of the same ~1 KB value (one ``GetItem``),
on its own store, and differs only in what listens to that store's signals:

* ``0 receivers``: a default store (logging on at ``info``, which leaves the hot path
  unobserved), so no payload is ever built;
* ``no-op receiver``: a function that does nothing, connected to every signal of the store:
  the price of building the payloads and dispatching them;
* ``logging (debug)``: the logging handler at ``debug``, every operation and hit written
  through a ``StreamHandler`` with a formatter to ``/dev/null``;
* ``CloudWatch publisher``: the publisher buffering each event's metrics (its flush runs
  after the timed rounds; its requests per 1,000 calls are reported);
* ``EMF lines``: one embedded-metric-format JSON line per event to ``/dev/null``;
* ``raw botocore``: the same ``GetItem`` on a plain client.

Each round calls every variant once in turn until ``--seconds`` have passed, so machine noise
lands on all of them alike; a variant's figure is the median over rounds of its calls per
second and of this process's CPU time per call. Ratios are to ``0 receivers``.

A round trip to DynamoDB Local varies by more than the receivers cost, so the receivers are
also timed on their own: ``events us`` is the CPU time of the two signals a hit sends
(``operation_completed`` and ``cache_hit``) with each variant's receivers connected, without
DynamoDB. A last part times ``signals.send`` alone with 0 and 1 receivers.

    .venv/bin/python bench/bench_observability.py [--seconds S] [--rounds N] [--json]
                                                  [--[no-]docker]
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from comic_vine_dynamodb_store.config import CacheStoreOptions, MonitoringOptions
from comic_vine_dynamodb_store.models import CacheItem
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.observability.handlers import (
    CloudWatchMetricsPublisher,
    EmfHandler,
    LoggingHandler,
)
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import REGION

KEY = "issue:4000-1"
VALUE = {"name": "x" * 900, "id": 1}


@dataclass(frozen=True, slots=True)
class Variant:
    """One variant's medians over the rounds, and its ratios to ``0 receivers``."""

    name: str
    ops_s: float
    cpu_us_per_call: float
    ratio_ops: float
    extra_cpu_us_per_call: float
    dispatch_us_per_call: float


@dataclass(frozen=True, slots=True)
class Results:
    """The whole run."""

    variants: list[Variant]
    send_ns_no_receiver: float
    send_ns_noop_receiver: float
    published_calls: int
    cloudwatch_requests: int
    cloudwatch_data: int
    rounds: int
    seconds: float


def _noop(sender: Any, event: Any) -> None:
    del sender, event


@contextmanager
def _moto_endpoint() -> Iterator[str]:
    """moto's server on loopback as the CloudWatch endpoint the publisher flushes to."""
    import socket  # noqa: PLC0415

    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - a test dependency

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@dataclass(slots=True)
class _Setup:
    calls: dict[str, Callable[[], object]]
    stores: dict[str, DynamoDBCacheStore[Any]]
    publisher: CloudWatchMetricsPublisher
    published_store: DynamoDBCacheStore[Any]


def _events_of_a_hit(store: DynamoDBCacheStore[Any]) -> None:
    """What a cache ``get`` hit sends, as ``store``: ``operation_completed`` and ``cache_hit``
    (payloads built in lambdas, as the store builds them)."""
    signals.send(
        signals.operation_completed,
        store,
        lambda: signals.OperationEvent(
            store="cache",
            operation="get",
            table=store.table_name,
            key=KEY,
            duration_ms=1.2,
            outcome="success",
            requests=1,
            retries=0,
            consumed_capacity=0.5,
        ),
    )
    signals.send(
        signals.cache_hit,
        store,
        lambda: signals.CacheEvent(store="cache", table=store.table_name, key=KEY),
    )


def _dispatch_us(stores: dict[str, DynamoDBCacheStore[Any]]) -> dict[str, float]:
    """CPU µs per call spent on one hit's events, per variant, timed without DynamoDB: the
    receivers' cost on its own, which the store calls' timings drown in round-trip noise."""
    number = 5_000
    found = {}
    for name, store in stores.items():
        best = min(
            timeit.repeat(
                lambda s=store: _events_of_a_hit(s),  # type: ignore[misc]
                timer=time.process_time,
                number=number,
                repeat=5,
            )
        )
        found[name] = best / number * 1e6
    return found


@contextmanager
def _variants(endpoint: str, table: str, cloudwatch: str) -> Iterator[_Setup]:
    """The variants' calls, with their stores and handlers, undone after the block."""
    with ExitStack() as stack:

        def store(**monitoring: Any) -> DynamoDBCacheStore[Any]:
            made: DynamoDBCacheStore[Any] = DynamoDBCacheStore(
                options=CacheStoreOptions(
                    table_name=table,
                    endpoint=endpoint,
                    region=REGION,
                    cleanup_interval_ms=0,
                    monitoring=MonitoringOptions(**monitoring),
                )
            )
            stack.callback(made.close)
            return made

        plain = store()
        plain.set(KEY, VALUE, 3600)

        noop = store()
        for signal in signals.ALL_SIGNALS:
            signal.connect(_noop, sender=noop, weak=False)
            stack.callback(signal.disconnect, _noop, sender=noop)

        devnull = stack.enter_context(open(os.devnull, "w"))
        logger = logging.getLogger("bench.observability")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        sink = logging.StreamHandler(devnull)
        sink.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(sink)
        stack.callback(logger.removeHandler, sink)
        logged = store(logging={"enabled": False})
        stack.enter_context(LoggingHandler("debug", logger=logger).connect(sender=logged))

        published = store()
        publisher = CloudWatchMetricsPublisher(
            region=REGION, endpoint=cloudwatch, start=False, max_buffer=10_000_000
        )
        stack.enter_context(publisher.connect(sender=published))

        emf = store()
        stack.enter_context(EmfHandler(stream=devnull).connect(sender=emf))

        raw = common.raw_client(endpoint, plain.options)
        pk, sk = CacheItem.key_of(plain.options.key_prefix, KEY)
        request = {
            "TableName": table,
            "Key": {"PK": {"S": pk}, "SK": {"S": sk}},
            "ConsistentRead": True,
        }
        for check in (plain, noop, logged, published, emf):
            assert check.get(KEY) == VALUE
        assert "Item" in raw.get_item(**request)
        yield _Setup(
            calls={
                "0 receivers": lambda: plain.get(KEY),
                "no-op receiver": lambda: noop.get(KEY),
                "logging (debug)": lambda: logged.get(KEY),
                "CloudWatch publisher": lambda: published.get(KEY),
                "EMF lines": lambda: emf.get(KEY),
                "raw botocore": lambda: raw.get_item(**request),
            },
            stores={
                "0 receivers": plain,
                "no-op receiver": noop,
                "logging (debug)": logged,
                "CloudWatch publisher": published,
                "EMF lines": emf,
            },
            publisher=publisher,
            published_store=published,
        )


def _round(
    calls: dict[str, Callable[[], object]], seconds: float
) -> dict[str, tuple[float, float]]:
    """Each variant once in turn until ``seconds`` pass: ops/s and CPU µs per call each."""
    wall = dict.fromkeys(calls, 0.0)
    cpu = dict.fromkeys(calls, 0.0)
    count = dict.fromkeys(calls, 0)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for name, call in calls.items():
            c0, w0 = time.process_time(), time.perf_counter()
            call()
            wall[name] += time.perf_counter() - w0
            cpu[name] += time.process_time() - c0
            count[name] += 1
    return {name: (count[name] / wall[name], cpu[name] / count[name] * 1e6) for name in calls}


def _send_cost() -> tuple[float, float]:
    """ns per ``signals.send`` with no receiver and with one no-op receiver."""
    sender = object()

    def build() -> signals.CacheEvent:
        return signals.CacheEvent(store="cache", table="t", key="k")

    number = 200_000
    quiet = signals.namespace.signal("bench-quiet")
    loud = signals.namespace.signal("bench-loud")
    try:
        loud.connect(_noop, weak=False)
        no_receiver = min(
            timeit.repeat(lambda: signals.send(quiet, sender, build), number=number, repeat=5)
        )
        one = min(timeit.repeat(lambda: signals.send(loud, sender, build), number=number, repeat=5))
    finally:
        loud.disconnect(_noop)
        del signals.namespace["bench-quiet"], signals.namespace["bench-loud"]
    return no_receiver / number * 1e9, one / number * 1e9


def run(endpoint: str, seconds: float, rounds: int) -> Results:
    """Time the variants side by side, then flush the publisher and time ``send`` alone."""
    with (
        _moto_endpoint() as cloudwatch,
        common.fresh_table("bench-observability", endpoint) as table,
        _variants(endpoint, table, cloudwatch) as setup,
    ):
        _round(setup.calls, common.warmup_seconds(seconds))
        setup.publisher.flush()  # the warm-up's metrics: not counted
        before = (setup.publisher.requests, setup.publisher.published)
        published_calls = 0

        def counted() -> object:
            nonlocal published_calls
            published_calls += 1
            return setup.published_store.get(KEY)

        setup.calls["CloudWatch publisher"] = counted
        per_round = [_round(setup.calls, seconds / rounds) for _ in range(rounds)]
        setup.publisher.flush()
        requests = setup.publisher.requests - before[0]
        data = setup.publisher.published - before[1]
        assert setup.publisher.failed_requests == 0, "the publisher's flush failed"
        dispatch = _dispatch_us(setup.stores)
    names = list(per_round[0])
    ops = {n: statistics.median(r[n][0] for r in per_round) for n in names}
    cpu = {n: statistics.median(r[n][1] for r in per_round) for n in names}
    base = "0 receivers"
    variants = [
        Variant(
            name=n,
            ops_s=round(ops[n], 1),
            cpu_us_per_call=round(cpu[n], 1),
            ratio_ops=round(ops[n] / ops[base], 3),
            extra_cpu_us_per_call=round(cpu[n] - cpu[base], 1),
            dispatch_us_per_call=round(dispatch.get(n, 0.0), 2),
        )
        for n in names
    ]
    no_receiver, one = _send_cost()
    return Results(
        variants=variants,
        send_ns_no_receiver=round(no_receiver, 1),
        send_ns_noop_receiver=round(one, 1),
        published_calls=published_calls,
        cloudwatch_requests=requests,
        cloudwatch_data=data,
        rounds=rounds,
        seconds=seconds,
    )


def main() -> int:
    parser = common.parser_for(__doc__)
    common.add_timing_args(
        parser,
        seconds_help="timed seconds in all (default 10)",
        rounds_help="rounds the seconds are cut into (default 10)",
    )
    common.add_output_args(parser)
    args = parser.parse_args()
    common.use_dummy_credentials()
    with common.local_dynamodb(args.docker) as db:
        results = run(db.endpoint, args.seconds, args.rounds)
    if args.json:
        print(json.dumps(asdict(results), indent=2))
        return 0
    print(f"cache get of a ~1 KB value, {results.rounds} rounds, {results.seconds:.0f} s")
    header = ("variant", "ops/s", "vs 0 receivers", "CPU us/call", "extra CPU us", "events us")
    print(
        f"{header[0]:<22} {header[1]:>9} {header[2]:>15} {header[3]:>12} {header[4]:>13} "
        f"{header[5]:>10}"
    )
    for v in results.variants:
        print(
            f"{v.name:<22} {v.ops_s:>9,.0f} {v.ratio_ops:>15.3f} "
            f"{v.cpu_us_per_call:>12.1f} {v.extra_cpu_us_per_call:>13.1f} "
            f"{v.dispatch_us_per_call:>10.2f}"
        )
    print(
        f"signals.send alone: {results.send_ns_no_receiver:.0f} ns with no receiver, "
        f"{results.send_ns_noop_receiver:.0f} ns with one no-op receiver"
    )
    print(
        f"CloudWatch: {results.published_calls:,} calls buffered, flushed as "
        f"{results.cloudwatch_data} aggregated data points in {results.cloudwatch_requests} "
        "PutMetricData request(s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
