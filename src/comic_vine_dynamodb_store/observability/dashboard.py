"""A CloudWatch dashboard and alarms for the store metrics, drawn from the metric catalogue.

Every chart is a search expression over one catalogue metric with exactly its dimensions
(``SEARCH('{DynamoDBStore,TableName,Store} MetricName="CacheHits"', 'Sum', 300)``), so the
dashboard needs no table or store names up front: each table and store that publishes shows
up as its own line. Since the charts come from :data:`~.metrics.METRICS`, a metric nobody
emits is never charted, and a new catalogue entry is charted even before it has a place in
the layout (under "Other")::

    body = CloudWatchDashboardConfig.create_dynamodb_store_dashboard("comic-vine-store")
    cloudwatch.put_dashboard(DashboardName="comic-vine-store", DashboardBody=body)
    for alarm in CloudWatchDashboardConfig.create_alarms(table_name="t", store="cache"):
        cloudwatch.put_metric_alarm(**alarm)

Alarms cannot use search expressions, so they name one concrete table and store.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any, Final

from comic_vine_dynamodb_store.errors import ConfigurationError
from comic_vine_dynamodb_store.observability.handlers.cloudwatch import (
    validate_cloudwatch_namespace,
)
from comic_vine_dynamodb_store.observability.metrics import (
    DEFAULT_NAMESPACE,
    METRICS,
    MetricSpec,
    spec_of,
)

__all__ = ["DASHBOARD_PERIOD_S", "CloudWatchDashboardConfig", "dashboard_metrics"]

DASHBOARD_PERIOD_S: Final = 300
"""The period of every chart: five minutes."""

_NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,255}")
_REGION_RE: Final = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
_PLAIN_RE: Final = re.compile(r"[A-Za-z0-9_]+")
_SEARCH_RE: Final = re.compile(
    r"""SEARCH\('\{(?P<schema>[^}]*)\}\s+MetricName="(?P<name>[^"]+)"'"""
)
_SCHEMA_TOKEN_RE: Final = re.compile(r'"(?P<quoted>[^"]*)"|(?P<plain>[^,\s]+)')
_ARN_RE: Final = re.compile(r"arn:[^\s]+")
_MAX_ALARM_ACTIONS: Final = 5

_WIDTH: Final = 12  # two charts per row of the 24-column grid
_HEIGHT: Final = 6

# (section, [(chart title, metric names)]): every name must be in the catalogue, and every
# chart holds metrics of one statistic so its y axis means one thing.
_LAYOUT: Final[tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...]] = (
    (
        "Operations",
        (
            ("Operations", ("OperationCount",)),
            ("Operation errors and rejections", ("OperationErrors", "OperationRejected")),
            ("Operation latency (ms, average)", ("OperationLatency",)),
            ("DynamoDB requests", ("DynamoDBRequests",)),
            ("Consumed capacity units", ("ConsumedCapacity",)),
        ),
    ),
    (
        "Cache",
        (
            ("Cache hits and misses", ("CacheHits", "CacheMisses")),
            ("Cache decode errors", ("CacheDecodeErrors",)),
        ),
    ),
    ("Rate limiting", (("Refused acquires", ("RateLimited",)),)),
    ("Dedupe", (("Registrations joined to a live job", ("DedupeJoins",)),)),
    (
        "Resilience",
        (
            ("Circuit breaker open (1 = open)", ("CircuitBreakerOpen",)),
            ("Retries and throttles", ("Retries", "Throttles")),
            ("Fallbacks while DynamoDB was unavailable", ("StoreFallbacks",)),
        ),
    ),
    (
        "Health checks",
        (
            ("Health check latency (ms, average)", ("HealthCheckLatency",)),
            ("Health check failures", ("HealthCheckFailures",)),
        ),
    ),
    (
        "Monitored operations",
        (
            ("Monitored operation latency (ms, average)", ("MonitoredOperationLatency",)),
            ("Monitored operation errors", ("MonitoredOperationErrors",)),
        ),
    ),
    (
        "Client flow",
        (
            ("Client cache hits and misses", ("ClientCacheHits", "ClientCacheMisses")),
            ("Requests joined to another caller's", ("ClientDedupeJoins",)),
            (
                "Upstream calls, errors and Retry-After waits",
                ("UpstreamCalls", "UpstreamErrors", "ClientRetryAfter"),
            ),
            (
                "Upstream latency and limiter wait (ms, average)",
                ("UpstreamLatency", "ClientLimiterWait"),
            ),
            ("Stores unavailable to the client flow", ("ClientStoreUnavailable",)),
        ),
    ),
)


def _quoted(token: str) -> str:
    # Search schemas need double quotes around names with anything but letters, digits, _.
    return token if _PLAIN_RE.fullmatch(token) else f'"{token}"'


def _search(namespace: str, spec: MetricSpec, statistic: str) -> str:
    schema = ",".join(_quoted(token) for token in (namespace, *spec.dimensions))
    return f"SEARCH('{{{schema}}} MetricName=\"{spec.name}\"', '{statistic}', {DASHBOARD_PERIOD_S})"


def _label(spec: MetricSpec) -> str:
    # A dynamic label: each line names the metric and the dimension values it stands for.
    return " ".join((spec.name, *(f"${{PROP('Dim.{dim}')}}" for dim in spec.dimensions)))


def _chart(
    title: str, specs: Sequence[MetricSpec], namespace: str, region: str, *, x: int, y: int
) -> dict[str, Any]:
    statistic = specs[0].statistic
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": _WIDTH,
        "height": _HEIGHT,
        "properties": {
            "title": title,
            "region": region,
            "view": "timeSeries",
            "stacked": False,
            "stat": statistic,
            "period": DASHBOARD_PERIOD_S,
            "metrics": [
                [
                    {
                        "expression": _search(namespace, spec, statistic),
                        "id": f"e{index}",
                        "label": _label(spec),
                    }
                ]
                for index, spec in enumerate(specs, start=1)
            ],
        },
    }


def _sections() -> list[tuple[str, list[tuple[str, list[MetricSpec]]]]]:
    """The layout with catalogue entries, plus "Other" for entries it does not place."""
    placed: set[str] = set()
    sections: list[tuple[str, list[tuple[str, list[MetricSpec]]]]] = []
    for section, charts in _LAYOUT:
        resolved = []
        for title, names in charts:
            specs = [spec_of(name) for name in names]
            if len({spec.statistic for spec in specs}) != 1:
                raise AssertionError(f"chart {title!r} mixes statistics")  # a layout bug
            placed.update(names)
            resolved.append((title, specs))
        sections.append((section, resolved))
    others = [spec for spec in METRICS if spec.name not in placed]
    if others:
        sections.append(("Other", [(spec.name, [spec]) for spec in others]))
    return sections


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigurationError(
            "dashboard name must be 1-255 characters of letters, digits, '-' and '_', "
            f"got {name!r}",
            field="name",
        )
    return name


def _check_region(region: object) -> str:
    if not isinstance(region, str) or not _REGION_RE.fullmatch(region):
        raise ConfigurationError(
            f"region must be a region name such as us-east-1, got {region!r}", field="region"
        )
    return region


def _check_dimension_value(value: object, field: str) -> str:
    # What CloudWatch takes as a dimension value: printable ASCII, not only spaces.
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= 1024
        or not value.isascii()
        or not value.isprintable()
        or value.isspace()
    ):
        raise ConfigurationError(
            f"{field} must be 1-1024 printable ASCII characters, got {value!r}", field=field
        )
    return value


class CloudWatchDashboardConfig:
    """Builds the dashboard body and the alarms; nothing here talks to AWS."""

    @staticmethod
    def create_dynamodb_store_dashboard(
        name: str, *, namespace: str = DEFAULT_NAMESPACE, region: str = "us-east-1"
    ) -> str:
        """The ``DashboardBody`` (JSON) of a dashboard of every catalogue metric.

        ``name`` must be a valid dashboard name (it titles the dashboard); ``region`` is the
        one whose metrics the charts show.
        """
        _check_name(name)
        validate_cloudwatch_namespace(namespace)
        _check_region(region)
        widgets: list[dict[str, Any]] = [
            {
                "type": "text",
                "x": 0,
                "y": 0,
                "width": 24,
                "height": 2,
                "properties": {
                    "markdown": f"# {name}\nStore metrics of namespace `{namespace}` in "
                    f"{region}: one line per table, store and operation that publishes."
                },
            }
        ]
        y = 2
        for section, charts in _sections():
            widgets.append(
                {
                    "type": "text",
                    "x": 0,
                    "y": y,
                    "width": 24,
                    "height": 1,
                    "properties": {"markdown": f"## {section}"},
                }
            )
            y += 1
            for index, (title, specs) in enumerate(charts):
                x = (index % 2) * _WIDTH
                widgets.append(
                    _chart(title, specs, namespace, region, x=x, y=y + (index // 2) * _HEIGHT)
                )
            y += math.ceil(len(charts) / 2) * _HEIGHT
        return json.dumps({"widgets": widgets}, indent=2)

    @staticmethod
    def create_alarms(
        *,
        table_name: str,
        store: str,
        namespace: str = DEFAULT_NAMESPACE,
        error_rate_percent: float = 5.0,
        period_s: int = 300,
        alarm_actions: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """``put_metric_alarm`` keywords for one table and store: throttling, an open
        circuit breaker and an error rate above ``error_rate_percent``.

        Each alarm looks at one ``period_s`` (a multiple of 60: the metrics are standard
        resolution) and treats missing data as fine, since a quiet store sends nothing.
        ``alarm_actions`` (ARNs, at most 5) run when an alarm fires.
        """
        _check_dimension_value(table_name, "table_name")
        _check_dimension_value(store, "store")
        validate_cloudwatch_namespace(namespace)
        if (
            isinstance(error_rate_percent, bool)
            or not isinstance(error_rate_percent, int | float)
            or not 0 < error_rate_percent <= 100
        ):
            raise ConfigurationError(
                f"error_rate_percent must be in (0, 100], got {error_rate_percent!r}",
                field="error_rate_percent",
            )
        if (
            isinstance(period_s, bool)
            or not isinstance(period_s, int)
            or period_s <= 0
            or period_s % 60
            or period_s > 86_400
        ):
            raise ConfigurationError(
                f"period_s must be a multiple of 60 up to 86400, got {period_s!r}",
                field="period_s",
            )
        actions = [alarm_actions] if isinstance(alarm_actions, str) else list(alarm_actions)
        if len(actions) > _MAX_ALARM_ACTIONS or not all(
            isinstance(action, str) and _ARN_RE.fullmatch(action) for action in actions
        ):
            raise ConfigurationError(
                f"alarm_actions must be at most {_MAX_ALARM_ACTIONS} ARNs, got {actions!r}",
                field="alarm_actions",
            )

        dimensions = [{"Name": "TableName", "Value": table_name}, {"Name": "Store", "Value": store}]
        common: dict[str, Any] = {
            "EvaluationPeriods": 1,
            "DatapointsToAlarm": 1,
            "TreatMissingData": "notBreaching",
            "ActionsEnabled": bool(actions),
            "AlarmActions": actions,
        }

        def single(metric: str, statistic: str) -> dict[str, Any]:
            return {
                "Namespace": namespace,
                "MetricName": metric,
                "Dimensions": dimensions,
                "Statistic": statistic,
                "Period": period_s,
            }

        def stat(metric: str) -> dict[str, Any]:
            return {
                "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dimensions},
                "Period": period_s,
                "Stat": "Sum",
            }

        prefix = f"{namespace}-{table_name}-{store}"
        longest = f"{prefix}-circuit-open"
        if not longest.isascii() or not longest.isprintable() or len(longest) > 255:
            raise ConfigurationError(
                "namespace, table_name and store must be printable ASCII and short enough for "
                f"alarm names of at most 255 characters, got {longest!r}",
                field="store",
            )
        return [
            {
                "AlarmName": f"{prefix}-throttling",
                "AlarmDescription": f"DynamoDB throttled requests of store {store} on table "
                f"{table_name} (retried by botocore; sustained throttling means too little "
                "capacity).",
                **single("Throttles", "Sum"),
                "Threshold": 0.0,
                "ComparisonOperator": "GreaterThanThreshold",
                **common,
            },
            {
                "AlarmName": f"{prefix}-circuit-open",
                "AlarmDescription": f"The circuit breaker of store {store} on table {table_name} "
                "opened: operations are refused without a request.",
                **single("CircuitBreakerOpen", "Maximum"),
                "Threshold": 1.0,
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                **common,
            },
            {
                "AlarmName": f"{prefix}-error-rate",
                "AlarmDescription": f"More than {error_rate_percent:g}% of the operations of "
                f"store {store} on table {table_name} failed.",
                "Metrics": [
                    {"Id": "errors", "MetricStat": stat("OperationErrors"), "ReturnData": False},
                    {"Id": "operations", "MetricStat": stat("OperationCount"), "ReturnData": False},
                    {
                        "Id": "error_rate",
                        "Expression": "100 * errors / operations",
                        "Label": "Error rate (%)",
                        "ReturnData": True,
                    },
                ],
                "Threshold": float(error_rate_percent),
                "ComparisonOperator": "GreaterThanThreshold",
                **common,
            },
        ]


def dashboard_metrics(body: str) -> set[tuple[str, str, tuple[str, ...]]]:
    """What a dashboard body charts: ``(namespace, metric name, sorted dimension names)`` of
    each search expression in it."""
    found: set[tuple[str, str, tuple[str, ...]]] = set()
    for widget in json.loads(body).get("widgets", []):
        for entry in widget.get("properties", {}).get("metrics", []):
            for item in entry:
                if not isinstance(item, dict) or "expression" not in item:
                    continue
                for match in _SEARCH_RE.finditer(item["expression"]):
                    tokens = [
                        token["quoted"] if token["quoted"] is not None else token["plain"]
                        for token in _SCHEMA_TOKEN_RE.finditer(match["schema"])
                    ]
                    namespace, *dimensions = tokens
                    found.add((namespace, match["name"], tuple(sorted(dimensions))))
    return found
