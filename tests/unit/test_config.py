"""Options: the original's defaults, strict validation, typed errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from comic_vine_dynamodb_store.config import (
    AdaptiveConfig,
    AdaptiveRateLimitStoreOptions,
    CacheStoreOptions,
    CircuitBreakerOptions,
    DedupeStoreOptions,
    RateLimitConfig,
    RateLimitStoreOptions,
    StoreOptions,
)
from comic_vine_dynamodb_store.errors import ConfigurationError


def test_defaults_are_the_originals() -> None:
    options = StoreOptions()
    assert options.table_name == "comic-vine-store"
    assert options.max_retries == 3
    assert options.retry_delay_ms == 100
    assert options.batch_size == 25
    assert options.cleanup_interval_ms == 300_000
    assert options.circuit_breaker == CircuitBreakerOptions(
        enabled=True, failure_threshold=5, recovery_timeout_ms=60_000, timeout_ms=30_000
    )
    assert options.monitoring.cloud_watch.enabled is False
    assert options.monitoring.cloud_watch.namespace == "DynamoDBStore"
    assert options.monitoring.logging.enabled is True
    assert options.monitoring.logging.level == "info"
    assert options.key_prefix == ""
    dedupe = DedupeStoreOptions()
    assert (dedupe.default_ttl_seconds, dedupe.max_wait_time_ms, dedupe.poll_interval_ms) == (
        300,
        30_000,
        100,
    )
    assert RateLimitStoreOptions().default_config == RateLimitConfig(limit=200, window_ms=60_000)
    assert CacheStoreOptions().max_value_bytes == 16 * 1024 * 1024


def test_adaptive_defaults_are_the_originals() -> None:
    config = AdaptiveRateLimitStoreOptions().adaptive_config
    assert config == AdaptiveConfig(
        monitoring_window_ms=900_000,
        high_activity_threshold=10,
        moderate_activity_threshold=3,
        recalculation_interval_ms=30_000,
        sustained_inactivity_threshold_ms=1_800_000,
        background_pause_on_increasing_trend=True,
        max_user_scaling=2.0,
        min_user_reserved=5,
    )


@pytest.mark.parametrize(
    ("model", "kwargs", "field"),
    [
        (StoreOptions, {"table_name": "ab"}, "table_name"),
        (StoreOptions, {"table_name": "has space"}, "table_name"),
        (StoreOptions, {"endpoint": "localhost:8000"}, "endpoint"),
        (StoreOptions, {"key_prefix": "a#b"}, "key_prefix"),
        (StoreOptions, {"max_retries": -1}, "max_retries"),
        (StoreOptions, {"max_retries": "3"}, "max_retries"),
        (StoreOptions, {"retry_delay_ms": -5}, "retry_delay_ms"),
        (StoreOptions, {"batch_size": 0}, "batch_size"),
        (StoreOptions, {"batch_size": 26}, "batch_size"),
        (StoreOptions, {"cleanup_interval_ms": -1}, "cleanup_interval_ms"),
        (StoreOptions, {"cleanup_interval_ms": True}, "cleanup_interval_ms"),
        (
            StoreOptions,
            {"circuit_breaker": {"failure_threshold": 0}},
            "circuit_breaker.failure_threshold",
        ),
        (StoreOptions, {"circuit_breaker": {"timeout_ms": 0}}, "circuit_breaker.timeout_ms"),
        (
            StoreOptions,
            {"monitoring": {"performance": {"sampling_rate": 1.5}}},
            "monitoring.performance.sampling_rate",
        ),
        (StoreOptions, {"monitoring": {"logging": {"level": "loud"}}}, "monitoring.logging.level"),
        (
            StoreOptions,
            {"monitoring": {"cloud_watch": {"namespace": "AWS/DynamoDB"}}},
            "monitoring.cloud_watch.namespace",
        ),
        (
            StoreOptions,
            {"monitoring": {"cloud_watch": {"namespace": "bad|char"}}},
            "monitoring.cloud_watch.namespace",
        ),
        (
            StoreOptions,
            {"monitoring": {"cloud_watch": {"endpoint": "localhost:4566"}}},
            "monitoring.cloud_watch.endpoint",
        ),
        (StoreOptions, {"tableName": "camel"}, "tableName"),
        (DedupeStoreOptions, {"default_ttl_seconds": 0}, "default_ttl_seconds"),
        (DedupeStoreOptions, {"poll_interval_ms": 0}, "poll_interval_ms"),
        (RateLimitConfig, {"limit": -1}, "limit"),
        (RateLimitConfig, {"window_ms": 0}, "window_ms"),
        (
            RateLimitStoreOptions,
            {"resource_configs": {"issues": {"limit": -1}}},
            "resource_configs.issues.limit",
        ),
        (AdaptiveConfig, {"moderate_activity_threshold": 10}, "moderate_activity_threshold"),
        (AdaptiveConfig, {"max_user_scaling": 0.5}, "max_user_scaling"),
        (
            AdaptiveRateLimitStoreOptions,
            {"adaptive_config": {"high_activity_threshold": 2}},
            "adaptive_config.moderate_activity_threshold",
        ),
    ],
)
def test_bad_values_raise_configuration_error_naming_the_field(
    model: type[Any], kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        model(**kwargs)
    assert caught.value.field == field
    assert field in str(caught.value)


def test_configuration_error_is_a_value_error_and_lists_every_problem() -> None:
    with pytest.raises(ValueError, match="max_retries") as caught:
        StoreOptions(max_retries=-1, batch_size=99)
    assert isinstance(caught.value, ConfigurationError)
    assert [field for field, _ in caught.value.problems] == ["max_retries", "batch_size"]


def test_nested_options_take_a_model_or_a_dict() -> None:
    from_dict = StoreOptions(circuit_breaker={"failure_threshold": 2})  # type: ignore[arg-type]
    from_model = StoreOptions(circuit_breaker=CircuitBreakerOptions(failure_threshold=2))
    assert from_dict == from_model
    assert from_dict.circuit_breaker.failure_threshold == 2
    assert from_dict.circuit_breaker.timeout_ms == 30_000


def test_options_are_frozen_and_hashable() -> None:
    options = StoreOptions(table_name="frozen-table")
    with pytest.raises(Exception, match="frozen"):
        options.table_name = "other"  # type: ignore[misc]
    assert hash(options) == hash(StoreOptions(table_name="frozen-table"))


def test_region_resolves_from_argument_then_environment_then_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert StoreOptions().resolved_region == "us-east-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert StoreOptions().resolved_region == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    assert StoreOptions().resolved_region == "ap-south-1"
    assert StoreOptions(region="us-west-2").resolved_region == "us-west-2"


def test_sampling_rate_accepts_integral_bounds() -> None:
    monitoring: Any = {"performance": {"sampling_rate": 0}}
    options = StoreOptions(monitoring=monitoring)
    assert options.monitoring.performance.sampling_rate == 0.0
