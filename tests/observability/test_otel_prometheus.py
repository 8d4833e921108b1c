"""The OpenTelemetry and Prometheus handlers: events sent on the bus come out of an SDK reader
and a Prometheus scrape as the right instruments, values and attributes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, cast

import pytest
from opentelemetry.metrics import Meter, MeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.metrics.export import Metric as OtelMetric
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.observability.handlers import (
    OpenTelemetryHandler,
    PrometheusHandler,
)
from comic_vine_dynamodb_store.observability.handlers.otel import instrument_name
from comic_vine_dynamodb_store.observability.handlers.prometheus import snake_case
from comic_vine_dynamodb_store.observability.metrics import METRICS


class _Store:
    """A sender: stands for a store instance."""


def _operation(
    *, store: str = "cache", table: str = "comics", duration_ms: float, outcome: Any = "success"
) -> signals.OperationEvent:
    return signals.OperationEvent(
        store=store,
        operation="get",
        table=table,
        key="issue:1",
        duration_ms=duration_ms,
        outcome=outcome,
        requests=2,
        retries=1,
        consumed_capacity=0.5,
    )


def _circuit(state: str) -> signals.CircuitEvent:
    return signals.CircuitEvent(
        store="cache", table="comics", previous="closed", state=state, failure_count=5
    )


def _send_store_events() -> None:
    """Two operations on one store (10 ms ok, 30 ms failed), one on another table, the
    breaker opening then closing, a throttled retry, a custom metric."""
    store = _Store()
    signals.send(signals.operation_completed, store, lambda: _operation(duration_ms=10.0))
    signals.send(
        signals.operation_completed,
        store,
        lambda: _operation(duration_ms=30.0, outcome="error"),
    )
    signals.send(
        signals.operation_completed, store, lambda: _operation(table="other", duration_ms=5.0)
    )
    signals.send(signals.circuit_state_changed, store, lambda: _circuit("open"))
    signals.send(
        signals.request_retried,
        store,
        lambda: signals.RetryEvent("cache", "get", "comics", 1, "ThrottlingException", 20.0),
    )
    signals.send(
        signals.metric_recorded,
        store,
        lambda: signals.MetricEvent(
            "IssuesImported", 42, "Count", 1_700_000_000_000, (("Publisher", "Marvel"),)
        ),
    )
    signals.send(
        signals.client_upstream_status,
        store,
        lambda: signals.ClientEvent(
            method="GET",
            key="GET /issues",
            resource="issues",
            priority="high",
            status=429,
            duration_ms=80.0,
        ),
    )


COMICS = {"TableName": "comics", "Store": "cache"}
COMICS_GET = {**COMICS, "Operation": "get"}


# --- OpenTelemetry ---------------------------------------------------------------------------


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = SdkMeterProvider(metric_readers=[reader])
    with OpenTelemetryHandler(provider).connect():
        yield reader
    provider.shutdown()


def _collect(reader: InMemoryMetricReader) -> dict[str, OtelMetric]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def _number_points(metric: OtelMetric) -> dict[frozenset[tuple[str, Any]], float]:
    points = cast(list[NumberDataPoint], list(metric.data.data_points))
    return {frozenset((p.attributes or {}).items()): p.value for p in points}


def _histogram_points(metric: OtelMetric) -> dict[frozenset[tuple[str, Any]], HistogramDataPoint]:
    points = cast(list[HistogramDataPoint], list(metric.data.data_points))
    return {frozenset((p.attributes or {}).items()): p for p in points}


def _key(attributes: dict[str, str]) -> frozenset[tuple[str, Any]]:
    return frozenset(attributes.items())


def test_otel_sum_metrics_are_monotonic_counters(reader: InMemoryMetricReader) -> None:
    _send_store_events()
    metrics = _collect(reader)

    count = metrics["dynamodb_store.operation_count"]
    assert isinstance(count.data, Sum)
    assert count.data.is_monotonic
    assert count.unit == "1"
    assert _number_points(count) == {
        _key(COMICS): 2,
        _key({"TableName": "other", "Store": "cache"}): 1,
    }
    assert _number_points(metrics["dynamodb_store.operation_errors"])[_key(COMICS)] == 1
    requests = _number_points(metrics["dynamodb_store.dynamodb_requests"])
    assert requests[_key(COMICS_GET)] == 4
    capacity = _number_points(metrics["dynamodb_store.consumed_capacity"])
    assert capacity[_key(COMICS_GET)] == pytest.approx(1.0)
    assert _number_points(metrics["dynamodb_store.throttles"]) == {_key(COMICS): 1}
    assert _number_points(metrics["dynamodb_store.upstream_errors"]) == {
        _key({"Priority": "high"}): 1
    }


def test_otel_latencies_are_histograms_in_milliseconds(reader: InMemoryMetricReader) -> None:
    _send_store_events()
    metrics = _collect(reader)

    latency = metrics["dynamodb_store.operation_latency"]
    assert isinstance(latency.data, Histogram)
    assert latency.unit == "ms"
    points = _histogram_points(latency)
    assert set(points) == {
        _key(COMICS_GET),
        _key({"TableName": "other", "Store": "cache", "Operation": "get"}),
    }
    comics = points[_key(COMICS_GET)]
    assert (comics.count, comics.sum, comics.min, comics.max) == (2, 40.0, 10.0, 30.0)
    upstream = _histogram_points(metrics["dynamodb_store.upstream_latency"])
    assert upstream[_key({"Priority": "high"})].sum == 80.0


def test_otel_circuit_breaker_open_is_a_gauge_of_the_last_state(
    reader: InMemoryMetricReader,
) -> None:
    _send_store_events()
    gauge = _collect(reader)["dynamodb_store.circuit_breaker_open"]
    assert isinstance(gauge.data, Gauge)
    assert _number_points(gauge) == {_key(COMICS): 1}

    signals.send(signals.circuit_state_changed, _Store(), lambda: _circuit("closed"))
    assert _number_points(_collect(reader)["dynamodb_store.circuit_breaker_open"]) == {
        _key(COMICS): 0
    }


def test_otel_custom_metrics_are_histograms_with_their_dimensions(
    reader: InMemoryMetricReader,
) -> None:
    _send_store_events()
    custom = _collect(reader)["dynamodb_store.issues_imported"]
    assert isinstance(custom.data, Histogram)
    [point] = _histogram_points(custom).items()
    assert point[0] == _key({"Publisher": "Marvel"})
    assert (point[1].count, point[1].sum) == (1, 42.0)


def test_otel_instruments_are_created_once_per_name(
    reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            _send_store_events()
    # The SDK warns when an instrument name is registered twice.
    assert [r.getMessage() for r in caplog.records] == []
    count = _collect(reader)["dynamodb_store.operation_count"]
    assert _number_points(count)[_key(COMICS)] == 6


def test_otel_handler_stops_at_disconnect() -> None:
    reader = InMemoryMetricReader()
    provider = SdkMeterProvider(metric_readers=[reader])
    handler = OpenTelemetryHandler(provider, prefix="comics.").connect()
    try:
        signals.send(signals.cache_hit, _Store(), lambda: signals.CacheEvent("cache", "t", "k"))
    finally:
        handler.close()
    signals.send(signals.cache_hit, _Store(), lambda: signals.CacheEvent("cache", "t", "k"))

    hits = _collect(reader)["comics.cache_hits"]
    assert _number_points(hits) == {_key({"TableName": "t", "Store": "cache"}): 1}
    provider.shutdown()


class _MeterWithoutGauge:
    """An SDK meter seen through an older API: no synchronous gauge."""

    def __init__(self, meter: Meter) -> None:
        self._meter = meter

    def create_counter(self, *args: Any, **kwargs: Any) -> Any:
        return self._meter.create_counter(*args, **kwargs)

    def create_histogram(self, *args: Any, **kwargs: Any) -> Any:
        return self._meter.create_histogram(*args, **kwargs)

    def create_observable_gauge(self, *args: Any, **kwargs: Any) -> Any:
        return self._meter.create_observable_gauge(*args, **kwargs)


class _ProviderWithoutGauge:
    def __init__(self, provider: MeterProvider) -> None:
        self._provider = provider

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        return _MeterWithoutGauge(self._provider.get_meter(*args, **kwargs))


def test_otel_without_a_synchronous_gauge_observes_the_last_value() -> None:
    reader = InMemoryMetricReader()
    provider = SdkMeterProvider(metric_readers=[reader])
    wrapped = cast(MeterProvider, _ProviderWithoutGauge(provider))
    with OpenTelemetryHandler(wrapped).connect():
        signals.send(signals.circuit_state_changed, _Store(), lambda: _circuit("open"))
        signals.send(signals.circuit_state_changed, _Store(), lambda: _circuit("half_open"))
        gauge = _collect(reader)["dynamodb_store.circuit_breaker_open"]
    assert isinstance(gauge.data, Gauge)
    assert _number_points(gauge) == {_key(COMICS): 0}
    provider.shutdown()


def test_otel_instrument_names_are_valid_and_distinct() -> None:
    names = [instrument_name(spec.name) for spec in METRICS]
    assert len(set(names)) == len(names)
    assert instrument_name("DynamoDBRequests") == "dynamodb_store.dynamodb_requests"
    assert instrument_name("Imports per run!") == "dynamodb_store.imports_per_run_"
    assert all(len(name) <= 255 and name[0].isalpha() for name in names)


def test_otel_handler_default_is_the_global_provider() -> None:
    # Without an SDK configured the global provider is a no-op: nothing is raised.
    with OpenTelemetryHandler().connect():
        _send_store_events()


# --- Prometheus ------------------------------------------------------------------------------


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    with PrometheusHandler(registry).connect():
        yield registry


def _scrape(registry: CollectorRegistry) -> dict[str, Any]:
    text = generate_latest(registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


PROM_COMICS = {"table_name": "comics", "store": "cache"}
PROM_COMICS_GET = {**PROM_COMICS, "operation": "get"}


def test_prometheus_counters_count_with_snake_case_labels(registry: CollectorRegistry) -> None:
    _send_store_events()
    _send_store_events()

    value = registry.get_sample_value
    assert value("dynamodb_store_operation_count_total", PROM_COMICS) == 4
    assert (
        value("dynamodb_store_operation_count_total", {**PROM_COMICS, "table_name": "other"}) == 2
    )
    assert value("dynamodb_store_operation_errors_total", PROM_COMICS) == 2
    assert value("dynamodb_store_operation_rejected_total", PROM_COMICS) == 0
    assert value("dynamodb_store_dynamodb_requests_total", PROM_COMICS_GET) == 8
    assert value("dynamodb_store_consumed_capacity_total", PROM_COMICS_GET) == 2.0
    assert value("dynamodb_store_retries_total", PROM_COMICS) == 2
    assert value("dynamodb_store_throttles_total", PROM_COMICS) == 2
    assert value("dynamodb_store_upstream_errors_total", {"priority": "high"}) == 2

    families = _scrape(registry)
    count = families["dynamodb_store_operation_count"]
    assert count.type == "counter"
    samples = {(s.name, tuple(sorted(s.labels.items())), s.value) for s in count.samples}
    assert (
        "dynamodb_store_operation_count_total",
        (("store", "cache"), ("table_name", "comics")),
        4.0,
    ) in samples


def test_prometheus_latencies_are_histograms_in_seconds(registry: CollectorRegistry) -> None:
    _send_store_events()

    value = registry.get_sample_value
    name = "dynamodb_store_operation_latency_seconds"
    assert value(f"{name}_count", PROM_COMICS_GET) == 2
    assert value(f"{name}_sum", PROM_COMICS_GET) == pytest.approx(0.040)
    assert value(f"{name}_bucket", {**PROM_COMICS_GET, "le": "0.001"}) == 0  # 1 ms bucket
    assert value(f"{name}_bucket", {**PROM_COMICS_GET, "le": "0.01"}) == 1  # 10 ms
    assert value(f"{name}_bucket", {**PROM_COMICS_GET, "le": "0.025"}) == 1
    assert value(f"{name}_bucket", {**PROM_COMICS_GET, "le": "0.05"}) == 2  # and 30 ms
    assert value("dynamodb_store_upstream_latency_seconds_sum", {"priority": "high"}) == (
        pytest.approx(0.080)
    )

    family = _scrape(registry)[name]
    assert family.type == "histogram"
    assert {key for s in family.samples for key in s.labels} == {
        "table_name",
        "store",
        "operation",
        "le",
    }


def test_prometheus_circuit_breaker_open_is_a_gauge(registry: CollectorRegistry) -> None:
    _send_store_events()
    assert _scrape(registry)["dynamodb_store_circuit_breaker_open"].type == "gauge"
    assert registry.get_sample_value("dynamodb_store_circuit_breaker_open", PROM_COMICS) == 1

    signals.send(signals.circuit_state_changed, _Store(), lambda: _circuit("closed"))
    assert registry.get_sample_value("dynamodb_store_circuit_breaker_open", PROM_COMICS) == 0


def test_prometheus_custom_metrics_keep_the_label_names_of_their_first_value(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    def record(value: float, dimensions: tuple[tuple[str, str], ...]) -> None:
        event = signals.MetricEvent("IssuesImported", value, "Count", 1, dimensions)
        signals.send(signals.metric_recorded, _Store(), lambda: event)

    with caplog.at_level(logging.WARNING):
        record(42, (("Publisher", "Marvel"),))
        record(7, (("Publisher", "DC"),))
        for _ in range(3):
            record(99, (("Imprint", "Vertigo"),))  # other label names: skipped
        record(43, (("Publisher", "Marvel"),))

    family = _scrape(registry)["dynamodb_store_issues_imported"]
    assert family.type == "gauge"
    assert {s.labels["publisher"]: s.value for s in family.samples} == {"Marvel": 43, "DC": 7}
    skipped = [r for r in caplog.records if "Imprint" in r.getMessage()]
    assert len(skipped) == 1


def test_prometheus_handlers_on_separate_registries_do_not_share_values() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    with PrometheusHandler(first).connect(), PrometheusHandler(second).connect():
        _send_store_events()
    with PrometheusHandler(first).connect(sender=_Store()):  # another store: no events
        _send_store_events()
    assert first.get_sample_value("dynamodb_store_operation_count_total", PROM_COMICS) == 2
    assert second.get_sample_value("dynamodb_store_operation_count_total", PROM_COMICS) == 2


def test_prometheus_a_name_the_registry_holds_is_skipped_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shared = CollectorRegistry()
    with (
        caplog.at_level(logging.WARNING),
        PrometheusHandler(shared).connect(),
        PrometheusHandler(shared).connect(),
    ):
        for _ in range(2):
            signals.send(signals.cache_hit, _Store(), lambda: signals.CacheEvent("c", "t", "k"))
    # The first handler counts; the second cannot register the same name and says so once.
    labels = {"table_name": "t", "store": "c"}
    assert shared.get_sample_value("dynamodb_store_cache_hits_total", labels) == 2
    logged = [
        r for r in caplog.records if "cache_hits" in r.getMessage() or "CacheHits" in r.getMessage()
    ]
    assert len(logged) == 1


def test_prometheus_unregister_lets_a_new_handler_take_the_names() -> None:
    shared = CollectorRegistry()
    labels = {"table_name": "t", "store": "c"}
    with PrometheusHandler(shared).connect() as first:
        signals.send(signals.cache_hit, _Store(), lambda: signals.CacheEvent("c", "t", "k"))
    assert shared.get_sample_value("dynamodb_store_cache_hits_total", labels) == 1
    first.unregister()
    assert shared.get_sample_value("dynamodb_store_cache_hits_total", labels) is None
    with PrometheusHandler(shared).connect():
        signals.send(signals.cache_hit, _Store(), lambda: signals.CacheEvent("c", "t", "k"))
        assert shared.get_sample_value("dynamodb_store_cache_hits_total", labels) == 1


def test_prometheus_prefix_and_names() -> None:
    registry = CollectorRegistry()
    with PrometheusHandler(registry, prefix="comics_").connect():
        signals.send(signals.cache_miss, _Store(), lambda: signals.CacheEvent("c", "t", "k"))
    assert (
        registry.get_sample_value("comics_cache_misses_total", {"table_name": "t", "store": "c"})
        == 1
    )
    assert snake_case("DynamoDBRequests") == "dynamodb_requests"
    assert snake_case("TableName") == "table_name"
    assert snake_case("HTTPStatus") == "http_status"
    assert snake_case("p99 latency (ms)") == "p99_latency_ms"
