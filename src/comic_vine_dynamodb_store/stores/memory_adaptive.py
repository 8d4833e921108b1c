"""``InMemoryAdaptiveRateLimitStore``: the adaptive rate-limit contract in one process, exactly.

The in-memory twin of
:class:`~comic_vine_dynamodb_store.stores.adaptive.DynamoDBAdaptiveRateLimitStore`. A
resource's limit ``L`` per ``window_ms`` is shared by user and background requests; the split
of ``L`` between them (how much is reserved for users, how much background work may take,
whether background work is paused) comes from :func:`~.adaptive_core.compute_capacity` over
the recent activity. Where the DynamoDB store keeps sliced counters (and so may count up to one
slice more), this store keeps every admission's time and priority, so every count is exact:

* an admission at ``a`` counts in the rate window at ``t`` iff ``t - a < window_ms``, and in
  the activity iff ``t - a < monitoring_window_ms`` (its thirds likewise);
* users are admitted while the window has room; background work also needs room in its share
  (``background_max``) and must not be paused, so users are never starved by background work
  and together they never exceed ``L``;
* the split is stored with when it was computed and for which limit, and recomputed only when
  it is ``recalculation_interval_ms`` old or the limit changed, by whichever call comes first
  and before that call decides, so every caller sees the same split between recomputations,
  as peers sharing a DynamoDB item do;
* a resource's state lives until its newest admission plus ``max(window, monitoring window,
  2 x sustained inactivity)``: long enough for "users inactive for a sustained period" to be
  told from "no user ever". After that it is as if new, and :meth:`cleanup` removes it;
* the same configuration rules and argument order as the rate-limit stores (a bad resource
  raises ``InvalidKeyError`` first, then a bad priority ``ConfigurationError``, then a closed
  store ``StoreClosedError``), and the same ``rate_limited`` signal, with the priority, on
  every refusal.

Nothing is shared between processes: a second process has its own, empty state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from comic_vine_dynamodb_store.clock import Clock, system_clock_ms
from comic_vine_dynamodb_store.config import (
    AdaptiveConfig,
    InMemoryAdaptiveRateLimitStoreOptions,
    RateLimitConfig,
    RateLimitConfigs,
)
from comic_vine_dynamodb_store.keys import validate_key
from comic_vine_dynamodb_store.stores.adaptive_core import (
    Capacity,
    UserActivity,
    compute_capacity,
    validate_priority,
)
from comic_vine_dynamodb_store.stores.base import InMemoryStore, PerResourceLimits, refuse
from comic_vine_dynamodb_store.stores.contracts import (
    AdaptiveStatus,
    Priority,
    RateLimitStats,
    RateLimitStatus,
)

__all__ = ["InMemoryAdaptiveRateLimitStore"]


def _prune(times: deque[int], now_ms: int, span_ms: int) -> None:
    """Drop the times that have left a span of ``span_ms`` (they can never count again)."""
    while times and now_ms - times[0] >= span_ms:
        times.popleft()


def _retention_ms(config: RateLimitConfig, adaptive: AdaptiveConfig) -> int:
    """How long a resource's state outlives its newest admission: while it still counts in
    the rate window or the activity, and for twice the sustained inactivity threshold, so
    idle users are told from users that never came."""
    return max(
        config.window_ms,
        adaptive.monitoring_window_ms,
        2 * adaptive.sustained_inactivity_threshold_ms,
    )


def _append(times: deque[int], now_ms: int) -> int:
    # A clock that stepped back records at the newest time, keeping the log sorted; the
    # admission then leaves a little later, never earlier (never over-admits).
    at = max(now_ms, times[-1]) if times else now_ms
    times.append(at)
    return at


@dataclass(slots=True)
class _Split:
    """A computed capacity, when it was computed and for which limit."""

    capacity: Capacity
    computed_at_ms: int
    limit: int


@dataclass(slots=True)
class _State:
    """One resource's admissions, activity and split.

    The rate logs hold admissions under the window they were recorded for (another window's
    do not count); the activity logs hold them over the monitoring window, whatever the rate
    window, and with ``last_user_ms`` outlive a change of window.
    """

    window_ms: int
    split: _Split
    expires_at_ms: int
    admissions: deque[int] = field(default_factory=deque)
    background: deque[int] = field(default_factory=deque)
    user_activity: deque[int] = field(default_factory=deque)
    background_activity: deque[int] = field(default_factory=deque)
    last_user_ms: int | None = None

    def rate_logs(self, config: RateLimitConfig) -> tuple[deque[int], deque[int]] | None:
        """All and background admissions if kept under ``config``'s window, else None."""
        return (self.admissions, self.background) if self.window_ms == config.window_ms else None

    def activity(self, adaptive: AdaptiveConfig, now_ms: int) -> UserActivity:
        """What the capacity calculator needs, counted exactly at ``now_ms``."""
        span = adaptive.monitoring_window_ms
        _prune(self.user_activity, now_ms, span)
        _prune(self.background_activity, now_ms, span)
        # Thirds compared as 3 x age against the span: exact for any span, no rounding.
        ages = [3 * (now_ms - a) for a in self.user_activity]
        return UserActivity(
            user_requests=len(self.user_activity),
            background_requests=len(self.background_activity),
            newest_third=sum(1 for age in ages if age < span),
            previous_third=sum(1 for age in ages if span <= age < 2 * span),
            last_user_request_ms=self.last_user_ms,
        )

    def add(
        self, priority: Priority, config: RateLimitConfig, adaptive: AdaptiveConfig, now_ms: int
    ) -> None:
        """Count one admission of ``priority`` at ``now_ms`` in the rate window and activity."""
        if self.window_ms != config.window_ms:
            # A new window length starts the rate window afresh; activity and split stay.
            self.window_ms = config.window_ms
            self.admissions.clear()
            self.background.clear()
        span = adaptive.monitoring_window_ms
        activity = self.user_activity if priority == "user" else self.background_activity
        for times, span_ms in (
            (self.admissions, self.window_ms),
            (self.background, self.window_ms),
            (activity, span),
        ):
            _prune(times, now_ms, span_ms)
        at = _append(self.admissions, now_ms)
        if priority == "background":
            self.background.append(at)  # a subset of admissions: never after ``at``
        seen_at = _append(activity, now_ms)
        if priority == "user":
            last = self.last_user_ms
            self.last_user_ms = seen_at if last is None else max(last, seen_at)
        newest = max(at, seen_at)
        self.expires_at_ms = max(self.expires_at_ms, newest + _retention_ms(config, adaptive))


@dataclass(frozen=True, slots=True)
class _View:
    """A resource as one call sees it: its counts and the split in force."""

    state: _State | None
    split: _Split
    total: int
    background: int


class InMemoryAdaptiveRateLimitStore(PerResourceLimits, InMemoryStore):
    """A limit per resource split between user and background requests, in memory.

    Every method is thread-safe: one lock guards the state and the clock is read under it, so
    admissions are decided in the order they are recorded and a recomputed split is seen by
    every later call. Signals are sent after the lock is released, so a receiver may use the
    store.
    """

    store_name: ClassVar[str] = "memory-adaptive-rate-limit"
    """What signals and errors report as the table: there is none, but the field is expected."""

    def __init__(
        self,
        *,
        default_config: RateLimitConfig | Mapping[str, Any] | None = None,
        resource_configs: Mapping[str, RateLimitConfig | Mapping[str, Any]] | None = None,
        adaptive_config: AdaptiveConfig | Mapping[str, Any] | None = None,
        clock: Clock = system_clock_ms,
    ) -> None:
        settings: dict[str, Any] = {}
        if default_config is not None:
            settings["default_config"] = default_config
        if resource_configs is not None:
            settings["resource_configs"] = dict(resource_configs)
        if adaptive_config is not None:
            settings["adaptive_config"] = adaptive_config
        self.options = InMemoryAdaptiveRateLimitStoreOptions(**settings)
        self._clock = clock
        super().__init__()
        self._adaptive = self.options.adaptive_config
        self._configs = RateLimitConfigs(self.options.default_config, self.options.resource_configs)
        self._states: dict[str, _State] = {}

    # -- admission ---------------------------------------------------------------------------

    def acquire(self, resource: str, priority: Priority = "background") -> bool:
        """Admit one request of ``priority`` if the split lets it, recording it in one step."""
        validate_key(resource, what="resource")
        checked = validate_priority(priority)
        with self._lock:
            self._check_open("acquire")
            now = self._clock()
            config = self._configs.get(resource)
            view = self._view(resource, config, now)
            if self._admits(view, config, checked):
                self._writable(resource, config, view, now).add(
                    checked, config, self._adaptive, now
                )
                return True
            wait_ms = self._wait_ms(view, config, checked, now)
        return refuse(
            self,
            store=self.store_name,
            table=self.table_name,
            resource=resource,
            config=config,
            wait_ms=lambda: wait_ms,
            priority=checked,
        )

    def record(self, resource: str, priority: Priority = "background") -> None:
        """Count one request of ``priority`` whether or not the split has room for it."""
        validate_key(resource, what="resource")
        checked = validate_priority(priority)
        with self._lock:
            self._check_open("record")
            now = self._clock()
            config = self._configs.get(resource)
            view = self._view(resource, config, now)
            self._writable(resource, config, view, now).add(checked, config, self._adaptive, now)

    # -- reading -----------------------------------------------------------------------------

    def can_proceed(self, resource: str, priority: Priority = "background") -> bool:
        """True if a request of ``priority`` may go now (nothing is recorded)."""
        validate_key(resource, what="resource")
        checked = validate_priority(priority)
        with self._lock:
            self._check_open("can_proceed")
            now = self._clock()
            config = self._configs.get(resource)
            return self._admits(self._view(resource, config, now), config, checked)

    def get_wait_time(self, resource: str, priority: Priority = "background") -> int:
        """Milliseconds until a request of ``priority`` may proceed; 0 when it may now."""
        validate_key(resource, what="resource")
        checked = validate_priority(priority)
        with self._lock:
            self._check_open("get_wait_time")
            now = self._clock()
            config = self._configs.get(resource)
            return self._wait_ms(self._view(resource, config, now), config, checked, now)

    def get_status(self, resource: str) -> RateLimitStatus:
        """Admissions left, when the counted ones have all left the window, and the split."""
        validate_key(resource, what="resource")
        with self._lock:
            self._check_open("get_status")
            now = self._clock()
            config = self._configs.get(resource)
            view = self._view(resource, config, now)
            logs = None if view.state is None else view.state.rate_logs(config)
            # The newest counted admission leaves last: at a + window_ms.
            reset_ms = logs[0][-1] + config.window_ms if logs is not None and view.total else now
        capacity = view.split.capacity
        return RateLimitStatus(
            remaining=max(0, config.limit - view.total),
            reset_time=datetime.fromtimestamp(reset_ms / 1000, tz=UTC),
            limit=config.limit,
            adaptive=AdaptiveStatus(
                user_reserved=capacity.user_reserved,
                background_max=capacity.background_max,
                background_paused=capacity.background_paused,
                recent_user_activity=capacity.recent_user_activity,
                reason=capacity.reason,
            ),
        )

    def reset(self, resource: str) -> None:
        """Forget the admissions, activity and split of ``resource``: it is as if new."""
        validate_key(resource, what="resource")
        with self._lock:
            self._check_open("reset")
            self._states.pop(resource, None)

    # -- store-wide --------------------------------------------------------------------------

    def get_stats(self) -> RateLimitStats:
        """Resources with state, those with admissions still counted, and how many."""
        with self._lock:
            self._check_open("get_stats")
            now = self._clock()
            counts: list[int] = []
            for state in self._states.values():
                # Each under the window it was recorded for, as a stored item is read.
                _prune(state.admissions, now, state.window_ms)
                counts.append(len(state.admissions))
        return RateLimitStats(
            total_resources=len(counts),
            active_resources=sum(count > 0 for count in counts),
            total_requests=sum(counts),
        )

    def cleanup(self) -> int:
        """Remove the resources whose state has expired; returns how many."""
        with self._lock:
            self._check_open("cleanup")
            now = self._clock()
            gone = [name for name, state in self._states.items() if state.expires_at_ms <= now]
            for name in gone:
                del self._states[name]
        return len(gone)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the state; later calls raise ``StoreClosedError``. Idempotent."""
        with self._lock:
            self._closed = True
            self._states.clear()

    # -- internals (call with the lock held) -------------------------------------------------

    def _view(self, resource: str, config: RateLimitConfig, now_ms: int) -> _View:
        """``resource`` at ``now_ms``, its split recomputed first if it is due.

        A resource without live state (never used, reset, or expired) stores nothing: its
        split is computed from no activity, and kept only once something is recorded.
        """
        state = self._states.get(resource)
        if state is not None and state.expires_at_ms <= now_ms:
            state = None
        if state is None:
            activity = UserActivity(0, 0, 0, 0, None)
            split = _Split(
                compute_capacity(activity, config.limit, self._adaptive, now_ms),
                now_ms,
                config.limit,
            )
            return _View(None, split, 0, 0)
        split = state.split
        if (
            split.limit != config.limit
            or now_ms - split.computed_at_ms >= self._adaptive.recalculation_interval_ms
        ):
            activity = state.activity(self._adaptive, now_ms)
            split = state.split = _Split(
                compute_capacity(activity, config.limit, self._adaptive, now_ms),
                now_ms,
                config.limit,
            )
        logs = state.rate_logs(config)
        if logs is None:
            return _View(state, split, 0, 0)
        admissions, background = logs
        _prune(admissions, now_ms, config.window_ms)
        _prune(background, now_ms, config.window_ms)
        return _View(state, split, len(admissions), len(background))

    def _writable(self, resource: str, config: RateLimitConfig, view: _View, now_ms: int) -> _State:
        """``view``'s state, or a new one holding its split (replacing an expired one)."""
        if view.state is not None:
            return view.state
        state = self._states[resource] = _State(config.window_ms, view.split, now_ms)
        return state

    @staticmethod
    def _admits(view: _View, config: RateLimitConfig, priority: Priority) -> bool:
        """Users need room in the window; background work also room in its share, unpaused."""
        if view.total >= config.limit:
            return False
        if priority == "user":
            return True
        capacity = view.split.capacity
        return not capacity.background_paused and view.background < capacity.background_max

    def _wait_ms(
        self, view: _View, config: RateLimitConfig, priority: Priority, now_ms: int
    ) -> int:
        """Milliseconds until :meth:`_admits` holds, if nothing changes meanwhile; 0 if now.

        The longest of what blocks the request. With ``c >= limit`` counted, the
        ``c - limit + 1`` oldest must leave; the last of them (``admissions[c - limit]``)
        leaves at ``a + window_ms``; the background share likewise. A paused or empty share
        can only change at the next recomputation.
        """
        waits = [0]
        logs = None if view.state is None else view.state.rate_logs(config)
        if view.total >= config.limit:
            if logs is None or config.limit == 0:
                # Nothing leaving would ever make room: report a full window.
                waits.append(config.window_ms)
            else:
                waits.append(logs[0][view.total - config.limit] + config.window_ms - now_ms)
        capacity = view.split.capacity
        if priority == "background":
            if capacity.background_paused or capacity.background_max == 0:
                next_ms = view.split.computed_at_ms + self._adaptive.recalculation_interval_ms
                waits.append(max(1, next_ms - now_ms))
            elif view.background >= capacity.background_max and logs is not None:
                index = view.background - capacity.background_max
                waits.append(logs[1][index] + config.window_ms - now_ms)
        return max(waits)
