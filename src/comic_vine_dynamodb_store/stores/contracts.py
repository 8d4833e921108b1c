"""The store contracts: what a cache, dedupe, rate-limit and adaptive store promise.

Python names for the TypeScript original's interfaces, with its meanings. Both the DynamoDB
stores and the in-memory twins implement them, and code that uses a store (the client flow)
depends only on these protocols. Result types are frozen dataclasses with attribute access.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, TypeVar, runtime_checkable

from comic_vine_dynamodb_store.config import RateLimitConfig

__all__ = [
    "AdaptiveRateLimitStore",
    "AdaptiveStatus",
    "CacheStats",
    "CacheStore",
    "DedupeStats",
    "DedupeStore",
    "HealthCheckResult",
    "Priority",
    "RateLimitStats",
    "RateLimitStatus",
    "RateLimitStore",
    "Registration",
]

T = TypeVar("T")
Priority = Literal["user", "background"]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Items of the cache: live ones, expired ones not yet removed, and their stored size."""

    total_items: int
    expired_items: int
    estimated_size_bytes: int


@dataclass(frozen=True, slots=True)
class HealthCheckResult:
    """One round trip to the backing store: did it answer, how fast, and the breaker's state."""

    healthy: bool
    latency_ms: float
    circuit_state: str
    error: str | None = None

    @property
    def success(self) -> bool:
        """``healthy``, under the original's name."""
        return self.healthy


@dataclass(frozen=True, slots=True)
class Registration:
    """The outcome of ``register_or_join``: the live job's id, and whether the caller owns it."""

    job_id: str
    is_owner: bool


@dataclass(frozen=True, slots=True)
class DedupeStats:
    """Jobs of the dedupe store by status (expired: past their lease or retention)."""

    total_jobs: int
    pending_jobs: int
    completed_jobs: int
    failed_jobs: int
    expired_jobs: int


@dataclass(frozen=True, slots=True)
class AdaptiveStatus:
    """How the adaptive limiter currently splits a resource's capacity."""

    user_reserved: int
    background_max: int
    background_paused: bool
    recent_user_activity: int
    reason: str


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    """A resource's window: admissions left, when the oldest counted one leaves, the limit."""

    remaining: int
    reset_time: datetime
    limit: int
    adaptive: AdaptiveStatus | None = None


@dataclass(frozen=True, slots=True)
class RateLimitStats:
    """Resources the rate-limit store holds state for."""

    total_resources: int
    active_resources: int
    total_requests: int


@runtime_checkable
class CacheStore(Protocol[T]):
    """A TTL cache shared by everyone using the same backing store."""

    def get(self, key: str) -> T | None:
        """The live value of ``key``, or None."""
        ...

    def set(self, key: str, value: T, ttl_seconds: float) -> None:
        """Store ``value`` for ``ttl_seconds`` (0: never expires; negative: ValueError)."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error if absent)."""
        ...

    def clear(self) -> None:
        """Remove every cache item."""
        ...

    def cleanup(self) -> int:
        """Remove expired items now; returns how many."""
        ...

    def get_stats(self) -> CacheStats:
        """Counts of live and expired items and their size."""
        ...

    def close(self) -> None:
        """Release resources; the store is unusable afterwards."""
        ...


@runtime_checkable
class DedupeStore(Protocol[T]):
    """One in-flight job per key; everyone else waits for its result."""

    def wait_for(self, key: str) -> T | None:
        """The result of the live job for ``key``; None if failed, expired, absent or timed out."""
        ...

    def register(self, key: str) -> str:
        """The id of the live job for ``key``, starting one if there is none."""
        ...

    def register_or_join(self, key: str) -> Registration:
        """Own a new job for ``key``, or learn the live one's id."""
        ...

    def complete(self, key: str, value: T, job_id: str | None = None) -> bool:
        """Publish the result of the pending job; False if it was not pending (or not ours)."""
        ...

    def fail(self, key: str, error: BaseException | str, job_id: str | None = None) -> bool:
        """Mark the pending job failed; False if it was not pending (or not ours)."""
        ...

    def is_in_progress(self, key: str) -> bool:
        """True while a live job for ``key`` is pending."""
        ...

    def run(self, key: str, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` once across everyone asking for ``key``; the others get its result."""
        ...

    def get_stats(self) -> DedupeStats:
        """Jobs by status."""
        ...

    def cleanup(self) -> int:
        """Remove expired jobs now; returns how many."""
        ...

    def close(self) -> None:
        """Release resources; the store is unusable afterwards."""
        ...


@runtime_checkable
class RateLimitStore(Protocol):
    """A sliding-window limit per resource, shared by everyone using the backing store."""

    def can_proceed(self, resource: str) -> bool:
        """True if a request may go now (reads only)."""
        ...

    def record(self, resource: str) -> None:
        """Count one request, unconditionally."""
        ...

    def acquire(self, resource: str) -> bool:
        """Check and record in one atomic step; True when admitted."""
        ...

    def get_status(self, resource: str) -> RateLimitStatus:
        """Remaining admissions, reset time and limit."""
        ...

    def get_wait_time(self, resource: str) -> int:
        """Milliseconds until a request may proceed; 0 when it may now."""
        ...

    def reset(self, resource: str) -> None:
        """Forget every admission of ``resource``."""
        ...

    def set_resource_config(self, resource: str, config: RateLimitConfig) -> None:
        """Override the limit of one resource."""
        ...

    def get_resource_config(self, resource: str) -> RateLimitConfig:
        """The limit in force for ``resource``."""
        ...

    def get_stats(self) -> RateLimitStats:
        """Resources with state."""
        ...

    def cleanup(self) -> int:
        """Remove state no window can count any more; returns how many items."""
        ...

    def close(self) -> None:
        """Release resources; the store is unusable afterwards."""
        ...


@runtime_checkable
class AdaptiveRateLimitStore(Protocol):
    """A rate limit that reserves capacity for user requests over background ones."""

    def can_proceed(self, resource: str, priority: Priority = "background") -> bool:
        """True if a request of ``priority`` may go now (reads only)."""
        ...

    def record(self, resource: str, priority: Priority = "background") -> None:
        """Count one request of ``priority``, unconditionally."""
        ...

    def acquire(self, resource: str, priority: Priority = "background") -> bool:
        """Check and record in one atomic step; True when admitted."""
        ...

    def get_status(self, resource: str) -> RateLimitStatus:
        """Remaining admissions, reset time, limit and the ``adaptive`` split."""
        ...

    def get_wait_time(self, resource: str, priority: Priority = "background") -> int:
        """Milliseconds until a request of ``priority`` may proceed; 0 when it may now."""
        ...

    def reset(self, resource: str) -> None:
        """Forget every admission and the activity of ``resource``."""
        ...

    def get_stats(self) -> RateLimitStats:
        """Resources with state."""
        ...

    def close(self) -> None:
        """Release resources; the store is unusable afterwards."""
        ...
