"""CloudWatch Embedded Metric Format: one JSON log line per event, read by CloudWatch Logs.

Where a process's output already goes to CloudWatch Logs (Lambda, ECS with the ``awslogs``
driver, the CloudWatch agent), writing metrics as `EMF
<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>`_
lines costs no ``PutMetricData`` call: CloudWatch extracts the metrics from the log event::

    from comic_vine_dynamodb_store.observability.handlers import EmfHandler

    handler = EmfHandler(properties={"Service": "comic-api"}).connect()

Each event becomes one line (two or more only when its metrics cannot share one document),
for example::

    {"_aws":{"Timestamp":1718000000000,"CloudWatchMetrics":[{"Namespace":"DynamoDBStore",
    "Dimensions":[["TableName","Store"]],"Metrics":[{"Name":"CacheHits","Unit":"Count"}]}]},
    "Service":"comic-api","TableName":"comic-cache","Store":"cache","CacheHits":1}

The metrics of one event are grouped by dimension set: one ``CloudWatchMetrics`` directive
per distinct set of dimension names. Every line keeps the specification's limits (at most 100
metrics and 30 dimensions per set, metric and dimension names of 1 to 255 characters, dimension
values of 1 to 1024, standard units, finite values); what would break one is repaired or
dropped, and logged once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

from comic_vine_dynamodb_store.observability.handlers.base import MetricsHandler
from comic_vine_dynamodb_store.observability.metrics import (
    DEFAULT_NAMESPACE,
    STANDARD_UNITS,
    Metric,
)

__all__ = [
    "MAX_DIMENSIONS_PER_SET",
    "MAX_METRICS_PER_DOCUMENT",
    "EmfHandler",
]

_log = logging.getLogger(__name__)

MAX_METRICS_PER_DOCUMENT: Final = 100
"""Metrics one line carries at most (the specification's limit per directive, and the limit
CloudWatch's own EMF libraries keep per line)."""

MAX_DIMENSIONS_PER_SET: Final = 30
"""Dimension names a dimension set holds at most."""

_MAX_NAME_LENGTH: Final = 255
_MAX_DIMENSION_VALUE_LENGTH: Final = 1024
_NAMESPACE_RE: Final = re.compile(r"^[a-zA-Z0-9._#:/-]{1,255}$")
_EMPTY_DIMENSION_VALUE: Final = "unknown"
_AWS: Final = "_aws"


@dataclass
class _Document:
    """The members of one EMF line being assembled."""

    timestamp_ms: int
    dimensions: dict[str, str] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    directives: dict[tuple[str, ...], list[dict[str, str]]] = field(default_factory=dict)

    def accepts(self, name: str, timestamp_ms: int, dims: tuple[tuple[str, str], ...]) -> bool:
        if timestamp_ms != self.timestamp_ms or len(self.values) >= MAX_METRICS_PER_DOCUMENT:
            return False
        if name in self.values or name in self.dimensions:
            return False
        for dim_name, dim_value in dims:
            if dim_name in self.values or dim_name == name:
                return False
            if self.dimensions.get(dim_name, dim_value) != dim_value:
                return False
        return True

    def add(self, name: str, value: float, unit: str, dims: tuple[tuple[str, str], ...]) -> None:
        self.values[name] = value
        self.dimensions.update(dims)
        key = tuple(dim_name for dim_name, _ in dims)
        self.directives.setdefault(key, []).append({"Name": name, "Unit": unit})


class EmfHandler(MetricsHandler):
    """Writes the catalogue's metrics as CloudWatch Embedded Metric Format lines.

    ``namespace`` is the CloudWatch namespace of every metric. Lines go to ``stream``
    (standard output by default, flushed after each line) or, when ``logger`` is given, to
    that logger at ``INFO`` (its handlers then decide where they go; give them a bare
    ``%(message)s`` format so each record stays one JSON document). ``properties`` are
    extra top-level members of every line, such as a service name; they are not dimensions
    and a dimension or metric of the same name takes their place.

    Writing never raises into a store call: a failed write (a closed stream, a full disk) is
    counted in :attr:`failed_writes` and logged once; a metric that cannot be written is
    counted in :attr:`dropped_metrics`.
    """

    def __init__(
        self,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        stream: TextIO | None = None,
        logger: logging.Logger | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        if not _NAMESPACE_RE.match(namespace):
            raise ValueError(
                f"invalid CloudWatch namespace {namespace!r}: 1 to 255 characters of "
                "letters, digits and . _ # : / -"
            )
        extra = dict(properties or {})
        if _AWS in extra:
            raise ValueError(f"{_AWS!r} is reserved for the EMF metadata, not a property")
        self.namespace = namespace
        self.stream = stream
        self.logger = logger
        self.properties: Mapping[str, str] = extra
        self._write_lock = threading.Lock()
        self._failed_writes = 0
        self._dropped_metrics = 0

    @property
    def failed_writes(self) -> int:
        """Lines that could not be written (the first failure is logged)."""
        return self._failed_writes

    @property
    def dropped_metrics(self) -> int:
        """Metrics left out of their line because EMF cannot carry them (logged once each)."""
        return self._dropped_metrics

    def emit(self, metrics: list[Metric]) -> None:
        """Write the metrics of one event: one line per document (usually exactly one)."""
        for document in self.documents(metrics):
            self._write(json.dumps(document, separators=(",", ":"), allow_nan=False))

    def documents(self, metrics: list[Metric]) -> list[dict[str, Any]]:
        """The EMF documents (as JSON-ready dicts) that carry ``metrics``.

        The metrics share one document unless they cannot: they disagree on a dimension's
        value or on the timestamp, a name is both a metric and a dimension, a metric appears
        twice, or there are more than :data:`MAX_METRICS_PER_DOCUMENT` of them.
        """
        documents: list[_Document] = []
        for metric in metrics:
            checked = self._checked(metric)
            if isinstance(checked, str):
                self._drop(metric.name, checked)
                continue
            value, unit, dims = checked
            for document in documents:
                if document.accepts(metric.name, metric.timestamp_ms, dims):
                    break
            else:
                document = _Document(metric.timestamp_ms)
                documents.append(document)
            document.add(metric.name, value, unit, dims)
        return [self._render(document) for document in documents]

    def close(self) -> None:
        """Disconnect and flush the stream (the stream itself stays open: it is not ours)."""
        super().close()
        if self.logger is None:
            stream = sys.stdout if self.stream is None else self.stream
            # A closed stream has nothing left to flush.
            with self._write_lock, contextlib.suppress(Exception):
                stream.flush()

    def _render(self, document: _Document) -> dict[str, Any]:
        directives = [
            {"Namespace": self.namespace, "Dimensions": [list(names)], "Metrics": definitions}
            for names, definitions in document.directives.items()
        ]
        return {
            _AWS: {"Timestamp": document.timestamp_ms, "CloudWatchMetrics": directives},
            **self.properties,
            **document.dimensions,
            **document.values,
        }

    def _checked(self, metric: Metric) -> tuple[float, str, tuple[tuple[str, str], ...]] | str:
        """``metric``'s value, unit and dimensions as EMF accepts them, or why it cannot."""
        name = metric.name
        if not name.strip() or len(name) > _MAX_NAME_LENGTH or name == _AWS:
            return "its name is not a valid EMF metric name"
        try:
            value = float(metric.value)
        except (TypeError, ValueError):
            return "its value is not a number"
        if not math.isfinite(value):
            return "its value is not finite"
        unit = metric.unit
        if unit not in STANDARD_UNITS:
            self._warn_once(
                f"unit:{name}:{unit}",
                "metric %r has unit %r, not a CloudWatch unit; written with unit None",
                name,
                unit,
            )
            unit = "None"
        dims: list[tuple[str, str]] = []
        seen: set[str] = set()
        for dim_name, dim_value in metric.dimensions:
            if not dim_name.strip() or len(dim_name) > _MAX_NAME_LENGTH:
                return f"dimension name {dim_name!r} is not 1 to 255 characters"
            if dim_name.startswith(":") or dim_name == _AWS or dim_name in seen:
                return f"dimension name {dim_name!r} is reserved or repeated"
            seen.add(dim_name)
            text = str(dim_value)
            if not text.strip():
                text = _EMPTY_DIMENSION_VALUE
            dims.append((dim_name, text[:_MAX_DIMENSION_VALUE_LENGTH]))
        if len(dims) > MAX_DIMENSIONS_PER_SET:
            self._warn_once(
                f"dimensions:{name}",
                "metric %r has %d dimensions; EMF keeps the first %d",
                name,
                len(dims),
                MAX_DIMENSIONS_PER_SET,
            )
            dims = dims[:MAX_DIMENSIONS_PER_SET]
        return value, unit, tuple(dims)

    def _drop(self, name: str, reason: str) -> None:
        with self._write_lock:
            self._dropped_metrics += 1
        self._warn_once(f"drop:{name}:{reason}", "metric %r dropped from EMF: %s", name, reason)

    def _write(self, line: str) -> None:
        if self.logger is not None:
            self.logger.info("%s", line)
            return
        stream = sys.stdout if self.stream is None else self.stream
        with self._write_lock:
            try:
                stream.write(line + "\n")
                stream.flush()
            except Exception:
                self._failed_writes += 1
                if self._failed_writes == 1:
                    _log.exception("writing an EMF line failed; further failures are only counted")
