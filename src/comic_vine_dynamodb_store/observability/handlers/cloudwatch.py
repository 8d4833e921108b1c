"""Store metrics to CloudWatch with ``PutMetricData``, off the store's hot path.

A store call only appends its data points to a bounded buffer (:meth:`emit`); a daemon thread
sends them every ``flush_interval_ms``. At send time the points are aggregated per metric,
dimensions, unit and minute into ``StatisticValues`` (SampleCount, Sum, Minimum, Maximum), so a
busy store sends one datum per metric and minute rather than one per call, and CloudWatch
bills, stores and charts the same numbers. Requests respect the API's limits (1000 data, a
1 MB payload, 30 dimensions per datum); a datum CloudWatch would reject is dropped on its own
rather than failing the request that carries it.

Nothing here raises into a store call: a full buffer drops (and counts) points, a failed
request is counted and logged once per kind of error. ``close`` stops the thread and sends
what is left::

    publisher = CloudWatchMetricsPublisher("MyApp/Store", region="eu-west-1").connect()
    ...
    publisher.close()
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Self

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from comic_vine_dynamodb_store.config import CloudWatchOptions, check_cloudwatch_namespace
from comic_vine_dynamodb_store.errors import ConfigurationError
from comic_vine_dynamodb_store.observability.handlers.base import MetricsHandler
from comic_vine_dynamodb_store.observability.metrics import (
    DEFAULT_NAMESPACE,
    STANDARD_UNITS,
    Metric,
)

__all__ = [
    "MAX_DATA_PER_REQUEST",
    "MAX_DIMENSIONS",
    "MAX_REQUEST_BYTES",
    "CloudWatchMetricsPublisher",
    "validate_cloudwatch_namespace",
]


MAX_DATA_PER_REQUEST: Final = 1000
"""``PutMetricData`` takes at most this many ``MetricData`` entries."""

MAX_DIMENSIONS: Final = 30
"""CloudWatch rejects a datum with more dimensions than this."""

MAX_REQUEST_BYTES: Final = 1_000_000
"""The ``PutMetricData`` payload limit (1 MB), rounded down."""

_MINUTE_MS: Final = 60_000
_MAX_AGE_MS: Final = 14 * 24 * 3_600_000 - 5 * _MINUTE_MS  # CloudWatch refuses older points
_MAX_AHEAD_MS: Final = 2 * 3_600_000 - 5 * _MINUTE_MS  # ... and ones over 2 h in the future
_MAX_VALUE: Final = 2.0**360  # CloudWatch's range for a value, either sign

# Size estimate of one field as the query protocol spells it, the most verbose botocore may
# pick ("MetricData.member.1000.StatisticValues.SampleCount=...&"), so a request measured by
# it fits whatever the wire format.
_FIELD_BYTES: Final = 56
_NUMBER_BYTES: Final = 32
_ENVELOPE_BYTES: Final = 1024

_ENDPOINT_RE: Final = re.compile(r"https?://[^\s/]+(/\S*)?")
_REGION_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")

_DEFAULT_CLIENT_CONFIG: Final = Config(
    connect_timeout=5,
    read_timeout=10,
    retries={"mode": "standard", "max_attempts": 3},
)


def validate_cloudwatch_namespace(namespace: object, field: str = "namespace") -> str:
    """``namespace`` if CloudWatch accepts it as a custom namespace, else ConfigurationError.

    1-255 characters of letters, digits and ``. - _ / # :`` or space, not starting with ``:``
    and not in the reserved ``AWS/`` space.
    """
    try:
        return check_cloudwatch_namespace(namespace)
    except ValueError as exc:
        raise ConfigurationError(f"{field} {exc}", field=field) from None


def _positive_int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{field} must be a positive int, got {value!r}", field=field)
    return value


def _resolve_region(region: str | None) -> str:
    if region is not None and (not isinstance(region, str) or not _REGION_RE.fullmatch(region)):
        raise ConfigurationError(f"region must be a region name, got {region!r}", field="region")
    return (
        region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )


def _check_endpoint(endpoint: str | None) -> str | None:
    if endpoint is not None and (
        not isinstance(endpoint, str) or not _ENDPOINT_RE.fullmatch(endpoint)
    ):
        raise ConfigurationError(
            f"endpoint must be an http:// or https:// URL, got {endpoint!r}", field="endpoint"
        )
    return endpoint


def _encoded_len(text: str) -> int:
    # The longer of the two encodings a value may travel in: URL (query) or JSON escaped.
    return max(len(urllib.parse.quote(text, safe="")), len(json.dumps(text)))


_Dimensions = tuple[tuple[str, str], ...]
_Key = tuple[str, _Dimensions, str, int]


@dataclass(slots=True)
class _Aggregate:
    dimensions: _Dimensions  # as the first point gave them (the key holds them sorted)
    count: int
    total: float
    minimum: float
    maximum: float

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)


def _problem(name: str, dimensions: _Dimensions, unit: str) -> str | None:
    """Why CloudWatch would reject a datum of this metric, or None."""
    if not 1 <= len(name) <= 255:
        return "metric name not 1-255 characters"
    if unit not in STANDARD_UNITS:
        return f"unit {unit!r} is not a CloudWatch StandardUnit"
    if len(dimensions) > MAX_DIMENSIONS:
        return f"more than {MAX_DIMENSIONS} dimensions"
    if len({dim for dim, _ in dimensions}) != len(dimensions):
        return "a dimension name appears twice"
    for dim, value in dimensions:
        if not _dimension_text(dim, 255) or dim.startswith(":"):
            return f"dimension name {dim!r} not 1-255 printable ASCII characters (no ':' first)"
        if not _dimension_text(value, 1024):
            return f"value of dimension {dim!r} not 1-1024 printable ASCII characters"
    return None


def _dimension_text(text: str, longest: int) -> bool:
    # CloudWatch: ASCII without control characters, at least one non-space.
    return (
        1 <= len(text) <= longest and text.isascii() and text.isprintable() and not text.isspace()
    )


def _datum_size(name: str, dimensions: _Dimensions, unit: str) -> int:
    # MetricName, Unit, Timestamp and the four statistics; a name and a value per dimension.
    size = 7 * _FIELD_BYTES + 5 * _NUMBER_BYTES + _encoded_len(name) + _encoded_len(unit)
    for dim, value in dimensions:
        size += 2 * _FIELD_BYTES + _encoded_len(dim) + _encoded_len(value)
    return size


class CloudWatchMetricsPublisher(MetricsHandler):
    """Publishes the catalogue's metrics (and custom ones) to CloudWatch in the background.

    ``region`` falls back to ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, then ``us-east-1``;
    ``endpoint`` targets a CloudWatch-compatible endpoint; ``session`` is a botocore session
    to take credentials and configuration from (one of its own otherwise), and
    ``client_config`` is merged over the defaults (5 s connect, 10 s read, 3 attempts), so a
    dead endpoint cannot hold :meth:`close` for long. Up to ``max_buffer`` data points wait
    between flushes; the thread also flushes early once half of that is used. ``start=False``
    runs no thread: only :meth:`flush` and :meth:`close` send.
    """

    def __init__(
        self,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        region: str | None = None,
        endpoint: str | None = None,
        session: botocore.session.Session | None = None,
        client_config: Config | None = None,
        flush_interval_ms: int = 60_000,
        max_buffer: int = 10_000,
        start: bool = True,
    ) -> None:
        self.namespace = validate_cloudwatch_namespace(namespace)
        self.region = _resolve_region(region)
        self.endpoint = _check_endpoint(endpoint)
        self.flush_interval_ms = _positive_int(flush_interval_ms, "flush_interval_ms")
        self.max_buffer = _positive_int(max_buffer, "max_buffer")
        if client_config is not None and not isinstance(client_config, Config):
            raise ConfigurationError(
                "client_config must be a botocore.config.Config", field="client_config"
            )
        super().__init__()
        config = (
            _DEFAULT_CLIENT_CONFIG
            if client_config is None
            else _DEFAULT_CLIENT_CONFIG.merge(client_config)
        )
        try:
            # Typed Any: botocore's clients build their methods at run time.
            self._client: Any = (session or botocore.session.get_session()).create_client(
                "cloudwatch", region_name=self.region, endpoint_url=self.endpoint, config=config
            )
        except (BotoCoreError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot make a CloudWatch client: {exc}", field="region"
            ) from exc

        self._buffer: list[Metric] = []
        self._buffer_lock = threading.Lock()
        self._wake_at = max(1, self.max_buffer // 2)
        self._dropped = 0
        self._send_lock = threading.Lock()  # one flush at a time; guards the counters below
        self._published = 0
        self._requests = 0
        self._failed_requests = 0
        self._closed = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(
                target=self._run, name="cloudwatch-metrics-flush", daemon=True
            )
            self._thread.start()

    @classmethod
    def from_options(
        cls,
        options: CloudWatchOptions,
        *,
        session: botocore.session.Session | None = None,
        start: bool = True,
    ) -> Self:
        """A publisher as ``monitoring.cloud_watch`` describes it (``enabled`` is the
        caller's to check)."""
        return cls(
            options.namespace,
            region=options.region,
            endpoint=options.endpoint,
            session=session,
            start=start,
        )

    @property
    def client(self) -> Any:
        """The botocore CloudWatch client requests go through (for its event hooks)."""
        return self._client

    # -- counters ---------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Data points never sent: the buffer was full, or CloudWatch would refuse them."""
        return self._dropped

    @property
    def published(self) -> int:
        """Data (aggregated points) CloudWatch accepted."""
        return self._published

    @property
    def requests(self) -> int:
        """``PutMetricData`` requests made, failed ones included."""
        return self._requests

    @property
    def failed_requests(self) -> int:
        """``PutMetricData`` requests that failed after botocore's retries; their data are
        lost."""
        return self._failed_requests

    @property
    def pending(self) -> int:
        """Data points waiting for the next flush."""
        return len(self._buffer)

    @property
    def running(self) -> bool:
        """True while the flush thread runs."""
        return self._thread is not None and self._thread.is_alive()

    # -- the hot path -----------------------------------------------------------------------

    def emit(self, metrics: list[Metric]) -> None:
        """Buffer ``metrics``; what does not fit is dropped and counted. Never blocks on I/O
        and never raises."""
        with self._buffer_lock:
            if self._closed:
                self._dropped += len(metrics)
                return
            room = self.max_buffer - len(self._buffer)
            if room >= len(metrics):
                self._buffer.extend(metrics)
            else:
                self._buffer.extend(metrics[: max(room, 0)])
                self._dropped += len(metrics) - max(room, 0)
            filling = len(self._buffer) >= self._wake_at
        if filling and self._thread is not None:
            self._wake.set()

    # -- sending ----------------------------------------------------------------------------

    def flush(self) -> int:
        """Send what is buffered now; returns how many data CloudWatch accepted.

        Never raises: a failed request is counted in :attr:`failed_requests` and logged once
        per kind of error.
        """
        with self._send_lock:
            with self._buffer_lock:
                taken, self._buffer = self._buffer, []
            if not taken:
                return 0
            try:
                return self._send(taken)
            except Exception as exc:  # a bug must not reach the store call or kill the thread
                self._report("unexpected", exc, len(taken))
                return 0

    def _send(self, taken: list[Metric]) -> int:
        published = 0
        for batch in self._batches(self._aggregate(taken)):
            self._requests += 1
            try:
                self._client.put_metric_data(Namespace=self.namespace, MetricData=batch)
            except (BotoCoreError, ClientError) as exc:
                self._failed_requests += 1
                kind = type(exc).__name__
                if isinstance(exc, ClientError):
                    kind += f":{exc.response.get('Error', {}).get('Code', '?')}"
                self._report(kind, exc, len(batch))
            else:
                published += len(batch)
        self._published += published
        return published

    def _aggregate(self, taken: list[Metric]) -> list[tuple[_Key, _Aggregate]]:
        now = int(time.time() * 1000)
        aggregates: dict[_Key, _Aggregate] = {}
        verdicts: dict[tuple[str, _Dimensions, str], str | None] = {}
        dropped = 0
        for metric in taken:
            shape = (metric.name, tuple(sorted(metric.dimensions)), metric.unit)
            if shape not in verdicts:
                verdicts[shape] = _problem(*shape)
            problem = verdicts[shape]
            try:
                value = float(metric.value)
            except (TypeError, ValueError):
                value = math.nan
            if problem is None and not (math.isfinite(value) and abs(value) <= _MAX_VALUE):
                problem = "value not a finite number within +-2^360"
            if problem is None and not (
                now - _MAX_AGE_MS <= metric.timestamp_ms <= now + _MAX_AHEAD_MS
            ):
                problem = "timestamp over 2 weeks old or over 2 hours ahead"
            if problem is not None:
                dropped += 1
                self._warn_once(f"invalid:{problem}", "dropped metric %r: %s", metric, problem)
                continue
            key = (*shape, metric.timestamp_ms // _MINUTE_MS * _MINUTE_MS)
            aggregate = aggregates.get(key)
            if aggregate is None:
                aggregates[key] = _Aggregate(metric.dimensions, 1, value, value, value)
            else:
                aggregate.add(value)
        if dropped:
            with self._buffer_lock:
                self._dropped += dropped
        return list(aggregates.items())

    def _batches(self, data: list[tuple[_Key, _Aggregate]]) -> Iterator[list[dict[str, Any]]]:
        """Requests of at most 1000 data and 1 MB each, by a size estimate that bounds every
        wire format botocore may use."""
        budget = MAX_REQUEST_BYTES - _ENVELOPE_BYTES - _encoded_len(self.namespace)
        batch: list[dict[str, Any]] = []
        size = 0
        for (name, _, unit, minute_ms), aggregate in data:
            dimensions = aggregate.dimensions
            datum_size = _datum_size(name, dimensions, unit)
            if batch and (len(batch) >= MAX_DATA_PER_REQUEST or size + datum_size > budget):
                yield batch
                batch, size = [], 0
            batch.append(
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": dim, "Value": value} for dim, value in dimensions],
                    "Timestamp": datetime.fromtimestamp(minute_ms / 1000, tz=UTC),
                    "Unit": unit,
                    "StatisticValues": {
                        "SampleCount": float(aggregate.count),
                        "Sum": aggregate.total,
                        "Minimum": aggregate.minimum,
                        "Maximum": aggregate.maximum,
                    },
                }
            )
            size += datum_size
        if batch:
            yield batch

    def _report(self, kind: str, exc: BaseException, lost: int) -> None:
        self._warn_once(
            kind,
            "PutMetricData to %s failed (%s: %s); %d data lost. Further failures of this kind "
            "are counted in failed_requests",
            self.endpoint or f"CloudWatch {self.region}",
            type(exc).__name__,
            exc,
            lost,
        )

    # -- the thread and closing -------------------------------------------------------------

    def _run(self) -> None:
        interval_s = self.flush_interval_ms / 1000
        while not self._stop.is_set():
            self._wake.wait(interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.flush()

    def close(self) -> None:
        """Disconnect, stop the thread and send what is left; later calls do nothing."""
        with self._buffer_lock:
            if self._closed:
                return
            self._closed = True
        self.disconnect()
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self.flush()
        self._client.close()
