"""The CloudWatch publisher, dashboard and alarms against moto's CloudWatch, over HTTP.

Events go through the real signal bus; what CloudWatch received is read back with
``GetMetricData`` and ``ListMetrics``. Requests are observed with botocore's own events on the
publisher's client (parameters as built, bodies as sent), never by replacing the client.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import math
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from blinker import NamedSignal
from botocore.config import Config

from comic_vine_dynamodb_store import InMemoryCacheStore
from comic_vine_dynamodb_store.config import CloudWatchOptions
from comic_vine_dynamodb_store.errors import ConfigurationError
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.observability.dashboard import (
    CloudWatchDashboardConfig,
    dashboard_metrics,
)
from comic_vine_dynamodb_store.observability.handlers.cloudwatch import (
    MAX_DATA_PER_REQUEST,
    MAX_REQUEST_BYTES,
    CloudWatchMetricsPublisher,
)
from comic_vine_dynamodb_store.observability.metrics import (
    DEFAULT_NAMESPACE,
    METRICS,
    Metric,
    mapped_signals,
)

REGION = "us-east-1"
CLI = Path(sys.executable).parent / "comic-vine-store"
MODULE_LOGGER = "comic_vine_dynamodb_store.observability.handlers.cloudwatch"


# --------------------------------------------------------------------------- fixtures


def fake_session() -> botocore.session.Session:
    session = botocore.session.get_session()
    session.set_credentials("testing", "testing")
    return session


@pytest.fixture
def namespace() -> str:
    """A namespace of its own per test (moto's state lives for the session); the ``/`` makes
    the dashboard quote it in its search expressions."""
    return f"Test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cloudwatch(moto_endpoint: str) -> Any:
    return fake_session().create_client(
        "cloudwatch", region_name=REGION, endpoint_url=moto_endpoint
    )


@pytest.fixture
def make_publisher(
    moto_endpoint: str, namespace: str
) -> Iterator[Callable[..., CloudWatchMetricsPublisher]]:
    created: list[CloudWatchMetricsPublisher] = []

    def make(**options: Any) -> CloudWatchMetricsPublisher:
        options.setdefault("region", REGION)
        options.setdefault("endpoint", moto_endpoint)
        options.setdefault("session", fake_session())
        options.setdefault("start", False)
        publisher = CloudWatchMetricsPublisher(namespace, **options)
        created.append(publisher)
        return publisher

    yield make
    for publisher in created:
        publisher.close()


class Requests:
    """What the publisher's client sent: MetricData per request, and each payload's size
    (uncompressed)."""

    def __init__(self, client: Any) -> None:
        self.data: list[list[dict[str, Any]]] = []
        self.body_sizes: list[int] = []
        events = client.meta.events
        events.register("before-parameter-build.cloudwatch.PutMetricData", self._params)
        events.register("before-send.cloudwatch.PutMetricData", self._send)

    def _params(self, params: dict[str, Any], **kwargs: Any) -> None:
        self.data.append(list(params["MetricData"]))

    def _send(self, request: Any, **kwargs: Any) -> None:
        # botocore gzips PutMetricData bodies above 10 KiB; the limit is checked on the
        # payload itself.
        body = request.body or b""
        if request.headers.get("Content-Encoding") in (b"gzip", "gzip"):
            body = gzip.decompress(body)
        self.body_sizes.append(len(body))


def now_ms() -> int:
    return int(time.time() * 1000)


def minute_start_ms() -> int:
    return now_ms() // 60_000 * 60_000


def away_from_a_minute_edge() -> None:
    """Events sent right after this fall in one minute, so each metric is one datum."""
    left_ms = 60_000 - now_ms() % 60_000
    if left_ms < 2_000:
        time.sleep(left_ms / 1000 + 0.01)


def statistic(
    client: Any, namespace: str, name: str, dimensions: dict[str, str], stat: str
) -> float:
    """``stat`` of one metric over the last half hour, as one value (moto makes one period
    of the whole window)."""
    now = datetime.now(UTC)
    result = client.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "q",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": name,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                    },
                    "Period": 3600,
                    "Stat": stat,
                },
            }
        ],
        StartTime=now - timedelta(minutes=30),
        EndTime=now + timedelta(minutes=30),
    )
    values: list[float] = result["MetricDataResults"][0]["Values"]
    assert len(values) == 1, (name, dimensions, stat, values)
    return values[0]


def listed(client: Any, namespace: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    found = set()
    for page in client.get_paginator("list_metrics").paginate(Namespace=namespace):
        for metric in page["Metrics"]:
            dims = tuple(sorted((d["Name"], d["Value"]) for d in metric.get("Dimensions", [])))
            found.add((metric["MetricName"], dims))
    return found


def operation(
    store: str, op: str, duration_ms: float, outcome: str = "success", table: str = "shop"
) -> Any:
    return signals.OperationEvent(
        store=store,
        operation=op,
        table=table,
        key="k",
        duration_ms=duration_ms,
        outcome=outcome,  # type: ignore[arg-type]
        requests=2 if outcome == "error" else 1,
        retries=1 if outcome == "error" else 0,
        consumed_capacity=0.5,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> float:
    """Seconds it took ``condition`` to hold; fails after ``timeout_s``."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout_s, "condition not met in time"
        time.sleep(0.01)
    return time.monotonic() - start


# --------------------------------------------------------------------------- publishing


def test_events_on_the_bus_reach_cloudwatch_with_their_sums_and_dimensions(
    make_publisher: Callable[..., CloudWatchMetricsPublisher], cloudwatch: Any, namespace: str
) -> None:
    # moto's GetMetricData ignores the namespace once dimensions are given: a table of this
    # test's own keeps other tests' points out of the sums.
    table = namespace.replace("/", "-")
    publisher = make_publisher().connect()
    sender = object()
    away_from_a_minute_edge()
    for duration in (10.0, 20.0, 30.0):
        signals.send(
            signals.operation_completed,
            sender,
            functools.partial(operation, "cache", "get", duration, table=table),
        )
    signals.send(
        signals.operation_completed,
        sender,
        lambda: operation("cache", "set", 8.0, "error", table=table),
    )
    signals.send(
        signals.operation_completed, sender, lambda: operation("dedupe", "claim", 4.0, table=table)
    )
    for _ in range(4):
        signals.send(signals.cache_hit, sender, lambda: signals.CacheEvent("cache", table, "k"))
    signals.send(signals.cache_miss, sender, lambda: signals.CacheEvent("cache", table, "k"))
    for value in (7.0, 3.0):
        signals.send(
            signals.metric_recorded,
            sender,
            functools.partial(
                signals.MetricEvent, "QueueDepth", value, "Count", now_ms(), (("Queue", table),)
            ),
        )

    assert publisher.pending == 5 * 6 + 4 + 1 + 2
    sent = publisher.flush()
    assert publisher.failed_requests == 0
    assert publisher.requests == 1
    assert sent == publisher.published > 0
    assert publisher.pending == 0

    def stat(name: str, stat: str, **dimensions: str) -> float:
        return statistic(cloudwatch, namespace, name, dimensions, stat)

    cache = {"TableName": table, "Store": "cache"}
    assert stat("OperationCount", "Sum", **cache) == 4
    assert stat("OperationErrors", "Sum", **cache) == 1
    assert stat("OperationErrors", "SampleCount", **cache) == 4
    assert stat("OperationRejected", "Sum", **cache) == 0
    get = {**cache, "Operation": "get"}
    assert stat("OperationLatency", "Average", **get) == 20
    assert stat("OperationLatency", "Minimum", **get) == 10
    assert stat("OperationLatency", "Maximum", **get) == 30
    assert stat("DynamoDBRequests", "Sum", **cache, Operation="set") == 2
    assert stat("ConsumedCapacity", "Sum", **get) == 1.5
    assert stat("CacheHits", "Sum", **cache) == 4
    assert stat("CacheMisses", "Sum", **cache) == 1
    assert stat("OperationCount", "Sum", TableName=table, Store="dedupe") == 1
    assert stat("QueueDepth", "Sum", Queue=table) == 10
    assert stat("QueueDepth", "Maximum", Queue=table) == 7

    metrics = listed(cloudwatch, namespace)
    assert ("QueueDepth", (("Queue", table),)) in metrics
    claim = (("Operation", "claim"), ("Store", "dedupe"), ("TableName", table))
    assert ("OperationLatency", claim) in metrics
    assert ("OperationCount", (("Store", "cache"), ("TableName", table))) in metrics
    # Store-level counts carry no Operation dimension: alarms divide them per store.
    assert not any(name == "OperationCount" and len(dims) != 2 for name, dims in metrics)
    assert sent == len(metrics)  # one datum per metric and minute, nothing else
    print(f"37 points from 11 events -> {sent} data in 1 request")


def test_2500_distinct_metrics_take_three_requests_of_at_most_1000(
    make_publisher: Callable[..., CloudWatchMetricsPublisher], cloudwatch: Any, namespace: str
) -> None:
    publisher = make_publisher(max_buffer=5000)
    requests = Requests(publisher.client)
    stamp = now_ms()
    publisher.emit(
        [Metric("Batched", float(i), "Count", (("Index", str(i)),), stamp) for i in range(2500)]
    )

    assert publisher.flush() == 2500
    sizes = [len(data) for data in requests.data]
    print(f"2500 distinct metrics -> {len(sizes)} requests of {sizes} data")
    assert sizes == [1000, 1000, 500]
    assert max(sizes) <= MAX_DATA_PER_REQUEST
    assert publisher.requests == 3
    assert publisher.published == 2500
    assert all(size < MAX_REQUEST_BYTES for size in requests.body_sizes)
    assert len(listed(cloudwatch, namespace)) == 2500


def test_requests_stay_under_1_mb_and_30_dimensions(
    make_publisher: Callable[..., CloudWatchMetricsPublisher], cloudwatch: Any, namespace: str
) -> None:
    publisher = make_publisher()
    requests = Requests(publisher.client)
    stamp = now_ms()
    wide = [
        Metric(
            "Wide",
            1,
            "Count",
            tuple((f"D{d:02}", f"{i}-{d}-" + "x" * 200) for d in range(30)),
            stamp,
        )
        for i in range(300)
    ]
    publisher.emit(wide)

    assert publisher.flush() == 300
    print(
        f"300 data of 30 dimensions -> {len(requests.data)} requests, "
        f"bodies {requests.body_sizes} bytes"
    )
    assert 1 < len(requests.data) < 300
    assert sum(len(data) for data in requests.data) == 300
    assert all(len(datum["Dimensions"]) == 30 for data in requests.data for datum in data)
    assert max(requests.body_sizes) < MAX_REQUEST_BYTES
    # The estimate is conservative, not wasteful: requests are filled to a good part of 1 MB.
    assert max(requests.body_sizes) > MAX_REQUEST_BYTES // 2
    assert publisher.failed_requests == 0
    assert len(listed(cloudwatch, namespace)) == 300


def test_a_datum_cloudwatch_would_refuse_is_dropped_alone(
    make_publisher: Callable[..., CloudWatchMetricsPublisher],
    cloudwatch: Any,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = make_publisher()
    stamp = now_ms()
    dims_31 = tuple((f"D{d}", "v") for d in range(31))
    bad = [
        Metric("TooWide", 1, "Count", dims_31, stamp),
        Metric("EmptyValue", 1, "Count", (("Store", ""),), stamp),
        Metric("BlankValue", 1, "Count", (("Table", "  "),), stamp),
        Metric("NotAscii", 1, "Count", (("Operation", "größe"),), stamp),
        Metric("ColonName", 1, "Count", ((":x", "v"),), stamp),
        Metric("BadUnit", 1, "Furlongs", (), stamp),
        Metric("NotFinite", math.inf, "Count", (), stamp),
        Metric("Ancient", 1, "Count", (), stamp - 15 * 24 * 3_600_000),
        Metric("Twice", 1, "Count", (("A", "1"), ("A", "2")), stamp),
    ]
    good = [Metric("Fine", 1, "Count", dims_31[:30], stamp), Metric("Plain", 2, "Count", (), stamp)]
    with caplog.at_level(logging.WARNING, logger=MODULE_LOGGER):
        publisher.emit([*bad, *good])
        assert publisher.flush() == 2

    assert publisher.dropped == len(bad)
    assert publisher.failed_requests == 0
    assert {name for name, _ in listed(cloudwatch, namespace)} == {"Fine", "Plain"}
    assert len(caplog.records) == len(bad)  # one line per reason


def test_500_events_of_one_metric_in_one_minute_are_one_datum(
    make_publisher: Callable[..., CloudWatchMetricsPublisher], cloudwatch: Any, namespace: str
) -> None:
    publisher = make_publisher().connect()
    requests = Requests(publisher.client)
    stamp = minute_start_ms()
    for value in range(1, 501):
        signals.send(
            signals.metric_recorded,
            None,
            functools.partial(
                signals.MetricEvent, "Latency", value, "Milliseconds", stamp + value, (("Op", "x"),)
            ),
        )

    assert publisher.flush() == 1
    ((datum,),) = requests.data
    print(f"500 events in one minute -> {len(requests.data)} request of 1 datum: {datum}")
    assert datum["StatisticValues"] == {
        "SampleCount": 500.0,
        "Sum": 125_250.0,
        "Minimum": 1.0,
        "Maximum": 500.0,
    }
    assert datum["Timestamp"] == datetime.fromtimestamp(stamp / 1000, tz=UTC)
    assert datum["Unit"] == "Milliseconds"
    assert statistic(cloudwatch, namespace, "Latency", {"Op": "x"}, "SampleCount") == 500
    assert statistic(cloudwatch, namespace, "Latency", {"Op": "x"}, "Average") == 250.5


def test_a_full_buffer_drops_and_counts_without_blocking_or_breaking_the_store(
    make_publisher: Callable[..., CloudWatchMetricsPublisher],
) -> None:
    publisher = make_publisher(max_buffer=10).connect()
    stamp = now_ms()
    longest = 0.0
    for index in range(25):
        start = time.perf_counter()
        signals.send(
            signals.metric_recorded,
            None,
            functools.partial(signals.MetricEvent, "Filled", index, "Count", stamp),
        )
        longest = max(longest, time.perf_counter() - start)
    assert publisher.pending == 10
    assert publisher.dropped == 15
    assert publisher.requests == 0  # nothing was sent on the caller's thread
    assert longest < 0.05

    store: InMemoryCacheStore[int] = InMemoryCacheStore()
    try:
        store.set("k", 1, 0)
        assert store.get("k") == 1  # a cache hit, dropped: the buffer is full
        assert store.get("missing") is None
    finally:
        store.close()
    assert publisher.dropped == 17
    assert publisher.flush() == 1  # the ten kept points are one datum
    assert publisher.pending == 0


def test_close_sends_what_is_buffered_and_stops_the_thread(
    make_publisher: Callable[..., CloudWatchMetricsPublisher], cloudwatch: Any, namespace: str
) -> None:
    publisher = make_publisher(start=True, flush_interval_ms=60_000).connect()
    assert publisher.running
    publisher.emit([Metric("AtClose", 1, "Count", (("K", str(i)),), now_ms()) for i in range(3)])
    assert publisher.published == 0

    publisher.close()
    assert not publisher.running
    assert not publisher.connected
    assert publisher.published == 3
    assert len(listed(cloudwatch, namespace)) == 3
    requests = publisher.requests
    publisher.close()  # idempotent
    assert publisher.requests == requests


def test_the_thread_flushes_every_interval(
    make_publisher: Callable[..., CloudWatchMetricsPublisher],
) -> None:
    publisher = make_publisher(start=True, flush_interval_ms=100)
    publisher.emit([Metric("Ticked", 1, "Count", (), now_ms())])
    took = wait_until(lambda: publisher.published == 1)
    publisher.emit([Metric("Ticked", 2, "Count", (), now_ms())])
    wait_until(lambda: publisher.published == 2)
    print(f"first interval flush after {took * 1000:.0f} ms (interval 100 ms)")
    assert publisher.requests == 2


def test_a_half_full_buffer_wakes_the_thread_before_the_interval(
    make_publisher: Callable[..., CloudWatchMetricsPublisher],
) -> None:
    publisher = make_publisher(start=True, flush_interval_ms=600_000, max_buffer=100)
    publisher.emit([Metric("Early", 1, "Count", (("K", str(i)),), now_ms()) for i in range(49)])
    time.sleep(0.2)
    assert publisher.published == 0  # below half: waits for the interval
    publisher.emit([Metric("Early", 1, "Count", (("K", "49"),), now_ms())])
    wait_until(lambda: publisher.published == 50)
    assert publisher.dropped == 0


def test_an_unreachable_endpoint_is_counted_and_logged_once(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = CloudWatchMetricsPublisher(
        namespace,
        region=REGION,
        endpoint=f"http://127.0.0.1:{closed_port()}",
        session=fake_session(),
        client_config=Config(
            connect_timeout=0.5, read_timeout=0.5, retries={"mode": "standard", "max_attempts": 1}
        ),
        start=False,
    ).connect()
    try:
        with caplog.at_level(logging.WARNING, logger=MODULE_LOGGER):
            for attempt in range(3):
                signals.send(
                    signals.cache_hit, None, lambda: signals.CacheEvent("cache", "shop", "k")
                )
                assert publisher.flush() == 0, attempt
        assert publisher.failed_requests == 3
        assert publisher.requests == 3
        assert publisher.published == 0
        records = [r for r in caplog.records if r.name == MODULE_LOGGER]
        assert len(records) == 1
        assert "EndpointConnectionError" in records[0].getMessage()
    finally:
        publisher.close()  # its last flush has nothing left to send
    assert publisher.failed_requests == 3


def test_from_options_publishes_where_the_options_say(
    moto_endpoint: str, cloudwatch: Any, namespace: str
) -> None:
    options = CloudWatchOptions(
        enabled=True, namespace=namespace, region=REGION, endpoint=moto_endpoint
    )
    publisher = CloudWatchMetricsPublisher.from_options(
        options, session=fake_session(), start=False
    )
    try:
        assert (publisher.namespace, publisher.region, publisher.endpoint) == (
            namespace,
            REGION,
            moto_endpoint,
        )
        publisher.emit([Metric("FromOptions", 1, "Count", (), now_ms())])
    finally:
        publisher.close()
    assert listed(cloudwatch, namespace) == {("FromOptions", ())}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"namespace": "AWS/DynamoDB"}, "namespace"),
        ({"namespace": ""}, "namespace"),
        ({"namespace": "x" * 256}, "namespace"),
        ({"flush_interval_ms": 0}, "flush_interval_ms"),
        ({"max_buffer": -1}, "max_buffer"),
        ({"max_buffer": True}, "max_buffer"),
        ({"endpoint": "localhost:4566"}, "endpoint"),
        ({"region": "not a region"}, "region"),
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any], field: str) -> None:
    options.setdefault("namespace", "Fine")
    with pytest.raises(ConfigurationError) as raised:
        CloudWatchMetricsPublisher(**options, session=fake_session(), start=False)
    assert raised.value.field == field
    assert isinstance(raised.value, ValueError)


# --------------------------------------------------------------------------- dashboard


def one_event_of_each(signal: NamedSignal) -> Any:
    """A payload for every signal the catalogue maps (a new one fails here until added)."""
    stamp = now_ms()
    client = signals.ClientEvent(
        "GET",
        "GET /x",
        "issues",
        "high",
        status=503,
        waited_ms=5,
        duration_ms=9.0,
        store="cache",
        operation="get",
    )
    events: dict[NamedSignal, Any] = {
        signals.operation_completed: operation("cache", "get", 5.0),
        signals.cache_hit: signals.CacheEvent("cache", "shop", "k"),
        signals.cache_miss: signals.CacheEvent("cache", "shop", "k"),
        signals.cache_decode_error: signals.CacheEvent("cache", "shop", "k", error="bad"),
        signals.rate_limited: signals.RateLimitedEvent(
            "rate_limit", "shop", "issues", 10, 1000, 50
        ),
        signals.dedupe_joined: signals.DedupeEvent("dedupe", "shop", "k", "job-1"),
        signals.store_fallback: signals.FallbackEvent(
            "cache", "shop", "get", "k", "open", "miss", RuntimeError("down")
        ),
        signals.circuit_state_changed: signals.CircuitEvent("cache", "shop", "closed", "open", 5),
        signals.request_retried: signals.RetryEvent(
            "cache", "get", "shop", 1, "ThrottlingException", 50.0
        ),
        signals.health_checked: signals.HealthEvent("cache", "shop", True, 3.0, stamp),
        signals.metric_recorded: signals.MetricEvent("CustomThing", 1, "Count", stamp),
        signals.correlation_ended: signals.CorrelationEvent("c1", "fetch-issue", 12.0, True),
        signals.client_cache_hit: client,
        signals.client_cache_miss: client,
        signals.client_dedupe_joined: client,
        signals.client_limiter_waited: client,
        signals.client_retry_after: client,
        signals.client_upstream_call: client,
        signals.client_upstream_status: client,
        signals.client_store_unavailable: client,
    }
    return events[signal]


def test_the_dashboard_charts_exactly_what_the_publisher_sends(
    make_publisher: Callable[..., CloudWatchMetricsPublisher], cloudwatch: Any, namespace: str
) -> None:
    publisher = make_publisher().connect()
    for signal in mapped_signals():
        signals.send(signal, None, functools.partial(one_event_of_each, signal))
    publisher.flush()
    assert publisher.dropped == publisher.failed_requests == 0

    sent = {
        (namespace, name, tuple(sorted(dim for dim, _ in dims)))
        for name, dims in listed(cloudwatch, namespace)
        if name != "CustomThing"
    }
    body = CloudWatchDashboardConfig.create_dynamodb_store_dashboard(
        "store-dashboard", namespace=namespace, region="eu-west-1"
    )
    charted = dashboard_metrics(body)
    assert charted == sent
    assert {name for _, name, _ in charted} == {spec.name for spec in METRICS}
    assert len(charted) == len(METRICS)

    widgets = json.loads(body)["widgets"]
    charts = [w for w in widgets if w["type"] == "metric"]
    assert charts
    for widget in charts:
        properties = widget["properties"]
        assert properties["region"] == "eu-west-1"
        assert properties["view"] == "timeSeries"
        assert properties["period"] == 300
        ids = [entry[0]["id"] for entry in properties["metrics"]]
        assert len(ids) == len(set(ids))
        assert widget["x"] + widget["width"] <= 24
    assert "store-dashboard" in widgets[0]["properties"]["markdown"]

    answer = cloudwatch.put_dashboard(DashboardName="store-dashboard", DashboardBody=body)
    assert answer["DashboardValidationMessages"] == []
    stored = cloudwatch.get_dashboard(DashboardName="store-dashboard")
    assert json.loads(stored["DashboardBody"]) == json.loads(body)


def test_the_default_dashboard_uses_the_default_namespace_unquoted() -> None:
    body = CloudWatchDashboardConfig.create_dynamodb_store_dashboard("comic-vine-store")
    assert (
        "SEARCH('{DynamoDBStore,TableName,Store} MetricName=\\\"CacheHits\\\"', 'Sum', 300)" in body
    )
    assert {namespace for namespace, _, _ in dashboard_metrics(body)} == {DEFAULT_NAMESPACE}
    expected = {(DEFAULT_NAMESPACE, s.name, tuple(sorted(s.dimensions))) for s in METRICS}
    assert dashboard_metrics(body) == expected


@pytest.mark.parametrize("name", ["", "has space", "x" * 256, "dots.not.allowed", "ünï"])
def test_bad_dashboard_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="dashboard name") as raised:
        CloudWatchDashboardConfig.create_dynamodb_store_dashboard(name)
    assert raised.value.field == "name"


def test_the_alarms_are_accepted_by_cloudwatch(cloudwatch: Any, namespace: str) -> None:
    alarms = CloudWatchDashboardConfig.create_alarms(
        table_name="shop",
        store="cache",
        namespace=namespace,
        error_rate_percent=2.5,
        period_s=60,
        alarm_actions=["arn:aws:sns:us-east-1:123456789012:ops"],
    )
    for alarm in alarms:
        cloudwatch.put_metric_alarm(**alarm)
    names = [alarm["AlarmName"] for alarm in alarms]
    assert all("shop" in name and "cache" in name for name in names)
    described = {
        alarm["AlarmName"]: alarm
        for alarm in cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
    }
    assert set(described) == set(names)

    throttling, circuit, error_rate = (described[name] for name in names)
    dims = [{"Name": "TableName", "Value": "shop"}, {"Name": "Store", "Value": "cache"}]
    assert (throttling["MetricName"], throttling["Statistic"], throttling["Threshold"]) == (
        "Throttles",
        "Sum",
        0.0,
    )
    assert throttling["ComparisonOperator"] == "GreaterThanThreshold"
    assert throttling["Dimensions"] == dims
    assert throttling["AlarmActions"] == ["arn:aws:sns:us-east-1:123456789012:ops"]
    assert (circuit["MetricName"], circuit["Statistic"], circuit["Threshold"]) == (
        "CircuitBreakerOpen",
        "Maximum",
        1.0,
    )
    assert circuit["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert error_rate["Threshold"] == 2.5
    queries = {query["Id"]: query for query in error_rate["Metrics"]}
    assert queries["error_rate"]["Expression"] == "100 * errors / operations"
    assert [q["Id"] for q in error_rate["Metrics"] if q["ReturnData"]] == ["error_rate"]
    for metric_id, name in (("errors", "OperationErrors"), ("operations", "OperationCount")):
        stat = queries[metric_id]["MetricStat"]
        assert stat["Metric"] == {"Namespace": namespace, "MetricName": name, "Dimensions": dims}
        assert (stat["Stat"], stat["Period"]) == ("Sum", 60)
    # Every metric an alarm watches is one the catalogue publishes, with its dimensions.
    catalogue = {spec.name: spec.dimensions for spec in METRICS}
    for name in ("Throttles", "CircuitBreakerOpen", "OperationErrors", "OperationCount"):
        assert catalogue[name] == ("TableName", "Store")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"error_rate_percent": 0}, "error_rate_percent"),
        ({"error_rate_percent": 150.0}, "error_rate_percent"),
        ({"period_s": 61}, "period_s"),
        ({"alarm_actions": ["not-an-arn"]}, "alarm_actions"),
        ({"store": ""}, "store"),
        ({"namespace": "AWS/Mine"}, "namespace"),
    ],
)
def test_bad_alarm_options_are_refused(options: dict[str, Any], field: str) -> None:
    arguments: dict[str, Any] = {"table_name": "shop", "store": "cache", **options}
    with pytest.raises(ConfigurationError) as raised:
        CloudWatchDashboardConfig.create_alarms(**arguments)
    assert raised.value.field == field


# --------------------------------------------------------------------------- CLI


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_prints_the_dashboard_and_the_alarms(cloudwatch: Any) -> None:
    dashboard = run_cli("print", "dashboard", "--region", "eu-central-1")
    assert dashboard.returncode == 0, dashboard.stderr
    body = json.loads(dashboard.stdout)
    assert body["widgets"][1:]
    assert {w["properties"]["region"] for w in body["widgets"] if w["type"] == "metric"} == {
        "eu-central-1"
    }
    assert len(dashboard_metrics(dashboard.stdout)) == len(METRICS)
    assert "comic-vine-store" in body["widgets"][0]["properties"]["markdown"]

    custom = run_cli("print", "dashboard", "--name", "mine", "--namespace", "App/Store")
    assert custom.returncode == 0, custom.stderr
    assert {ns for ns, _, _ in dashboard_metrics(custom.stdout)} == {"App/Store"}
    assert {
        w["properties"]["region"]
        for w in json.loads(custom.stdout)["widgets"]
        if w["type"] == "metric"
    } == {REGION}

    alarms = run_cli("print", "alarms", "--store", "cache")
    assert alarms.returncode == 0, alarms.stderr
    listed_alarms = json.loads(alarms.stdout)
    assert len(listed_alarms) == 3
    for alarm in listed_alarms:
        assert "comic-vine-store" in alarm["AlarmName"]
        assert "cache" in alarm["AlarmName"]
        cloudwatch.put_metric_alarm(**alarm)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["print", "dashboard", "--name", "no spaces please"], "dashboard name"),
        (["print", "dashboard", "--region", "moon"], "region"),
        (["print", "alarms", "--store", "cache", "--period", "45"], "period_s"),
        (["print", "alarms", "--store", "cache", "--table", "no"], "table_name"),
    ],
)
def test_cli_refuses_bad_values_in_one_line(args: list[str], fragment: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert result.stdout == ""
