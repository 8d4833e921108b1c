"""``DynamoDBAdaptiveRateLimitStore``: a shared limit split between user and background work.

Each resource is one ``AdaptiveStats`` item holding its sliced rate window, its activity over
the monitoring window and the capacity split last computed (the decisions are pure, in
:mod:`.adaptive_state`). Every write is one conditional UpdateItem:

* **admit** within the current slices: ``ADD`` to the counters if the slices are still the
  ones the caller counted against and the window has room (``Cur < limit - frozen history``;
  for background work also ``CurBg < background_max - frozen history`` on the split the caller
  used, pinned by ``ComputedAt``);
* **roll** a slice, or **recompute** the split when it is due: the whole new state, written if
  ``Version`` is still the one the caller read (a compare-and-set), with the admission in the
  same write.

A write returns the item (``ALL_NEW`` when it went through, ``ALL_OLD`` when its condition
failed), so the caller always knows the state as of its last request and a lost race costs
no read. The split is recomputed by whichever process first writes after it is due; every
other process uses that one until the next is due, so all processes admit on the same split.

Costs: ``acquire``/``record`` 1 UpdateItem in the steady state; one more when a slice rolls or
the split is due and another process wrote since this store's last request. A refusal on a
state learned less than one rate slice ago sends nothing; an older one is refreshed by one
GetItem first. ``can_proceed``/``get_wait_time``/``get_status`` 1 consistent GetItem (plus one
write when the split is due, so that every process reports the same one), ``reset`` 1
DeleteItem. The item holds at most 182 small counters (under 1 KB: 1 write unit per write).

All processes must configure a resource alike (limit, window, adaptive config): the split is
recomputed at once by a process with another limit, and a process with another window or
monitoring window restarts those counters.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from comic_vine_dynamodb_store.clock import Clock, system_clock_ms
from comic_vine_dynamodb_store.config import (
    AdaptiveRateLimitStoreOptions,
    RateLimitConfig,
    RateLimitConfigs,
)
from comic_vine_dynamodb_store.keys import validate_key
from comic_vine_dynamodb_store.models import AdaptiveStats
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.adaptive_core import Capacity, Trend, validate_priority
from comic_vine_dynamodb_store.stores.adaptive_state import (
    AdaptiveLayout,
    AdaptiveState,
    Plan,
    StoredCapacity,
    plan,
    remaining,
    state_reset_ms,
    wait_for,
)
from comic_vine_dynamodb_store.stores.base import DynamoDBStore
from comic_vine_dynamodb_store.stores.contracts import (
    AdaptiveStatus,
    Priority,
    RateLimitStats,
    RateLimitStatus,
)
from comic_vine_dynamodb_store.stores.rate_limit_core import (
    WindowState,
    counted,
    history_allowance,
)

__all__ = ["DynamoDBAdaptiveRateLimitStore"]

_MAX_ATTEMPTS = 8
_VERSION_BITS = 52  # a fresh item's version is random: a reset and re-created item never
# carries a version a stale writer still holds


@dataclasses.dataclass(frozen=True, slots=True)
class _Known:
    """What this store last learned of a resource: the state (None: no item), the item's
    version, whether the stored counters fit the current layout, and when it learned it."""

    state: AdaptiveState | None
    version: int | None
    fits: bool
    learned_at_ms: int
    layout: AdaptiveLayout | None = None
    expires_at_ms: int | None = None


_UNKNOWN = _Known(None, None, True, -(2**62))


@dataclasses.dataclass(frozen=True, slots=True)
class _Admission:
    """One request to add in place: its priority, whether the window's room is a condition
    (``acquire``) or not (``record``), and the instant it was decided at."""

    priority: Priority
    enforce: bool
    now_ms: int


class DynamoDBAdaptiveRateLimitStore(DynamoDBStore[AdaptiveRateLimitStoreOptions]):
    """A sliding-window limit per resource, split adaptively between user and background work.

    Users are admitted whenever the window has room; background work only within the share
    the split leaves it (``background_max``) and not while it is paused. ``default_config``
    and ``resource_configs`` give the limits, ``adaptive_config`` the split's rules.
    """

    options_model: ClassVar[type[AdaptiveRateLimitStoreOptions]] = AdaptiveRateLimitStoreOptions
    store_name: ClassVar[str] = "adaptive_rate_limit"
    item_model: ClassVar[type[AdaptiveStats]] = AdaptiveStats

    def __init__(
        self,
        *,
        options: AdaptiveRateLimitStoreOptions | None = None,
        clock: Clock = system_clock_ms,
        **kwargs: Any,
    ) -> None:
        super().__init__(options=options, clock=clock, **kwargs)
        self._items = self._model(AdaptiveStats)
        self._configs = RateLimitConfigs(self.options.default_config, self.options.resource_configs)
        self._known: dict[str, _Known] = {}
        self._start_background("cleanup", self.options.cleanup_interval_ms, self.cleanup)

    # -- configuration ---------------------------------------------------------------------

    def set_resource_config(
        self, resource: str, config: RateLimitConfig | Mapping[str, Any]
    ) -> None:
        """Use ``config`` for ``resource`` from now on (validated first)."""
        validate_key(resource, what="resource")
        self._configs.set(resource, config)

    def get_resource_config(self, resource: str) -> RateLimitConfig:
        """The config in force for ``resource``."""
        return self._configs.get(resource)

    @property
    def resource_configs(self) -> dict[str, RateLimitConfig]:
        """A copy of the per-resource overrides."""
        return self._configs.overrides()

    def _layout(self, resource: str) -> tuple[RateLimitConfig, AdaptiveLayout]:
        config = self.get_resource_config(resource)
        return config, AdaptiveLayout.of(config.window_ms, self.options.adaptive_config)

    # -- admission -------------------------------------------------------------------------

    def acquire(self, resource: str, priority: Priority = "background") -> bool:
        """Admit one ``priority`` request if it may go, recording it in the same write."""
        return self._count(resource, priority, "acquire", enforce=True)

    def record(self, resource: str, priority: Priority = "background") -> None:
        """Count one ``priority`` request whether or not it would have been admitted."""
        self._count(resource, priority, "record", enforce=False)

    def _count(self, resource: str, priority: Priority, operation: str, *, enforce: bool) -> bool:
        validate_key(resource, what="resource")
        priority = validate_priority(priority)
        self._check_open(operation)  # refusals from known state send nothing, so check here
        config, layout = self._layout(resource)
        known = self._known.get(resource, _UNKNOWN)
        if known.layout != layout:
            known = _UNKNOWN  # counted in slices of another size: read it afresh
        refreshed = False
        for _ in range(_MAX_ATTEMPTS):
            now = self._now_ms()
            decision = plan(
                known.state, layout, config.limit, priority, now, enforce=enforce, count=True
            )
            if not decision.admitted:
                if not refreshed and now - known.learned_at_ms >= layout.rate.slice_ms:
                    # Refusing on old knowledge (another process may have reset the window):
                    # read once, then decide on what the table holds.
                    known = self._read(operation, resource, layout)
                    refreshed = True
                    continue
                if decision.recomputed and known.state is not None:
                    # Share the new split even though this call is refused.
                    known, written = self._write(operation, resource, layout, known, decision)
                    if not written:
                        continue
                return self._refuse(
                    resource, config, layout, priority, state=decision.current, now=now
                )
            admission = _Admission(priority, enforce, now)
            known, written = self._write(
                operation, resource, layout, known, decision, admission=admission
            )
            if written:
                return True
        # Still racing after every attempt: refusing is the side that never over-admits.
        if enforce:
            now = self._now_ms()
            state = known.state
            return self._refuse(resource, config, layout, priority, state=state, now=now)
        return False

    def _write(
        self,
        operation: str,
        resource: str,
        layout: AdaptiveLayout,
        known: _Known,
        decision: Plan,
        *,
        admission: _Admission | None = None,
    ) -> tuple[_Known, bool]:
        """Write ``decision`` (one request); the state learned, and whether it went through.

        ``admission`` says what one admitted request adds, for the in-place write; without
        it the state is written whole.
        """
        items = self._items
        pk, sk = AdaptiveStats.key_of(self._namespace, resource)
        now = self._now_ms()
        if known.state is None or known.version is None:
            version = secrets.randbits(_VERSION_BITS)
            attributes = self._whole(resource, layout, decision.after, version).serialize()
            condition = items.pk.does_not_exist() | (items.expires_at_ms <= now)
            outcome = self._run(
                operation,
                functools.partial(items.put_unless_blocked, attributes, condition=condition),
                key=resource,
            )
            if not outcome.blocked:
                return self._remember(resource, layout, decision.after, version, now), True
        elif admission is None or decision.rolled or decision.recomputed or not known.fits:
            # A write that admits nothing (a split shared on a refusal or a read) keeps the
            # expiry: only admissions keep a resource's state alive.
            keep = known.expires_at_ms if decision.after is decision.current else None
            whole = self._whole(
                resource, layout, decision.after, known.version + 1, expires_at_ms=keep
            )
            actions = [
                getattr(items, name).set(getattr(whole, name))
                for name in _STATE_ATTRIBUTES
                if getattr(whole, name) is not None
            ]
            actions += [
                getattr(items, name).remove()
                for name in _STATE_ATTRIBUTES
                if getattr(whole, name) is None
            ]
            outcome = self._run(
                operation,
                functools.partial(
                    items.update_unless_blocked,
                    pk,
                    sk,
                    actions=actions,
                    condition=items.version == known.version,
                    return_new=True,
                ),
                key=resource,
            )
        else:
            outcome = self._run(
                operation,
                functools.partial(
                    items.update_unless_blocked,
                    pk,
                    sk,
                    **self._admission(layout, decision, admission),
                    return_new=True,
                ),
                key=resource,
            )
        return self._learn(resource, layout, outcome.item, now), not outcome.blocked

    def _admission(
        self, layout: AdaptiveLayout, decision: Plan, admission: _Admission
    ) -> dict[str, Any]:
        """Actions and condition adding one admission to the current slices in place."""
        items = self._items
        current, after = decision.current, decision.after
        now = admission.now_ms
        condition = (
            (items.current_slice == current.total.current_slice)
            & (items.activity_slice == current.user_activity.current_slice)
            & (items.window_ms == layout.rate.window_ms)
            & (items.activity_ms == layout.activity.window_ms)
        )
        actions: list[Any] = [items.version.add(1), items.current.add(1)]
        user = admission.priority == "user"
        stored = current.capacity
        if user:
            actions += [
                items.activity_user.add(1),
                items.last_user_at_ms.set(cast(int, after.last_user_ms)),
            ]
        else:
            actions += [items.current_background.add(1), items.activity_background.add(1)]
        if admission.enforce and stored is not None:
            allowance = history_allowance(current.total, layout.rate, stored.limit, now)
            condition &= items.current < allowance
            if not user:
                share = history_allowance(
                    current.background, layout.rate, stored.capacity.background_max, now
                )
                condition &= (items.current_background < share) & (
                    items.computed_at_ms == stored.computed_at_ms
                )
        return {"actions": actions, "condition": condition}

    def _whole(
        self,
        resource: str,
        layout: AdaptiveLayout,
        state: AdaptiveState,
        version: int,
        *,
        expires_at_ms: int | None = None,
    ) -> AdaptiveStats:
        """The item holding ``state`` whole, expiring at ``expires_at_ms`` (default: when
        the state's newest slices have been retained long enough)."""
        stored = state.capacity
        capacity: dict[str, Any] = {}
        if stored is not None:
            split = stored.capacity
            capacity = {
                "user_reserved": split.user_reserved,
                "background_max": split.background_max,
                "background_paused": split.background_paused,
                "recent_user_activity": split.recent_user_activity,
                "trend": split.trend.value,
                "reason": split.reason,
                "computed_at_ms": stored.computed_at_ms,
                "computed_for_limit": stored.limit,
            }
        return self._items.build(
            self._namespace,
            resource,
            expires_at_ms=state.expires_at_ms(layout) if expires_at_ms is None else expires_at_ms,
            version=version,
            window_ms=layout.rate.window_ms,
            current_slice=state.total.current_slice,
            current=state.total.current,
            current_background=state.background.current,
            history=list(state.total.history),
            history_background=list(state.background.history),
            activity_ms=layout.activity.window_ms,
            activity_slice=state.user_activity.current_slice,
            activity_user=state.user_activity.current,
            activity_background=state.background_activity.current,
            activity_history_user=list(state.user_activity.history),
            activity_history_background=list(state.background_activity.history),
            last_user_at_ms=state.last_user_ms,
            **capacity,
        )

    def _refuse(
        self,
        resource: str,
        config: RateLimitConfig,
        layout: AdaptiveLayout,
        priority: Priority,
        *,
        state: AdaptiveState | None,
        now: int,
    ) -> bool:
        signals.send(
            signals.rate_limited,
            self,
            lambda: signals.RateLimitedEvent(
                store=self.store_name,
                table=self.table_name,
                resource=resource,
                limit=config.limit,
                window_ms=config.window_ms,
                wait_ms=wait_for(state, layout, config.limit, priority, now),
                priority=priority,
            ),
        )
        return False

    # -- state ---------------------------------------------------------------------------

    def _remember(
        self,
        resource: str,
        layout: AdaptiveLayout,
        state: AdaptiveState | None,
        version: int | None,
        now: int,
    ) -> _Known:
        known = _Known(state, version, True, now, layout)
        self._known[resource] = known
        return known

    def _learn(
        self, resource: str, layout: AdaptiveLayout, item: AdaptiveStats | None, now: int
    ) -> _Known:
        known = dataclasses.replace(_state_of(item, layout, now), layout=layout)
        self._known[resource] = known
        return known

    def _read(self, operation: str, resource: str, layout: AdaptiveLayout) -> _Known:
        pk, sk = AdaptiveStats.key_of(self._namespace, resource)

        def get() -> AdaptiveStats | None:
            try:
                return self._items.get(pk, sk, consistent_read=True)
            except self._items.DoesNotExist:
                return None

        item = self._run(operation, get, key=resource)
        return self._learn(resource, layout, item, self._now_ms())

    def _current(
        self, operation: str, resource: str, priority: Priority
    ) -> tuple[RateLimitConfig, AdaptiveLayout, Plan, int]:
        """Read ``resource`` and decide a ``priority`` request on it, writing the split first
        if it is due (so every process reports the one split)."""
        validate_key(resource, what="resource")
        priority = validate_priority(priority)
        config, layout = self._layout(resource)
        known = self._read(operation, resource, layout)
        for _ in range(_MAX_ATTEMPTS):
            now = self._now_ms()
            decision = plan(
                known.state, layout, config.limit, priority, now, enforce=True, count=False
            )
            if not (decision.recomputed and known.state is not None):
                return config, layout, decision, now
            known, written = self._write(operation, resource, layout, known, decision)
            if written:
                break
        now = self._now_ms()
        decision = plan(known.state, layout, config.limit, priority, now, enforce=True, count=False)
        return config, layout, decision, now

    # -- reading -------------------------------------------------------------------------

    def can_proceed(self, resource: str, priority: Priority = "background") -> bool:
        """True if a ``priority`` request may go now (nothing is recorded)."""
        return self._current("can_proceed", resource, priority)[2].admitted

    def get_wait_time(self, resource: str, priority: Priority = "background") -> int:
        """Milliseconds until a ``priority`` request may go; 0 when it may now."""
        config, layout, decision, now = self._current("get_wait_time", resource, priority)
        return wait_for(decision.current, layout, config.limit, priority, now)

    def get_status(self, resource: str) -> RateLimitStatus:
        """Room left in the window, when it empties, the limit, and the current split."""
        config, layout, decision, now = self._current("get_status", resource, "user")
        state = decision.current
        stored = state.capacity
        assert stored is not None  # plan() always leaves a current split
        split = stored.capacity
        return RateLimitStatus(
            remaining=remaining(state, layout, config.limit, now),
            reset_time=datetime.fromtimestamp(state_reset_ms(state, layout, now) / 1000, tz=UTC),
            limit=config.limit,
            adaptive=AdaptiveStatus(
                user_reserved=split.user_reserved,
                background_max=split.background_max,
                background_paused=split.background_paused,
                recent_user_activity=split.recent_user_activity,
                reason=split.reason,
            ),
        )

    def reset(self, resource: str) -> None:
        """Forget ``resource``'s admissions, activity and split."""
        validate_key(resource, what="resource")
        pk, sk = AdaptiveStats.key_of(self._namespace, resource)
        self._run("reset", self._items(pk, sk).delete, key=resource)
        self._known.pop(resource, None)

    # -- store-wide ----------------------------------------------------------------------

    def get_stats(self) -> RateLimitStats:
        """Resources with state, those with admissions still counted, and how many."""
        now = self._now_ms()

        def count() -> RateLimitStats:
            total = active = requests = 0
            for item in self._items.iter_index(self._namespace):
                total += 1
                layout = AdaptiveLayout.of(int(item.window_ms), self.options.adaptive_config)
                state = _state_of(item, layout, now).state
                in_window = 0 if state is None else counted(state.total, layout.rate, now)
                active += in_window > 0
                requests += in_window
            return RateLimitStats(
                total_resources=total, active_resources=active, total_requests=requests
            )

        return self._run("get_stats", count, bounded=False)

    def cleanup(self) -> int:
        """Remove resources whose state has expired; returns how many."""
        return self._remove_expired(self._items)


_STATE_ATTRIBUTES = (
    "version",
    "window_ms",
    "current_slice",
    "current",
    "current_background",
    "history",
    "history_background",
    "activity_ms",
    "activity_slice",
    "activity_user",
    "activity_background",
    "activity_history_user",
    "activity_history_background",
    "last_user_at_ms",
    "user_reserved",
    "background_max",
    "background_paused",
    "recent_user_activity",
    "trend",
    "reason",
    "computed_at_ms",
    "computed_for_limit",
    "expires_at_ms",
    "ttl",
    "gsi1sk",
)


def _state_of(item: AdaptiveStats | None, layout: AdaptiveLayout, now: int) -> _Known:
    """What ``item`` says, read for ``layout``: counters of another window start afresh."""
    if item is None or item.is_expired(now):
        return _Known(None, None, True, now)
    fresh = AdaptiveState.fresh(layout, now)
    fits = True
    total, background = fresh.total, fresh.background
    history = AdaptiveStats.ints(item.history)
    history_background = AdaptiveStats.ints(item.history_background)
    if (
        int(item.window_ms) == layout.rate.window_ms
        and len(history) == layout.rate.history_slices
        and len(history_background) == layout.rate.history_slices
    ):
        current_slice = int(item.current_slice)
        total = WindowState(current_slice, int(item.current), history)
        background = WindowState(current_slice, int(item.current_background), history_background)
    else:
        fits = False
    user_activity, background_activity = fresh.user_activity, fresh.background_activity
    history_user = AdaptiveStats.ints(item.activity_history_user)
    history_bg = AdaptiveStats.ints(item.activity_history_background)
    if (
        int(item.activity_ms) == layout.activity.window_ms
        and len(history_user) == layout.activity.history_slices
        and len(history_bg) == layout.activity.history_slices
    ):
        activity_slice = int(item.activity_slice)
        user_activity = WindowState(activity_slice, int(item.activity_user), history_user)
        background_activity = WindowState(activity_slice, int(item.activity_background), history_bg)
    else:
        fits = False
    stored: StoredCapacity | None = None
    if item.computed_at_ms is not None and item.user_reserved is not None:
        stored = StoredCapacity(
            Capacity(
                user_reserved=int(item.user_reserved),
                background_max=int(item.background_max),
                background_paused=bool(item.background_paused),
                recent_user_activity=int(item.recent_user_activity),
                trend=Trend(item.trend or Trend.NONE.value),
                reason=item.reason or "",
            ),
            computed_at_ms=int(item.computed_at_ms),
            limit=int(item.computed_for_limit),
        )
    last_user = item.last_user_at_ms
    state = AdaptiveState(
        total=total,
        background=background,
        user_activity=user_activity,
        background_activity=background_activity,
        last_user_ms=None if last_user is None else int(last_user),
        capacity=stored,
    )
    return _Known(state, int(item.version), fits, now, expires_at_ms=item.expires_at_ms_int)
