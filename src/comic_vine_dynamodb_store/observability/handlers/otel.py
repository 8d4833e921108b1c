"""OpenTelemetry metrics: the catalogue's metrics as instruments of an OpenTelemetry meter.

Needs the ``otel`` extra (``pip install 'comic-vine-dynamodb-store[otel]'``); the SDK and an
exporter are the application's choice::

    from opentelemetry.sdk.metrics import MeterProvider
    from comic_vine_dynamodb_store.observability.handlers import OpenTelemetryHandler

    handler = OpenTelemetryHandler(MeterProvider(metric_readers=[reader])).connect()

The catalogue's statistic picks the instrument: a ``Sum`` metric is a counter, an ``Average``
one a histogram, a ``Maximum`` one (``CircuitBreakerOpen``) a gauge holding the last value.
A custom metric (``Monitor.record_metric``) is a histogram. Instrument names are the metric
names in snake case after ``prefix`` (``OperationLatency`` becomes
``dynamodb_store.operation_latency``, unit ``ms``); attributes are the metric's dimensions,
named as in CloudWatch (``TableName``, ``Store``, ``Operation``, ``Priority``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Final

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "OpenTelemetryHandler needs the OpenTelemetry API: "
        "pip install 'comic-vine-dynamodb-store[otel]'"
    ) from exc

from comic_vine_dynamodb_store import __version__
from comic_vine_dynamodb_store.observability.handlers.base import MetricsHandler
from comic_vine_dynamodb_store.observability.metrics import Metric, spec_of

__all__ = ["OpenTelemetryHandler", "instrument_name", "otel_unit"]

_log = logging.getLogger(__name__)

_Attributes = dict[str, str]
_Record = Callable[[float, _Attributes], None]

_SCOPE: Final = "comic_vine_dynamodb_store"
_MAX_NAME_LENGTH: Final = 255

# CloudWatch units as UCUM, as OpenTelemetry recommends.
_UNITS: Final[dict[str, str]] = {
    "Seconds": "s",
    "Microseconds": "us",
    "Milliseconds": "ms",
    "Bytes": "By",
    "Kilobytes": "kBy",
    "Megabytes": "MBy",
    "Gigabytes": "GBy",
    "Terabytes": "TBy",
    "Bits": "bit",
    "Kilobits": "kbit",
    "Megabits": "Mbit",
    "Gigabits": "Gbit",
    "Terabits": "Tbit",
    "Percent": "%",
    "Count": "1",
    "Bytes/Second": "By/s",
    "Kilobytes/Second": "kBy/s",
    "Megabytes/Second": "MBy/s",
    "Gigabytes/Second": "GBy/s",
    "Terabytes/Second": "TBy/s",
    "Bits/Second": "bit/s",
    "Kilobits/Second": "kbit/s",
    "Megabits/Second": "Mbit/s",
    "Gigabits/Second": "Gbit/s",
    "Terabits/Second": "Tbit/s",
    "Count/Second": "1/s",
    "None": "1",
}

_CAMEL_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_INVALID: Final = re.compile(r"[^A-Za-z0-9_.\-/]+")


def _snake(name: str) -> str:
    # "DynamoDBRequests" -> "dynamodb_requests", "OperationLatency" -> "operation_latency".
    return _CAMEL_BOUNDARY.sub("_", name).lower().replace("dynamo_db", "dynamodb")


def instrument_name(metric_name: str, prefix: str = "dynamodb_store.") -> str:
    """The OpenTelemetry instrument name of metric ``metric_name``.

    Snake case after ``prefix``; characters an instrument name may not hold become ``_``
    and the name is cut to 255 characters.
    """
    name = _INVALID.sub("_", prefix + _snake(metric_name))
    if not name[:1].isalpha():
        name = "m" + name
    return name[:_MAX_NAME_LENGTH]


def otel_unit(unit: str) -> str:
    """The UCUM unit OpenTelemetry uses for CloudWatch ``unit`` (``"1"`` when unknown)."""
    return _UNITS.get(unit, "1")


class _LastValueGauge:
    """A gauge for meters without a synchronous one: an observable gauge of the last values."""

    def __init__(self, meter: Meter, name: str, unit: str, description: str) -> None:
        self._values: dict[tuple[tuple[str, str], ...], float] = {}
        self._lock = threading.Lock()
        meter.create_observable_gauge(
            name, callbacks=[self._observe], unit=unit, description=description
        )

    def set(self, value: float, attributes: _Attributes) -> None:
        with self._lock:
            self._values[tuple(sorted(attributes.items()))] = value

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            values = list(self._values.items())
        return [Observation(value, dict(key)) for key, value in values]


class OpenTelemetryHandler(MetricsHandler):
    """Records the catalogue's metrics on a meter of ``meter_provider``.

    ``meter_provider`` defaults to the global one (``opentelemetry.metrics.
    get_meter_provider()``, a no-op until the application sets one). Instruments are created
    once per name, on first use.
    """

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        prefix: str = "dynamodb_store.",
    ) -> None:
        super().__init__()
        provider = otel_metrics.get_meter_provider() if meter_provider is None else meter_provider
        self.meter: Meter = provider.get_meter(_SCOPE, __version__)
        self.prefix = prefix
        self._instruments: dict[str, _Record] = {}
        self._instrument_lock = threading.Lock()

    def emit(self, metrics: list[Metric]) -> None:
        """Record each data point on its instrument."""
        for metric in metrics:
            record = self._instrument(metric)
            attributes = {name: str(value) for name, value in metric.dimensions}
            record(float(metric.value), attributes)

    def _instrument(self, metric: Metric) -> _Record:
        record = self._instruments.get(metric.name)
        if record is not None:
            return record
        with self._instrument_lock:
            record = self._instruments.get(metric.name)
            if record is None:
                record = self._create(metric)
                self._instruments[metric.name] = record
        return record

    def _create(self, metric: Metric) -> _Record:
        name = instrument_name(metric.name, self.prefix)
        try:
            spec = spec_of(metric.name)
        except KeyError:
            description = f"Custom metric {metric.name} ({metric.unit})."
            histogram = self.meter.create_histogram(
                name, unit=otel_unit(metric.unit), description=description
            )
            return histogram.record
        unit = otel_unit(spec.unit)
        if spec.statistic == "Sum":
            counter = self.meter.create_counter(name, unit=unit, description=spec.description)

            def add(value: float, attributes: _Attributes) -> None:
                if value < 0:
                    self._warn_once(metric.name, "negative value for counter %s; skipped", name)
                    return
                counter.add(value, attributes)

            return add
        if spec.statistic == "Maximum":
            return self._gauge(name, unit, spec.description)
        histogram = self.meter.create_histogram(name, unit=unit, description=spec.description)
        return histogram.record

    def _gauge(self, name: str, unit: str, description: str) -> _Record:
        # The API's base Meter.create_gauge only warns and returns None: a meter that does
        # not override it has no synchronous gauge, so the last value is observed instead.
        implementation = getattr(type(self.meter), "create_gauge", None)
        if implementation not in (None, otel_metrics.Meter.create_gauge):
            gauge = self.meter.create_gauge(name, unit=unit, description=description)
            if gauge is not None:
                return gauge.set
        return _LastValueGauge(self.meter, name, unit, description).set
