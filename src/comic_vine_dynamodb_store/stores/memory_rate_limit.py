"""``InMemoryRateLimitStore``: the rate-limit contract in one process, with an exact sliding log.

The in-memory twin of :class:`~comic_vine_dynamodb_store.stores.rate_limit.DynamoDBRateLimitStore`.
Where the DynamoDB store keeps per resource at most 61 slice counters (and so may under-admit by
up to one slice, see :mod:`.rate_limit_core`), this store keeps every admission's time: an
admission at ``a`` counts at ``t`` iff ``t - a < window_ms``, exactly. It keeps the DynamoDB
store's observable behaviour otherwise, so code tested against it behaves the same in
production:

* the same methods with the same meanings: ``acquire`` checks and records in one step (under
  one lock), ``record`` counts unconditionally, reads record nothing, ``limit=0`` refuses
  everything and reports a full window as the wait;
* the same configuration rules: ``default_config`` for every resource without an entry in
  ``resource_configs``, :meth:`set_resource_config` taking a :class:`RateLimitConfig` or a
  mapping, validated before anything changes (:class:`ConfigurationError`); changing a
  resource's window starts its window afresh, as a writer with another window length does on
  DynamoDB, while changing only the limit keeps the admissions;
* a resource's state lives until :meth:`cleanup` removes it once all its admissions have left
  the window, so ``get_stats`` counts the same resources the DynamoDB store's items are;
* the same ``rate_limited`` signal on every refusal;
* arguments checked in the DynamoDB store's order: a bad resource raises ``InvalidKeyError``
  before anything else, a closed store ``StoreClosedError``.

Nothing is shared between processes: a second process has its own, empty windows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from comic_vine_dynamodb_store.clock import Clock, system_clock_ms
from comic_vine_dynamodb_store.config import (
    InMemoryRateLimitStoreOptions,
    RateLimitConfig,
    RateLimitConfigs,
)
from comic_vine_dynamodb_store.keys import validate_key
from comic_vine_dynamodb_store.stores.base import InMemoryStore, PerResourceLimits, refuse
from comic_vine_dynamodb_store.stores.contracts import (
    RateLimitStats,
    RateLimitStatus,
)

__all__ = ["InMemoryRateLimitStore"]


@dataclass(slots=True)
class _Log:
    """One resource's admissions, oldest first, under the window they were recorded for."""

    window_ms: int
    admissions: deque[int] = field(default_factory=deque)

    def prune(self, now_ms: int) -> None:
        """Drop the admissions that have left the window (they can never count again)."""
        admissions = self.admissions
        while admissions and now_ms - admissions[0] >= self.window_ms:
            admissions.popleft()

    def counted(self, now_ms: int) -> int:
        """Admissions counted at ``now_ms``: those with ``now_ms - a < window_ms``."""
        self.prune(now_ms)
        return len(self.admissions)

    def add(self, now_ms: int) -> None:
        # A clock that stepped back records at the newest admission's time, keeping the log
        # sorted; the admission then leaves a little later, never earlier (never over-admits).
        admissions = self.admissions
        admissions.append(max(now_ms, admissions[-1]) if admissions else now_ms)


class InMemoryRateLimitStore(PerResourceLimits, InMemoryStore):
    """A sliding-window limit per resource, ``limit`` admissions per ``window_ms``, in memory.

    Every method is thread-safe: one lock guards the windows and the configs, and the clock is
    read under it, so admissions are decided in the order they are recorded. Signals are sent
    after the lock is released, so a receiver may use the store.
    """

    store_name: ClassVar[str] = "memory-rate-limit"
    """What signals and errors report as the table: there is none, but the field is expected."""

    def __init__(
        self,
        *,
        default_config: RateLimitConfig | Mapping[str, Any] | None = None,
        resource_configs: Mapping[str, RateLimitConfig | Mapping[str, Any]] | None = None,
        clock: Clock = system_clock_ms,
    ) -> None:
        settings: dict[str, Any] = {}
        if default_config is not None:
            settings["default_config"] = default_config
        if resource_configs is not None:
            settings["resource_configs"] = dict(resource_configs)
        self.options = InMemoryRateLimitStoreOptions(**settings)
        self._clock = clock
        super().__init__()
        self._configs = RateLimitConfigs(self.options.default_config, self.options.resource_configs)
        self._logs: dict[str, _Log] = {}

    # -- admission ---------------------------------------------------------------------------

    def acquire(self, resource: str) -> bool:
        """Admit one request if the window has room, recording it in the same step."""
        validate_key(resource, what="resource")
        with self._lock:
            self._check_open("acquire")
            now = self._clock()
            config = self._configs.get(resource)
            log = self._log(resource, config)
            counted = 0 if log is None else log.counted(now)
            if counted < config.limit:
                self._writable_log(resource, config, log).add(now)
                return True
            wait_ms = self._wait_ms(log, config, now)
        return refuse(
            self,
            store=self.store_name,
            table=self.table_name,
            resource=resource,
            config=config,
            wait_ms=lambda: wait_ms,
        )

    def record(self, resource: str) -> None:
        """Count one request whether or not the window has room."""
        validate_key(resource, what="resource")
        with self._lock:
            self._check_open("record")
            now = self._clock()
            config = self._configs.get(resource)
            log = self._writable_log(resource, config, self._log(resource, config))
            log.prune(now)
            log.add(now)

    # -- reading -----------------------------------------------------------------------------

    def can_proceed(self, resource: str) -> bool:
        """True if a request may go now (nothing is recorded)."""
        validate_key(resource, what="resource")
        with self._lock:
            self._check_open("can_proceed")
            now = self._clock()
            config = self._configs.get(resource)
            return self._counted(self._log(resource, config), now) < config.limit

    def get_status(self, resource: str) -> RateLimitStatus:
        """Admissions left, when the counted ones have all left the window, and the limit."""
        validate_key(resource, what="resource")
        with self._lock:
            self._check_open("get_status")
            now = self._clock()
            config = self._configs.get(resource)
            log = self._log(resource, config)
            counted = self._counted(log, now)
            # The newest counted admission leaves last: at a + window_ms.
            reset_ms = log.admissions[-1] + log.window_ms if log is not None and counted else now
        return RateLimitStatus(
            remaining=max(0, config.limit - counted),
            reset_time=datetime.fromtimestamp(reset_ms / 1000, tz=UTC),
            limit=config.limit,
        )

    def get_wait_time(self, resource: str) -> int:
        """Milliseconds until a request may proceed; 0 when it may now."""
        validate_key(resource, what="resource")
        with self._lock:
            self._check_open("get_wait_time")
            now = self._clock()
            config = self._configs.get(resource)
            return self._wait_ms(self._log(resource, config), config, now)

    def reset(self, resource: str) -> None:
        """Forget every admission of ``resource``."""
        validate_key(resource, what="resource")
        with self._lock:
            self._check_open("reset")
            self._logs.pop(resource, None)

    # -- store-wide --------------------------------------------------------------------------

    def get_stats(self) -> RateLimitStats:
        """Resources with state, those with admissions still counted, and how many."""
        with self._lock:
            self._check_open("get_stats")
            now = self._clock()
            counts = [log.counted(now) for log in self._logs.values()]
        return RateLimitStats(
            total_resources=len(counts),
            active_resources=sum(count > 0 for count in counts),
            total_requests=sum(counts),
        )

    def cleanup(self) -> int:
        """Remove the resources whose admissions have all left the window; returns how many."""
        with self._lock:
            self._check_open("cleanup")
            now = self._clock()
            gone = [resource for resource, log in self._logs.items() if not log.counted(now)]
            for resource in gone:
                del self._logs[resource]
        return len(gone)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the windows; later calls raise ``StoreClosedError``. Idempotent."""
        with self._lock:
            self._closed = True
            self._logs.clear()

    # -- internals (call with the lock held) -------------------------------------------------

    def _log(self, resource: str, config: RateLimitConfig) -> _Log | None:
        """``resource``'s log if it was kept under ``config``'s window (another window's
        admissions do not count: the window starts afresh, as on DynamoDB)."""
        log = self._logs.get(resource)
        return log if log is not None and log.window_ms == config.window_ms else None

    def _writable_log(self, resource: str, config: RateLimitConfig, log: _Log | None) -> _Log:
        if log is None:
            log = self._logs[resource] = _Log(config.window_ms)
        return log

    @staticmethod
    def _counted(log: _Log | None, now_ms: int) -> int:
        return 0 if log is None else log.counted(now_ms)

    @staticmethod
    def _wait_ms(log: _Log | None, config: RateLimitConfig, now_ms: int) -> int:
        """Milliseconds until ``counted < limit``: when the admission that must leave has left.

        With ``c >= limit`` admissions counted, the ``c - limit + 1`` oldest must leave; the
        last of them is ``admissions[c - limit]``, which leaves at ``a + window_ms``.
        """
        counted = 0 if log is None else log.counted(now_ms)
        if counted < config.limit:
            return 0
        if log is None or config.limit == 0:
            # Nothing leaving would ever make room: report a full window, as the core does.
            return config.window_ms
        return log.admissions[counted - config.limit] + log.window_ms - now_ms
