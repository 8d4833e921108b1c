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


def test_at_info_only_what_needs_attention_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    sender = object()
    boom = RuntimeError("boom")
    with (
        LoggingHandler("info").connect(sender=sender),
        caplog.at_level(logging.DEBUG, EVENT_LOGGER),
    ):
        signals.send(signals.operation_completed, sender, lambda: operation("error", error=boom))
        signals.send(
            signals.circuit_state_changed,
            sender,
            lambda: signals.CircuitEvent("cache", "t", "closed", "open", 5),
        )
        signals.send(
            signals.request_retried,
            sender,
            lambda: signals.RetryEvent("cache", "get", "t", 1, "ThrottlingException", 50.0),
        )
        signals.send(
            signals.health_checked,
            sender,
            lambda: signals.HealthEvent("cache", "t", False, 3.0, 1, error=boom),
        )
    assert [(r.levelno, r.getMessage().split()[0]) for r in caplog.records] == [
        (logging.WARNING, "circuit-state-changed"),
        (logging.INFO, "request-retried"),
        (logging.WARNING, "health-checked"),
    ]
    assert caplog.records[2].error == "RuntimeError: boom"  # type: ignore[attr-defined]


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_the_handler_connects_only_to_signals_that_can_reach_its_level(level: str) -> None:
    handler = LoggingHandler(level)
    # The hot path only ever logs at debug: above debug nobody builds its payloads.
    for hot in (signals.operation_completed, signals.cache_hit, signals.rate_limited):
        assert (hot in handler.signals) == (level == "debug")
    assert (signals.request_retried in handler.signals) == (level in {"debug", "info"})
    assert (signals.client_store_unavailable in handler.signals) == (level != "error")


def test_a_default_store_has_no_receiver_on_its_hot_path(
    make_cache_store: Callable[..., DynamoDBCacheStore[Any]],
) -> None:
    store = make_cache_store()  # monitoring.logging: enabled, info
    for hot in (signals.operation_completed, signals.cache_hit, signals.cache_miss):
        assert not any(True for _ in hot.receivers_for(store))
    assert any(True for _ in signals.circuit_state_changed.receivers_for(store))


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
