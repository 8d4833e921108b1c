"""Options of the stores: frozen pydantic models, validated once at construction.

The defaults are the TypeScript original's. Every model is strict (``"5"`` is not an int, ``True``
is not a number) and refuses unknown fields, so a misspelt option fails at start-up instead of
being silently ignored. Nested options accept the model or a plain dict. Any validation failure
is raised as :class:`~comic_vine_dynamodb_store.errors.ConfigurationError` whose ``field`` is the
dotted path of the first bad field (``circuit_breaker.failure_threshold``).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

import botocore.session
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from comic_vine_dynamodb_store.errors import ConfigurationError
from comic_vine_dynamodb_store.keys import validate_namespace

__all__ = [
    "DEFAULT_TABLE_NAME",
    "AdaptiveConfig",
    "AdaptiveRateLimitStoreOptions",
    "CacheStoreOptions",
    "CircuitBreakerOptions",
    "CloudWatchOptions",
    "DedupeStoreOptions",
    "HealthCheckOptions",
    "InMemoryAdaptiveRateLimitStoreOptions",
    "InMemoryCacheStoreOptions",
    "InMemoryDedupeStoreOptions",
    "InMemoryRateLimitStoreOptions",
    "LoggingOptions",
    "MonitoringOptions",
    "OptionsModel",
    "PerformanceOptions",
    "RateLimitConfig",
    "RateLimitConfigs",
    "RateLimitStoreOptions",
    "StoreOptions",
    "as_rate_limit_config",
]

DEFAULT_TABLE_NAME = "comic-vine-store"
DYNAMODB_MAX_BATCH_ITEMS = 25
YEAR_MS = 366 * 86_400_000
"""The longest duration an option takes (windows, leases, intervals): a (leap) year."""
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MAX_LIMIT = 1_000_000_000
"""The most admissions a rate-limit window counts."""
_REGION_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")

_TABLE_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_ENDPOINT_RE = re.compile(r"https?://[^\s/]+(/\S*)?")
_CLOUDWATCH_NAMESPACE_RE = re.compile(r"[A-Za-z0-9.\-_/#: ]{1,255}")

NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]
DurationMs = Annotated[int, Field(ge=0, le=YEAR_MS)]
"""Milliseconds, 0 to a year: every wait and interval stays one a thread can sleep."""
PositiveDurationMs = Annotated[int, Field(ge=1, le=YEAR_MS)]


class OptionsModel(BaseModel):
    """Base of every options model: frozen, strict, no unknown fields, typed errors."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _configuration_error(type(self).__name__, exc) from exc


def _configuration_error(model_name: str, exc: ValidationError) -> ConfigurationError:
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"])
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, ConfigurationError):
            # Nested options and cross-field checks name their own fields: keep them,
            # under this level's path.
            problems.extend(
                (".".join(part for part in (location, inner) if part), reason)
                for inner, reason in cause.problems
            )
        elif isinstance(cause, ValueError):
            problems.append((location or model_name, str(cause)))
        else:
            problems.append((location or model_name, error["msg"]))
    detail = "; ".join(f"{field}: {reason}" for field, reason in problems)
    return ConfigurationError(
        f"invalid {model_name}: {detail}",
        field=problems[0][0] if problems else None,
        problems=tuple(problems),
    )


class CircuitBreakerOptions(OptionsModel):
    """When to stop calling DynamoDB after repeated failures, and for how long."""

    enabled: bool = True
    failure_threshold: PositiveInt = 5
    recovery_timeout_ms: Annotated[int, Field(ge=1, le=DAY_MS)] = 60_000
    timeout_ms: Annotated[int, Field(ge=1, le=HOUR_MS)] = 30_000


def _check_endpoint_url(value: str | None) -> str | None:
    if value is not None and not _ENDPOINT_RE.fullmatch(value):
        raise ValueError("must be an http:// or https:// URL")
    return value


def _check_region_name(value: str | None) -> str | None:
    # What botocore takes as a region name; refused here rather than at the first request.
    if value is not None and not _REGION_RE.fullmatch(value):
        raise ValueError("must be a region name such as 'us-east-1' (a-z, 0-9 and '-')")
    return value


def check_cloudwatch_namespace(value: object) -> str:
    """``value`` if CloudWatch accepts it as a custom namespace, else ``ValueError``."""
    if (
        not isinstance(value, str)
        or not _CLOUDWATCH_NAMESPACE_RE.fullmatch(value)
        or value.startswith((":", "AWS/"))
    ):
        raise ValueError(
            "must be 1-255 characters of letters, digits, '.-_/#:' or space, "
            f"not starting with ':' or 'AWS/'; got {value!r}"
        )
    return value


class CloudWatchOptions(OptionsModel):
    """Publishing store metrics to CloudWatch (or a compatible endpoint)."""

    enabled: bool = False
    namespace: str = Field(default="DynamoDBStore", min_length=1, max_length=255)
    region: str | None = None
    endpoint: str | None = None

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        # Refused here, not at the first flush.
        return check_cloudwatch_namespace(value)

    _check_endpoint = field_validator("endpoint")(_check_endpoint_url)
    _check_region = field_validator("region")(_check_region_name)


class LoggingOptions(OptionsModel):
    """The logging handler of the signal bus."""

    enabled: bool = True
    level: Literal["debug", "info", "warn", "warning", "error"] = "info"


class PerformanceOptions(OptionsModel):
    """Per-operation timing; ``sampling_rate`` is the share of operations recorded."""

    enabled: bool = True
    sampling_rate: float = Field(default=1.0, ge=0.0, le=1.0, strict=False)


class HealthCheckOptions(OptionsModel):
    """Periodic DynamoDB round trips reported as health."""

    enabled: bool = False
    interval_ms: PositiveDurationMs = 60_000


class MonitoringOptions(OptionsModel):
    """The observability options of the TypeScript original, grouped as there."""

    cloud_watch: CloudWatchOptions = CloudWatchOptions()
    logging: LoggingOptions = LoggingOptions()
    performance: PerformanceOptions = PerformanceOptions()
    health_checks: HealthCheckOptions = HealthCheckOptions()


OnUnavailable = Literal["raise", "open", "closed"]
"""What a store does when DynamoDB is unavailable (``StoreUnavailableError``: the circuit is
open, retries ran out, a timeout, a 5xx, a broken connection): ``raise`` it; or ``open``: a
cache reads as a miss and skips writes, a dedupe store runs the work locally, a rate limiter
admits; or ``closed``: the same, except that a rate limiter refuses. Each fallback sends
``store_fallback``. Configuration errors (a missing table, bad credentials) always raise."""


class StoreOptions(OptionsModel):
    """Options every store takes.

    ``client`` is a botocore session to reuse (its credentials and configuration); the store
    makes its own clients from it and never closes it. ``region`` left as ``None`` resolves
    from ``AWS_REGION``/``AWS_DEFAULT_REGION``, then
    ``us-east-1``; see :attr:`resolved_region`. ``key_prefix`` namespaces every key so several
    applications can share one table.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    table_name: str = DEFAULT_TABLE_NAME
    region: str | None = None
    endpoint: str | None = None
    client: botocore.session.Session | None = None
    key_prefix: str = ""
    max_retries: Annotated[int, Field(ge=0, le=20)] = 3
    retry_delay_ms: DurationMs = 100
    batch_size: Annotated[int, Field(ge=1, le=DYNAMODB_MAX_BATCH_ITEMS)] = 25
    cleanup_interval_ms: DurationMs = 300_000
    circuit_breaker: CircuitBreakerOptions = CircuitBreakerOptions()
    monitoring: MonitoringOptions = MonitoringOptions()
    on_unavailable: OnUnavailable = "raise"

    @field_validator("table_name")
    @classmethod
    def _check_table_name(cls, value: str) -> str:
        if not _TABLE_NAME_RE.fullmatch(value):
            raise ValueError("must be 3-255 characters of A-Z, a-z, 0-9, '_', '.', '-'")
        return value

    _check_endpoint = field_validator("endpoint")(_check_endpoint_url)
    _check_region = field_validator("region")(_check_region_name)

    @field_validator("key_prefix")
    @classmethod
    def _check_key_prefix(cls, value: str) -> str:
        try:
            return validate_namespace(value)
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None

    @property
    def resolved_region(self) -> str:
        """The region requests are signed for."""
        return (
            self.region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )


class CacheStoreOptions(StoreOptions):
    """Options of the cache store."""

    max_value_bytes: PositiveInt = 16 * 1024 * 1024


class InMemoryCacheStoreOptions(OptionsModel):
    """Options of the in-memory cache: the DynamoDB cache's value cap, no table.

    ``cleanup_interval_ms`` defaults to 0 here: a process-local cache rarely needs a thread.
    """

    max_value_bytes: PositiveInt = 16 * 1024 * 1024
    cleanup_interval_ms: DurationMs = 0


class DedupeStoreOptions(StoreOptions):
    """Options of the dedupe store: job lease and how waiters poll."""

    default_ttl_seconds: Annotated[int, Field(ge=1, le=YEAR_MS // 1000)] = 300
    max_wait_time_ms: DurationMs = 30_000
    poll_interval_ms: PositiveDurationMs = 100


class InMemoryDedupeStoreOptions(OptionsModel):
    """Options of the in-memory dedupe store: the DynamoDB dedupe store's, without a table."""

    default_ttl_seconds: Annotated[int, Field(ge=1, le=YEAR_MS // 1000)] = 300
    max_wait_time_ms: DurationMs = 30_000
    poll_interval_ms: PositiveDurationMs = 100


class RateLimitConfig(OptionsModel):
    """``limit`` admissions per sliding window of ``window_ms``.

    Bounded so every count and date the stores derive stays representable: at most a billion
    admissions per window, and a window of at most a year.
    """

    limit: Annotated[int, Field(ge=0, le=MAX_LIMIT)] = 200
    window_ms: PositiveDurationMs = 60_000


def as_rate_limit_config(config: RateLimitConfig | Mapping[str, Any]) -> RateLimitConfig:
    """``config`` as a validated :class:`RateLimitConfig` (a mapping is validated into one)."""
    if isinstance(config, RateLimitConfig):
        return config
    if isinstance(config, Mapping):
        return RateLimitConfig(**config)
    raise ConfigurationError("config must be a RateLimitConfig or a mapping", field="config")


class RateLimitConfigs:
    """The limits in force per resource: a default, overrides from options, and run-time
    changes; thread-safe. Both rate-limit stores keep theirs in one of these."""

    def __init__(self, default: RateLimitConfig, overrides: Mapping[str, RateLimitConfig]) -> None:
        self._default = default
        self._overrides = dict(overrides)
        self._lock = threading.Lock()

    def get(self, resource: str) -> RateLimitConfig:
        """The config in force for ``resource``."""
        with self._lock:
            return self._overrides.get(resource, self._default)

    def set(self, resource: str, config: RateLimitConfig | Mapping[str, Any]) -> None:
        """Override ``resource``'s config (validated first; a bad one changes nothing)."""
        checked = as_rate_limit_config(config)
        with self._lock:
            self._overrides[resource] = checked

    def overrides(self) -> dict[str, RateLimitConfig]:
        """A copy of the per-resource overrides."""
        with self._lock:
            return dict(self._overrides)


class InMemoryRateLimitStoreOptions(OptionsModel):
    """Options of the in-memory rate-limit store: the DynamoDB store's limits, no table."""

    default_config: RateLimitConfig = RateLimitConfig()
    resource_configs: dict[str, RateLimitConfig] = Field(default_factory=dict)


class RateLimitStoreOptions(StoreOptions):
    """Options of the rate-limit store: a default config and per-resource overrides."""

    default_config: RateLimitConfig = RateLimitConfig()
    resource_configs: dict[str, RateLimitConfig] = Field(default_factory=dict)


class AdaptiveConfig(OptionsModel):
    """How the adaptive limiter splits capacity between user and background traffic."""

    monitoring_window_ms: PositiveDurationMs = 15 * 60 * 1000
    high_activity_threshold: PositiveInt = 10
    moderate_activity_threshold: PositiveInt = 3
    recalculation_interval_ms: PositiveDurationMs = 30_000
    sustained_inactivity_threshold_ms: PositiveDurationMs = 30 * 60 * 1000
    background_pause_on_increasing_trend: bool = True
    max_user_scaling: float = Field(default=2.0, ge=1.0, strict=False)
    min_user_reserved: NonNegativeInt = 5

    @model_validator(mode="after")
    def _check_thresholds(self) -> Self:
        if self.moderate_activity_threshold >= self.high_activity_threshold:
            raise ConfigurationError(
                f"must be below high_activity_threshold ({self.high_activity_threshold}), "
                f"got {self.moderate_activity_threshold}",
                field="moderate_activity_threshold",
            )
        return self


class AdaptiveRateLimitStoreOptions(RateLimitStoreOptions):
    """Options of the adaptive rate-limit store."""

    adaptive_config: AdaptiveConfig = AdaptiveConfig()


class InMemoryAdaptiveRateLimitStoreOptions(InMemoryRateLimitStoreOptions):
    """Options of the in-memory adaptive rate-limit store: the DynamoDB store's, no table."""

    adaptive_config: AdaptiveConfig = AdaptiveConfig()
