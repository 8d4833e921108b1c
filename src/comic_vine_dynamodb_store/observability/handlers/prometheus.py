"""Prometheus metrics: the catalogue's metrics as ``prometheus_client`` collectors.

Needs the ``prometheus`` extra (``pip install 'comic-vine-dynamodb-store[prometheus]'``);
serving the registry (``prometheus_client.start_http_server``, a framework's ``/metrics``
route) is the application's part::

    from comic_vine_dynamodb_store.observability.handlers import PrometheusHandler

    handler = PrometheusHandler().connect()  # registers on prometheus_client.REGISTRY

Names follow Prometheus conventions: snake case after ``prefix``, base units, counters ending
in ``_total``. The catalogue's statistic picks the type:

* ``Sum`` metrics are counters: ``OperationCount`` is ``dynamodb_store_operation_count_total``;
* ``Average`` metrics in milliseconds are histograms in seconds: ``OperationLatency`` is
  ``dynamodb_store_operation_latency_seconds``;
* ``Maximum`` metrics are gauges holding the last value: ``dynamodb_store_circuit_breaker_open``.

Labels are the catalogue's dimensions in snake case (``table_name``, ``store``,
``operation``, ``priority``). A custom metric (``Monitor.record_metric``) is a gauge of its
last value, labelled by its dimensions; Prometheus needs fixed label names, so a later value
of the same metric with other dimension names is skipped (and logged once).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from dataclasses import dataclass
from typing import Final

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "PrometheusHandler needs prometheus_client: "
        "pip install 'comic-vine-dynamodb-store[prometheus]'"
    ) from exc

from comic_vine_dynamodb_store.observability.handlers.base import MetricsHandler
from comic_vine_dynamodb_store.observability.metrics import Metric, MetricSpec, spec_of

__all__ = ["LATENCY_BUCKETS", "PrometheusHandler", "snake_case"]

_log = logging.getLogger(__name__)

LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""Histogram buckets (seconds) of the latency metrics: DynamoDB answers in milliseconds, a
throttled or retried call can take seconds."""

_CAMEL_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_INVALID: Final = re.compile(r"[^a-zA-Z0-9_]+")


def snake_case(name: str) -> str:
    """``name`` as a Prometheus name part: ``OperationLatency`` -> ``operation_latency``,
    ``TableName`` -> ``table_name``, ``DynamoDBRequests`` -> ``dynamodb_requests``; other
    characters than letters, digits and ``_`` become ``_``."""
    snake = _CAMEL_BOUNDARY.sub("_", name).lower().replace("dynamo_db", "dynamodb")
    return _INVALID.sub("_", snake).strip("_") or "_"


Collector = Counter | Gauge | Histogram


@dataclass(frozen=True, slots=True)
class _Family:
    """One collector and how a metric's data point reaches it."""

    collector: Collector
    dimensions: tuple[str, ...]  # the dimension names, in label order
    scale: float  # multiplies the value (milliseconds to seconds)
    custom: bool  # a custom metric: its dimension names must be those of its first value


class PrometheusHandler(MetricsHandler):
    """Publishes the catalogue's metrics on a Prometheus ``registry``.

    ``registry`` defaults to ``prometheus_client.REGISTRY``. Collectors are created and
    registered once per metric, on first use; a name the registry already holds (another
    handler's, say) is logged once and that metric skipped, so two live handlers need two
    registries (or the first one's :meth:`unregister`).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        prefix: str = "dynamodb_store_",
    ) -> None:
        super().__init__()
        self.registry: CollectorRegistry = (
            prometheus_client.REGISTRY if registry is None else registry
        )
        self.prefix = prefix
        self._families: dict[str, _Family | None] = {}
        self._family_lock = threading.Lock()

    def unregister(self) -> None:
        """Take this handler's collectors out of the registry (its series disappear from the
        next scrape), so another handler can register the same names."""
        with self._family_lock:
            families, self._families = self._families, {}
        for family in families.values():
            if family is not None:
                with contextlib.suppress(KeyError):  # unregistered by someone else already
                    self.registry.unregister(family.collector)

    def emit(self, metrics: list[Metric]) -> None:
        """Count, observe or set each data point on its collector."""
        for metric in metrics:
            family = self._family(metric)
            if family is not None:
                self._record(family, metric)

    def _record(self, family: _Family, metric: Metric) -> None:
        dimensions = dict(metric.dimensions)
        if family.custom and family.dimensions != tuple(dimensions):
            # A custom metric's label names are those of its first value.
            self._warn_once(
                f"labels:{metric.name}",
                "metric %s came with dimensions %s, not %s; skipped",
                metric.name,
                tuple(dimensions),
                family.dimensions,
            )
            return
        value = float(metric.value) * family.scale
        collector = family.collector
        if family.dimensions:
            labels = [str(dimensions.get(name, "")) for name in family.dimensions]
            child = collector.labels(*labels)
        else:
            child = collector
        if isinstance(child, Counter):
            if value < 0:
                self._warn_once(
                    f"negative:{metric.name}", "negative value for counter %s; skipped", metric.name
                )
                return
            child.inc(value)
        elif isinstance(child, Histogram):
            child.observe(value)
        else:
            child.set(value)

    def _family(self, metric: Metric) -> _Family | None:
        if metric.name in self._families:
            return self._families[metric.name]
        with self._family_lock:
            if metric.name not in self._families:
                self._families[metric.name] = self._create(metric)
            return self._families[metric.name]

    def _create(self, metric: Metric) -> _Family | None:
        try:
            spec: MetricSpec | None = spec_of(metric.name)
        except KeyError:
            spec = None
        base = self.prefix + snake_case(metric.name)
        dimensions = spec.dimensions if spec is not None else tuple(n for n, _ in metric.dimensions)
        labels = [snake_case(name) for name in dimensions]
        if len(set(labels)) != len(labels) or any(label.startswith("__") for label in labels):
            self._log_skip(metric.name, f"label names {labels} are not distinct and valid")
            return None
        try:
            return self._register(spec, metric, base, tuple(dimensions), labels)
        except ValueError as exc:  # a name the registry already holds, an invalid name
            self._log_skip(metric.name, str(exc))
            return None

    def _register(
        self,
        spec: MetricSpec | None,
        metric: Metric,
        base: str,
        dimensions: tuple[str, ...],
        labels: list[str],
    ) -> _Family:
        registry = self.registry
        if spec is None:
            description = f"Custom metric {metric.name} ({metric.unit}), last value."
            gauge = Gauge(base, description, labels, registry=registry)
            return _Family(gauge, dimensions, 1.0, custom=True)
        if spec.statistic == "Sum":
            counter = Counter(base, spec.description, labels, registry=registry)
            return _Family(counter, dimensions, 1.0, custom=False)
        if spec.statistic == "Maximum":
            gauge = Gauge(base, spec.description, labels, registry=registry)
            return _Family(gauge, dimensions, 1.0, custom=False)
        if spec.unit == "Milliseconds":
            histogram = Histogram(
                base,
                spec.description,
                labels,
                registry=registry,
                unit="seconds",
                buckets=LATENCY_BUCKETS,
            )
            return _Family(histogram, dimensions, 0.001, custom=False)
        histogram = Histogram(base, spec.description, labels, registry=registry)
        return _Family(histogram, dimensions, 1.0, custom=False)

    def _log_skip(self, name: str, reason: str) -> None:
        _log.warning("metric %s is not published to Prometheus: %s", name, reason)
