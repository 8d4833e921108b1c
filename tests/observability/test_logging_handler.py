"""The logging handler: levels, structured fields, and what it connects to."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from comic_vine_dynamodb_store import DynamoDBCacheStore
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.observability.handlers import LoggingHandler
from comic_vine_dynamodb_store.observability.handlers.logging_handler import EVENT_LOGGER


def operation(outcome: signals.Outcome = "success", **fields: Any) -> signals.OperationEvent:
    values: dict[str, Any] = {
        "store": "cache",
        "operation": "get",
        "table": "t",
        "key": "k",
        "duration_ms": 1.5,
        "outcome": outcome,
        "requests": 1,
        "retries": 0,
        "consumed_capacity": 0.5,
        **fields,
    }
    return signals.OperationEvent(**values)


def test_records_carry_every_payload_field_and_reserved_names_are_prefixed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = object()
    with (
        LoggingHandler("debug").connect(sender=sender),
        caplog.at_level(logging.DEBUG, EVENT_LOGGER),
    ):
        signals.send(signals.operation_completed, sender, operation)
        signals.send(
            signals.metric_recorded,
            sender,
            lambda: signals.MetricEvent(name="hits", value=3, unit="Count", timestamp_ms=1),
        )
    first, second = caplog.records
    assert first.levelno == logging.DEBUG
    assert first.getMessage().startswith("operation-completed store=cache operation=get key=k")
    assert (first.store, first.operation, first.outcome) == ("cache", "get", "success")  # type: ignore[attr-defined]
    assert first.consumed_capacity == 0.5  # type: ignore[attr-defined]
    # ``name`` belongs to the LogRecord: the payload's name is ``event_name``.
    assert second.name == EVENT_LOGGER
    assert second.event_name == "hits"  # type: ignore[attr-defined]


def test_failures_warn_with_the_error_as_text(caplog: pytest.LogCaptureFixture) -> None:
    sender = object()
    boom = RuntimeError("boom")
    with (
        LoggingHandler("info").connect(sender=sender),
        caplog.at_level(logging.DEBUG, EVENT_LOGGER),
    ):
        signals.send(signals.operation_completed, sender, operation)  # success: debug, dropped
        signals.send(signals.operation_completed, sender, lambda: operation("error", error=boom))
        signals.send(
            signals.circuit_state_changed,
            sender,
            lambda: signals.CircuitEvent("cache", "t", "closed", "open", 5),
        )
    assert [(r.levelno, r.getMessage().split()[0]) for r in caplog.records] == [
        (logging.WARNING, "operation-completed"),
        (logging.WARNING, "circuit-state-changed"),
    ]
    assert caplog.records[0].error == "RuntimeError: boom"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("level", "hot_path_connected"),
    [("debug", True), ("info", True), ("warning", True), ("error", False)],
)
def test_the_handler_connects_only_to_signals_that_can_reach_its_level(
    level: str, hot_path_connected: bool
) -> None:
    handler = LoggingHandler(level)
    # cache hits only ever log at debug: above debug nobody builds their payload.
    assert (signals.cache_hit in handler.signals) == (level == "debug")
    assert (signals.operation_completed in handler.signals) == hot_path_connected
    assert (signals.client_store_unavailable in handler.signals) == (level != "error")


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        LoggingHandler("verbose")


def test_a_store_logs_per_its_monitoring_options_and_stops_when_closed(
    make_cache_store: Callable[..., DynamoDBCacheStore[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    store = make_cache_store(monitoring={"logging": {"level": "debug"}})
    quiet = make_cache_store(monitoring={"logging": {"enabled": False}})
    with caplog.at_level(logging.DEBUG, EVENT_LOGGER):
        store.set("k", 1, 60)
        store.get("k")
        quiet.get("k")
        logged = [(r.store, r.getMessage().split()[0]) for r in caplog.records]  # type: ignore[attr-defined]
        assert ("cache", "cache-hit") in logged
        assert len([m for _, m in logged if m == "operation-completed"]) == 2  # set, get
        caplog.clear()
        store.close()
        signals.send(signals.cache_hit, store, lambda: signals.CacheEvent("cache", "t", "k"))
        assert caplog.records == []
