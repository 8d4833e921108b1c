"""The EMF handler: every line it writes is a valid CloudWatch Embedded Metric Format document
carrying exactly the catalogue's metrics of the event sent on the bus."""

from __future__ import annotations

import functools
import importlib
import io
import json
import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from blinker import NamedSignal

from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.observability.handlers import EmfHandler
from comic_vine_dynamodb_store.observability.metrics import (
    DEFAULT_NAMESPACE,
    STANDARD_UNITS,
    Metric,
    metrics_of,
)

# The EMF document structure (CloudWatch "Specification: Embedded metric format"), as a JSON
# Schema: the root holds ``_aws``; ``_aws`` a Timestamp in epoch milliseconds and the metric
# directives; a directive a namespace, dimension sets of at most 30 names and 1 to 100 metric
# definitions with a standard unit.
_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
EMF_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "additionalProperties": False,
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 255},
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "maxItems": 30,
                                    "items": _NAME,
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "Name": _NAME,
                                        "Unit": {"enum": sorted(STANDARD_UNITS)},
                                        "StorageResolution": {"enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def _type_error(instance: Any, kind: str | None) -> bool:
    if kind == "integer":
        return isinstance(instance, bool) or not isinstance(instance, int)
    expected = {"object": dict, "array": list, "string": str}.get(kind or "", object)
    return not isinstance(instance, expected)


def _size_errors(instance: Any, schema: Mapping[str, Any], path: str) -> list[str]:
    if isinstance(instance, str):
        low, high = schema.get("minLength", 0), schema.get("maxLength", math.inf)
    elif isinstance(instance, list):
        low, high = schema.get("minItems", 0), schema.get("maxItems", math.inf)
    else:
        return []
    if len(instance) < low:
        return [f"{path}: too short"]
    if len(instance) > high:
        return [f"{path}: too many items" if isinstance(instance, list) else f"{path}: too long"]
    return []


def _schema_errors(instance: Any, schema: Mapping[str, Any], path: str = "$") -> list[str]:
    """The subset of JSON Schema that EMF_SCHEMA uses, checked without a library."""
    if _type_error(instance, schema.get("type")):
        return [f"{path}: not of type {schema['type']}"]
    errors = _size_errors(instance, schema, path)
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} not one of the allowed values")
    if "minimum" in schema and instance < schema["minimum"]:
        errors.append(f"{path}: below the minimum")
    if isinstance(instance, list) and "items" in schema:
        for index, item in enumerate(instance):
            errors += _schema_errors(item, schema["items"], f"{path}[{index}]")
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        required = schema.get("required", ())
        errors += [f"{path}: {key} missing" for key in required if key not in instance]
        if schema.get("additionalProperties") is False:
            errors += [f"{path}: unexpected {key}" for key in instance if key not in properties]
        for key, subschema in properties.items():
            if key in instance:
                errors += _schema_errors(instance[key], subschema, f"{path}.{key}")
    return errors


@functools.cache
def _jsonschema_validator() -> Any:
    """A ``jsonschema`` validator of the same schema, where the library is installed."""
    try:
        jsonschema = importlib.import_module("jsonschema")
    except ImportError:
        return None
    validator_class = jsonschema.validators.validator_for(EMF_SCHEMA)
    validator_class.check_schema(EMF_SCHEMA)
    return validator_class(EMF_SCHEMA)


def _reference_errors(document: dict[str, Any], namespace: str) -> list[str]:
    """What a schema cannot say: the directives' references resolve to root members of the
    right type, in the right namespace, each name used once."""
    errors: list[str] = []
    metric_names: list[str] = []
    dimension_names: set[str] = set()
    for directive in document["_aws"]["CloudWatchMetrics"]:
        if directive["Namespace"] != namespace:
            errors.append(f"namespace {directive['Namespace']!r}")
        for name in (name for names in directive["Dimensions"] for name in names):
            dimension_names.add(name)
            value = document.get(name)
            if not isinstance(value, str) or not value.strip():
                errors.append(f"dimension {name!r} has no string value at the root")
        for name in (definition["Name"] for definition in directive["Metrics"]):
            metric_names.append(name)
            value = document.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                errors.append(f"metric {name!r} has no numeric value at the root")
            elif not math.isfinite(value):
                errors.append(f"metric {name!r} is not finite")
    if len(metric_names) > 100:
        errors.append("more than 100 metrics")
    if len(set(metric_names)) != len(metric_names):
        errors.append("a metric is declared twice")
    if dimension_names & set(metric_names):
        errors.append("a name is both a dimension and a metric")
    return errors


def emf_errors(document: Any, namespace: str = DEFAULT_NAMESPACE) -> list[str]:
    """Everything that makes ``document`` an invalid EMF document."""
    errors = _schema_errors(document, EMF_SCHEMA)
    validator = _jsonschema_validator()
    if validator is not None:
        errors += [error.message for error in validator.iter_errors(document)]
    if errors:
        return errors
    timestamp = document["_aws"]["Timestamp"]
    if not 1_000_000_000_000 <= timestamp < 10_000_000_000_000:
        errors.append(f"Timestamp {timestamp} is not epoch milliseconds")
    return errors + _reference_errors(document, namespace)


def parse_lines(text: str, namespace: str = DEFAULT_NAMESPACE) -> list[dict[str, Any]]:
    """The documents of ``text``, one per line, each checked against the specification."""
    assert text.endswith("\n")
    documents = []
    for line in text.splitlines():
        document = json.loads(line)
        assert emf_errors(document, namespace) == [], line
        documents.append(document)
    return documents


Point = tuple[str, float, str, tuple[tuple[str, str], ...]]


def points(document: dict[str, Any]) -> set[Point]:
    """The data points ``document`` stands for, as CloudWatch would extract them."""
    found: set[Point] = set()
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            dims = tuple((name, document[name]) for name in dimension_set)
            for definition in directive["Metrics"]:
                name = definition["Name"]
                found.add((name, document[name], definition["Unit"], dims))
    return found


def expected_points(metrics: list[Metric]) -> set[Point]:
    return {(m.name, m.value, m.unit, m.dimensions) for m in metrics}


class _Store:
    """A sender: stands for a store instance."""


def _built(event: object) -> Callable[[], object]:
    """A payload builder for ``signals.send`` that returns ``event``."""
    return lambda: event


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def handler(stream: io.StringIO) -> Iterator[EmfHandler]:
    with EmfHandler(stream=stream, properties={"Service": "comic-api"}).connect() as connected:
        yield connected
    assert not connected.connected


def _operation(**changes: Any) -> signals.OperationEvent:
    fields: dict[str, Any] = {
        "store": "cache",
        "operation": "get",
        "table": "comics",
        "key": "issue:1",
        "duration_ms": 12.5,
        "outcome": "error",
        "requests": 3,
        "retries": 2,
        "consumed_capacity": 0.5,
    }
    fields.update(changes)
    return signals.OperationEvent(**fields)


EVENTS: list[tuple[NamedSignal, Any]] = [
    (signals.operation_completed, _operation()),
    (signals.cache_hit, signals.CacheEvent(store="cache", table="comics", key="issue:1")),
    (signals.cache_miss, signals.CacheEvent(store="cache", table="comics", key="issue:2")),
    (
        signals.cache_decode_error,
        signals.CacheEvent(store="cache", table="comics", key="issue:3", error="bad json"),
    ),
    (
        signals.rate_limited,
        signals.RateLimitedEvent(
            store="rate_limit",
            table="comics",
            resource="issues",
            limit=200,
            window_ms=3_600_000,
            wait_ms=1500,
            priority="high",
        ),
    ),
    (
        signals.store_fallback,
        signals.FallbackEvent(
            store="cache",
            table="comics",
            operation="get",
            key="issue:5",
            mode="open",
            fallback="miss",
            error=RuntimeError("down"),
        ),
    ),
    (
        signals.dedupe_joined,
        signals.DedupeEvent(store="dedupe", table="comics", key="issue:4", job_id="job-1"),
    ),
    (
        signals.circuit_state_changed,
        signals.CircuitEvent(
            store="cache", table="comics", previous="closed", state="open", failure_count=5
        ),
    ),
    (
        signals.request_retried,
        signals.RetryEvent(
            store="cache",
            operation="get",
            table="comics",
            attempt=1,
            error_code="ProvisionedThroughputExceededException",
            delay_ms=50.0,
        ),
    ),
    (
        signals.health_checked,
        signals.HealthEvent(
            store="cache", table="comics", healthy=False, latency_ms=8.25, checked_at_ms=1
        ),
    ),
    (
        signals.metric_recorded,
        signals.MetricEvent(
            name="IssuesImported",
            value=42,
            unit="Count",
            timestamp_ms=1_700_000_000_000,
            dimensions=(("Publisher", "Marvel"),),
        ),
    ),
    (
        signals.correlation_ended,
        signals.CorrelationEvent(
            correlation_id="c-1", operation="import_issues", duration_ms=250.0, success=False
        ),
    ),
    (
        signals.client_upstream_status,
        signals.ClientEvent(
            method="GET",
            key="GET https://comicvine.gamespot.com/api/issues/",
            resource="issues",
            priority="high",
            status=503,
            duration_ms=80.0,
        ),
    ),
    (
        signals.client_limiter_waited,
        signals.ClientEvent(
            method="GET", key="GET /issues", resource="issues", priority="low", waited_ms=900
        ),
    ),
    (
        signals.client_store_unavailable,
        signals.ClientEvent(
            method="GET",
            key="GET /issues",
            resource="issues",
            priority="low",
            store="dedupe",
            operation="claim",
        ),
    ),
]


@pytest.mark.parametrize(("signal", "event"), EVENTS, ids=[s.name for s, _ in EVENTS])
def test_each_event_is_one_valid_line_with_exactly_its_metrics(
    signal: NamedSignal, event: Any, handler: EmfHandler, stream: io.StringIO
) -> None:
    signals.send(signal, _Store(), lambda: event)

    [document] = parse_lines(stream.getvalue())
    timestamp = document["_aws"]["Timestamp"]
    assert points(document) == expected_points(metrics_of(signal, event, now_ms=timestamp))
    assert document["Service"] == "comic-api"
    assert handler.failed_writes == 0
    assert handler.dropped_metrics == 0


def test_an_operation_groups_its_metrics_by_dimension_set(
    handler: EmfHandler, stream: io.StringIO
) -> None:
    signals.send(signals.operation_completed, _Store(), _operation)

    [document] = parse_lines(stream.getvalue())
    directives = {
        tuple(d["Dimensions"][0]): {m["Name"]: m["Unit"] for m in d["Metrics"]}
        for d in document["_aws"]["CloudWatchMetrics"]
    }
    assert directives == {
        ("TableName", "Store"): {
            "OperationCount": "Count",
            "OperationErrors": "Count",
            "OperationRejected": "Count",
        },
        ("TableName", "Store", "Operation"): {
            "OperationLatency": "Milliseconds",
            "DynamoDBRequests": "Count",
            "ConsumedCapacity": "Count",
        },
    }
    assert all(len(d["Dimensions"]) == 1 for d in document["_aws"]["CloudWatchMetrics"])
    assert (document["TableName"], document["Store"], document["Operation"]) == (
        "comics",
        "cache",
        "get",
    )
    values = {name: document[name] for names in directives.values() for name in names}
    assert values == {
        "OperationCount": 1,
        "OperationErrors": 1,
        "OperationRejected": 0,
        "OperationLatency": 12.5,
        "DynamoDBRequests": 3,
        "ConsumedCapacity": 0.5,
    }


def test_timestamps_are_the_events_time_in_milliseconds(
    handler: EmfHandler, stream: io.StringIO
) -> None:
    custom = signals.MetricEvent("Imported", 3, "Count", 1_700_000_000_123)
    signals.send(signals.metric_recorded, _Store(), lambda: custom)
    signals.send(signals.cache_hit, _Store(), lambda: signals.CacheEvent("cache", "t", "k"))

    recorded, hit = parse_lines(stream.getvalue())
    assert recorded["_aws"]["Timestamp"] == 1_700_000_000_123
    # A custom metric without dimensions still has one (empty) dimension set.
    assert recorded["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]
    assert isinstance(hit["_aws"]["Timestamp"], int)
    assert hit["_aws"]["Timestamp"] > 1_700_000_000_123


def test_a_handler_connected_to_one_store_sees_only_that_stores_events(
    stream: io.StringIO,
) -> None:
    store_a, store_b = _Store(), _Store()
    with EmfHandler(stream=stream).connect(sender=store_a):
        for store, table in ((store_a, "table-a"), (store_b, "table-b"), (store_a, "table-a")):
            signals.send(signals.cache_miss, store, _built(signals.CacheEvent("c", table, "k")))
    signals.send(signals.cache_miss, store_a, lambda: signals.CacheEvent("c", "after", "k"))

    documents = parse_lines(stream.getvalue())
    assert [d["TableName"] for d in documents] == ["table-a", "table-a"]


def test_a_closed_stream_is_counted_and_logged_once_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = io.StringIO()
    stream.close()
    with caplog.at_level(logging.DEBUG), EmfHandler(stream=stream).connect() as handler:
        for _ in range(3):
            signals.send(signals.cache_hit, _Store(), lambda: signals.CacheEvent("c", "t", "k"))
        assert handler.failed_writes == 3

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].name == "comic_vine_dynamodb_store.observability.handlers.emf"
    assert errors[0].exc_info is not None


def test_a_logger_receives_the_lines_instead_of_the_stream(
    stream: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("tests.emf.lines")
    with (
        caplog.at_level(logging.INFO, logger=logger.name),
        EmfHandler("Comics/Store", stream=stream, logger=logger).connect(),
    ):
        signals.send(signals.cache_hit, _Store(), lambda: signals.CacheEvent("c", "t", "k"))

    assert stream.getvalue() == ""
    [record] = [r for r in caplog.records if r.name == logger.name]
    assert record.levelno == logging.INFO
    [document] = parse_lines(record.getMessage() + "\n", namespace="Comics/Store")
    assert document["CacheHits"] == 1


def test_standard_output_is_the_default_stream(capsys: pytest.CaptureFixture[str]) -> None:
    with EmfHandler().connect():
        signals.send(signals.cache_hit, _Store(), lambda: signals.CacheEvent("c", "t", "k"))
    [document] = parse_lines(capsys.readouterr().out)
    assert document["CacheHits"] == 1


def test_properties_are_top_level_but_dimensions_take_their_place(stream: io.StringIO) -> None:
    handler = EmfHandler(stream=stream, properties={"Service": "api", "Store": "shadowed"})
    handler.emit([Metric("Hits", 2, "Count", (("Store", "cache"),), 1_700_000_000_000)])

    [document] = parse_lines(stream.getvalue())
    assert document["Service"] == "api"
    assert document["Store"] == "cache"
    assert stream.getvalue().count("\n") == 1
    assert ", " not in stream.getvalue()  # compact separators


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="namespace"):
        EmfHandler("")
    with pytest.raises(ValueError, match="namespace"):
        EmfHandler("has spaces")
    with pytest.raises(ValueError, match="_aws"):
        EmfHandler(properties={"_aws": "x"})


def _metric(name: str, value: float = 1.0, dims: tuple[tuple[str, str], ...] = ()) -> Metric:
    return Metric(name, value, "Count", dims, 1_700_000_000_000)


def test_more_than_100_metrics_are_split_over_lines(stream: io.StringIO) -> None:
    handler = EmfHandler(stream=stream)
    sent = [_metric(f"M{i}", i, (("Store", "cache"),)) for i in range(250)]
    handler.emit(sent)

    documents = parse_lines(stream.getvalue())
    counts = [sum(len(d["Metrics"]) for d in doc["_aws"]["CloudWatchMetrics"]) for doc in documents]
    assert counts == [100, 100, 50]
    assert set().union(*(points(d) for d in documents)) == expected_points(sent)


def test_conflicting_dimension_values_and_repeated_names_get_their_own_lines(
    stream: io.StringIO,
) -> None:
    handler = EmfHandler(stream=stream)
    sent = [
        _metric("Hits", 1, (("Store", "cache"),)),
        _metric("Hits", 2, (("Store", "cache"),)),  # the name is taken: a second line
        _metric("Misses", 3, (("Store", "dedupe"),)),  # Store differs: a third
        _metric("Store", 4),  # a metric named like a dimension: a fourth
        _metric("Errors", 5, (("Store", "cache"),)),  # fits the first
    ]
    handler.emit(sent)

    documents = parse_lines(stream.getvalue())
    assert [points(d) for d in documents] == [
        expected_points([sent[0], sent[4]]),
        expected_points([sent[1]]),
        expected_points([sent[2]]),
        expected_points([sent[3]]),
    ]


def test_metrics_of_different_times_get_their_own_lines(stream: io.StringIO) -> None:
    handler = EmfHandler(stream=stream)
    handler.emit(
        [
            Metric("Early", 1, "Count", (), 1_700_000_000_000),
            Metric("Late", 2, "Count", (), 1_700_000_000_500),
            Metric("AlsoEarly", 3, "Count", (), 1_700_000_000_000),
        ]
    )

    documents = parse_lines(stream.getvalue())
    assert [(d["_aws"]["Timestamp"], {p[0] for p in points(d)}) for d in documents] == [
        (1_700_000_000_000, {"Early", "AlsoEarly"}),
        (1_700_000_000_500, {"Late"}),
    ]


def test_what_emf_cannot_carry_is_repaired_or_dropped_and_logged_once(
    stream: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    handler = EmfHandler(stream=stream)
    many_dims = tuple((f"D{i}", "v") for i in range(35))
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            handler.emit(
                [
                    _metric("NotANumber", math.nan, (("Store", "cache"),)),
                    _metric("Infinite", math.inf),
                    _metric("", 1),
                    _metric("Wide", 5, many_dims),
                    Metric("OddUnit", 6, "Furlongs", (("Store", "cache"),), 1_700_000_000_000),
                    _metric("EmptyDimension", 7, (("TableName", ""), ("Store", "cache"))),
                ]
            )

    documents = parse_lines(stream.getvalue())
    assert len(documents) == 2  # the same event twice
    found = points(documents[0])
    assert ("Wide", 5, "Count", many_dims[:30]) in found
    assert ("OddUnit", 6, "None", (("Store", "cache"),)) in found
    assert ("EmptyDimension", 7, "Count", (("TableName", "unknown"), ("Store", "cache"))) in found
    assert {p[0] for p in found} == {"Wide", "OddUnit", "EmptyDimension"}
    assert handler.dropped_metrics == 6  # three a time, twice
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 5  # NaN, infinity, empty name, 35 dimensions, unit: once each


def test_concurrent_events_never_interleave_lines(stream: io.StringIO) -> None:
    with EmfHandler(stream=stream).connect():

        def send_many(worker: int) -> None:
            for index in range(100):
                event = signals.MetricEvent("Work", index, "Count", 1_700_000_000_000 + worker)
                signals.send(signals.metric_recorded, _Store(), _built(event))

        threads = [threading.Thread(target=send_many, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    documents = parse_lines(stream.getvalue())
    assert len(documents) == 800
    by_worker: dict[int, list[float]] = {}
    for document in documents:
        by_worker.setdefault(document["_aws"]["Timestamp"], []).append(document["Work"])
    assert all(values == list(range(100)) for values in by_worker.values())
    assert len(by_worker) == 8


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"_aws": {"CloudWatchMetrics": []}}, "Timestamp missing"),
        ({"_aws": {"Timestamp": 1.5e12, "CloudWatchMetrics": []}}, "not of type integer"),
        (
            {
                "_aws": {
                    "Timestamp": 1_700_000_000_000,
                    "CloudWatchMetrics": [
                        {"Namespace": "N", "Dimensions": [], "Metrics": [{"Name": "M"}]}
                    ],
                },
            },
            "no numeric value",
        ),
        (
            {
                "_aws": {
                    "Timestamp": 1_700_000_000_000,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": "N",
                            "Dimensions": [[f"D{i}" for i in range(31)]],
                            "Metrics": [{"Name": "M", "Unit": "Count"}],
                        }
                    ],
                },
                "M": 1,
                **{f"D{i}": "v" for i in range(31)},
            },
            "too many items",
        ),
        (
            {
                "_aws": {
                    "Timestamp": 1_700_000_000_000,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": "N",
                            "Dimensions": [["Store"]],
                            "Metrics": [{"Name": "M", "Unit": "Furlongs"}],
                        }
                    ],
                },
                "M": 1,
                "Store": "cache",
            },
            "allowed values",
        ),
        (
            {
                "_aws": {
                    "Timestamp": 1_700_000_000_000,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": "N",
                            "Dimensions": [["Store"]],
                            "Metrics": [{"Name": "M", "Unit": "Count"}],
                        }
                    ],
                },
                "M": 1,
                "Store": 5,
            },
            "no string value",
        ),
    ],
)
def test_the_validator_rejects_what_the_specification_forbids(
    document: dict[str, Any], problem: str
) -> None:
    errors = emf_errors(document, namespace="N")
    assert any(problem in error for error in errors), errors
