"""The metric catalogue: which metrics the signals become, with their units and dimensions.

One mapping (:func:`metrics_of`) turns a signal's payload into :class:`Metric` values, and
every metrics handler (CloudWatch, EMF, OpenTelemetry, Prometheus) publishes what it returns,
so the four agree on names, units and dimensions. :data:`METRICS` lists them all, and the
CloudWatch dashboard is drawn from it, so a dashboard never charts a metric nobody emits.

Dimensions stay few and of low cardinality (table, store, operation, priority), never a cache
key, a resource or a URL: each distinct set of dimensions is a separately billed custom metric
in CloudWatch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from blinker import NamedSignal

from comic_vine_dynamodb_store.clock import system_clock_ms
from comic_vine_dynamodb_store.observability import signals

__all__ = [
    "DEFAULT_NAMESPACE",
    "METRICS",
    "STANDARD_UNITS",
    "Metric",
    "MetricSpec",
    "Unit",
    "metrics_of",
    "spec_of",
]

DEFAULT_NAMESPACE: Final = "DynamoDBStore"
"""CloudWatch namespace of the store metrics (``monitoring.cloud_watch.namespace``)."""

Unit = Literal["Count", "Milliseconds", "None"]

STANDARD_UNITS: Final = frozenset(
    {
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    }
)
"""CloudWatch's ``StandardUnit`` values: what ``Monitor.record_metric`` accepts."""

UNKNOWN: Final = "unknown"
"""A dimension's value when the event does not know it (dimension values cannot be empty)."""

THROTTLING_CODES: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "Throttling",
    }
)


@dataclass(frozen=True, slots=True)
class Metric:
    """One data point: ``value`` in ``unit`` at ``timestamp_ms``, with ``dimensions``."""

    name: str
    value: float
    unit: str
    dimensions: tuple[tuple[str, str], ...]
    timestamp_ms: int

    @property
    def dimension_names(self) -> tuple[str, ...]:
        """The dimensions' names, in order."""
        return tuple(name for name, _ in self.dimensions)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A metric of the catalogue: what it counts, from which signal, sliced how."""

    name: str
    unit: Unit
    dimensions: tuple[str, ...]
    signal: str
    statistic: Literal["Sum", "Average", "Maximum"]
    description: str


_STORE = ("TableName", "Store")
_OPERATION = ("TableName", "Store", "Operation")
_CLIENT = ("Priority",)

METRICS: Final[tuple[MetricSpec, ...]] = (
    MetricSpec(
        "OperationLatency",
        "Milliseconds",
        _OPERATION,
        "operation-completed",
        "Average",
        "Wall time of a store operation, retries included.",
    ),
    MetricSpec(
        "OperationCount",
        "Count",
        _STORE,
        "operation-completed",
        "Sum",
        "Store operations (each one or more DynamoDB requests).",
    ),
    MetricSpec(
        "OperationErrors",
        "Count",
        _STORE,
        "operation-completed",
        "Sum",
        "Operations that failed (DynamoDB or the transport): 1 per failure, else 0.",
    ),
    MetricSpec(
        "OperationRejected",
        "Count",
        _STORE,
        "operation-completed",
        "Sum",
        "Operations the open circuit breaker refused without a request: 1 each, else 0.",
    ),
    MetricSpec(
        "DynamoDBRequests",
        "Count",
        _OPERATION,
        "operation-completed",
        "Sum",
        "HTTP requests sent to DynamoDB, retries included.",
    ),
    MetricSpec(
        "ConsumedCapacity",
        "Count",
        _OPERATION,
        "operation-completed",
        "Sum",
        "Capacity units DynamoDB reported for the operation.",
    ),
    MetricSpec(
        "CacheHits", "Count", _STORE, "cache-hit", "Sum", "Cache gets that found a live value."
    ),
    MetricSpec(
        "CacheMisses", "Count", _STORE, "cache-miss", "Sum", "Cache gets that found nothing live."
    ),
    MetricSpec(
        "CacheDecodeErrors",
        "Count",
        _STORE,
        "cache-decode-error",
        "Sum",
        "Stored values that did not decode (served as misses).",
    ),
    MetricSpec(
        "RateLimited",
        "Count",
        _STORE,
        "rate-limited",
        "Sum",
        "Acquires refused because the window was full.",
    ),
    MetricSpec(
        "DedupeJoins",
        "Count",
        _STORE,
        "dedupe-joined",
        "Sum",
        "Registrations that joined another caller's live job instead of owning one.",
    ),
    MetricSpec(
        "CircuitBreakerOpen",
        "Count",
        _STORE,
        "circuit-state-changed",
        "Maximum",
        "1 when the breaker opens, 0 when it closes or half-opens.",
    ),
    MetricSpec(
        "Retries",
        "Count",
        _STORE,
        "request-retried",
        "Sum",
        "DynamoDB requests retried (any retryable error).",
    ),
    MetricSpec(
        "Throttles",
        "Count",
        _STORE,
        "request-retried",
        "Sum",
        "Retries caused by throttling: 1 per throttled request, else 0.",
    ),
    MetricSpec(
        "StoreFallbacks",
        "Count",
        ("TableName", "Store", "Fallback"),
        "store-fallback",
        "Sum",
        "Calls that met an unavailable DynamoDB and fell back (on_unavailable open or closed).",
    ),
    MetricSpec(
        "HealthCheckLatency",
        "Milliseconds",
        _STORE,
        "health-checked",
        "Average",
        "Round trip of a health check.",
    ),
    MetricSpec(
        "HealthCheckFailures",
        "Count",
        _STORE,
        "health-checked",
        "Sum",
        "Health checks that failed: 1 per failure, else 0.",
    ),
    MetricSpec(
        "MonitoredOperationLatency",
        "Milliseconds",
        ("Operation",),
        "correlation-ended",
        "Average",
        "Duration of a correlation (each ``monitor_operation`` call).",
    ),
    MetricSpec(
        "MonitoredOperationErrors",
        "Count",
        ("Operation",),
        "correlation-ended",
        "Sum",
        "Correlations that ended in failure: 1 each, else 0.",
    ),
    MetricSpec(
        "ClientCacheHits",
        "Count",
        _CLIENT,
        "client-cache-hit",
        "Sum",
        "Requests the client flow answered from the cache.",
    ),
    MetricSpec(
        "ClientCacheMisses",
        "Count",
        _CLIENT,
        "client-cache-miss",
        "Sum",
        "Requests the cache could not answer.",
    ),
    MetricSpec(
        "ClientDedupeJoins",
        "Count",
        _CLIENT,
        "client-dedupe-joined",
        "Sum",
        "Requests that waited for another caller's identical request.",
    ),
    MetricSpec(
        "ClientLimiterWait",
        "Milliseconds",
        _CLIENT,
        "client-limiter-waited",
        "Average",
        "Time a request slept for the rate limiter.",
    ),
    MetricSpec(
        "ClientRetryAfter",
        "Count",
        _CLIENT,
        "client-retry-after",
        "Sum",
        "API answers 420/429 that the flow waited out.",
    ),
    MetricSpec(
        "UpstreamCalls",
        "Count",
        _CLIENT,
        "client-upstream-call",
        "Sum",
        "Requests sent to the API (after admission).",
    ),
    MetricSpec(
        "UpstreamLatency",
        "Milliseconds",
        _CLIENT,
        "client-upstream-status",
        "Average",
        "Time the API took to answer.",
    ),
    MetricSpec(
        "UpstreamErrors",
        "Count",
        _CLIENT,
        "client-upstream-status",
        "Sum",
        "API answers of 5xx, 420 or 429: 1 each, else 0.",
    ),
    MetricSpec(
        "ClientStoreUnavailable",
        "Count",
        ("Priority", "Store"),
        "client-store-unavailable",
        "Sum",
        "Requests that met an unavailable store (served around, or refused by the limiter).",
    ),
)
"""Every metric the library emits, besides custom ones from ``Monitor.record_metric``."""

_BY_NAME: Final = {spec.name: spec for spec in METRICS}


def spec_of(name: str) -> MetricSpec:
    """The catalogue entry of metric ``name`` (``KeyError`` for a custom metric)."""
    return _BY_NAME[name]


def _store_dims(event: Any) -> tuple[tuple[str, str], ...]:
    return (("TableName", event.table), ("Store", event.store))


def _operation(event: signals.OperationEvent, now: int) -> list[Metric]:
    # Counts per store (what alarms divide), latency and cost per operation.
    store = _store_dims(event)
    dims = (*store, ("Operation", event.operation))
    return [
        Metric("OperationCount", 1, "Count", store, now),
        Metric("OperationErrors", float(event.outcome == "error"), "Count", store, now),
        Metric("OperationRejected", float(event.outcome == "rejected"), "Count", store, now),
        Metric("OperationLatency", event.duration_ms, "Milliseconds", dims, now),
        Metric("DynamoDBRequests", event.requests, "Count", dims, now),
        Metric("ConsumedCapacity", event.consumed_capacity, "Count", dims, now),
    ]


def _count(name: str) -> Callable[[Any, int], list[Metric]]:
    def metrics(event: Any, now: int) -> list[Metric]:
        return [Metric(name, 1, "Count", _store_dims(event), now)]

    return metrics


def _circuit(event: signals.CircuitEvent, now: int) -> list[Metric]:
    opened = float(event.state == "open")
    return [Metric("CircuitBreakerOpen", opened, "Count", _store_dims(event), now)]


def _retry(event: signals.RetryEvent, now: int) -> list[Metric]:
    # A request retried outside any store operation has neither: CloudWatch needs a value.
    dims = (("TableName", event.table or UNKNOWN), ("Store", event.store or UNKNOWN))
    throttled = float(event.error_code in THROTTLING_CODES)
    return [
        Metric("Retries", 1, "Count", dims, now),
        Metric("Throttles", throttled, "Count", dims, now),
    ]


def _fallback(event: signals.FallbackEvent, now: int) -> list[Metric]:
    dims = (*_store_dims(event), ("Fallback", event.fallback))
    return [Metric("StoreFallbacks", 1, "Count", dims, now)]


def _health(event: signals.HealthEvent, now: int) -> list[Metric]:
    dims = _store_dims(event)
    return [
        Metric("HealthCheckLatency", event.latency_ms, "Milliseconds", dims, now),
        Metric("HealthCheckFailures", float(not event.healthy), "Count", dims, now),
    ]


def _custom(event: signals.MetricEvent, now: int) -> list[Metric]:
    del now  # a custom metric carries its own time
    return [Metric(event.name, event.value, event.unit, event.dimensions, event.timestamp_ms)]


def _correlation(event: signals.CorrelationEvent, now: int) -> list[Metric]:
    dims = (("Operation", event.operation),)
    return [
        Metric("MonitoredOperationLatency", event.duration_ms, "Milliseconds", dims, now),
        Metric("MonitoredOperationErrors", float(not event.success), "Count", dims, now),
    ]


def _client_dims(event: signals.ClientEvent) -> tuple[tuple[str, str], ...]:
    return (("Priority", event.priority),)


def _client_count(name: str) -> Callable[[signals.ClientEvent, int], list[Metric]]:
    def metrics(event: signals.ClientEvent, now: int) -> list[Metric]:
        return [Metric(name, 1, "Count", _client_dims(event), now)]

    return metrics


def _limiter_wait(event: signals.ClientEvent, now: int) -> list[Metric]:
    waited = float(event.waited_ms or 0)
    return [Metric("ClientLimiterWait", waited, "Milliseconds", _client_dims(event), now)]


def _upstream(event: signals.ClientEvent, now: int) -> list[Metric]:
    dims = _client_dims(event)
    status = event.status or 0
    failed = float(status >= 500 or status in (420, 429))
    return [
        Metric("UpstreamLatency", event.duration_ms or 0.0, "Milliseconds", dims, now),
        Metric("UpstreamErrors", failed, "Count", dims, now),
    ]


def _unavailable(event: signals.ClientEvent, now: int) -> list[Metric]:
    dims = (*_client_dims(event), ("Store", event.store or UNKNOWN))
    return [Metric("ClientStoreUnavailable", 1, "Count", dims, now)]


_MAPPING: Final[Mapping[NamedSignal, Callable[[Any, int], list[Metric]]]] = {
    signals.operation_completed: _operation,
    signals.cache_hit: _count("CacheHits"),
    signals.cache_miss: _count("CacheMisses"),
    signals.cache_decode_error: _count("CacheDecodeErrors"),
    signals.rate_limited: _count("RateLimited"),
    signals.dedupe_joined: _count("DedupeJoins"),
    signals.circuit_state_changed: _circuit,
    signals.request_retried: _retry,
    signals.health_checked: _health,
    signals.store_fallback: _fallback,
    signals.metric_recorded: _custom,
    signals.correlation_ended: _correlation,
    signals.client_cache_hit: _client_count("ClientCacheHits"),
    signals.client_cache_miss: _client_count("ClientCacheMisses"),
    signals.client_dedupe_joined: _client_count("ClientDedupeJoins"),
    signals.client_limiter_waited: _limiter_wait,
    signals.client_retry_after: _client_count("ClientRetryAfter"),
    signals.client_upstream_call: _client_count("UpstreamCalls"),
    signals.client_upstream_status: _upstream,
    signals.client_store_unavailable: _unavailable,
}


def metrics_of(signal: NamedSignal, event: Any, *, now_ms: int | None = None) -> list[Metric]:
    """The metrics ``event`` (sent on ``signal``) stands for; ``[]`` for a signal without."""
    mapping = _MAPPING.get(signal)
    if mapping is None:
        return []
    return mapping(event, system_clock_ms() if now_ms is None else now_ms)


def mapped_signals() -> tuple[NamedSignal, ...]:
    """The signals :func:`metrics_of` turns into metrics."""
    return tuple(_MAPPING)
