"""``DynamoDBAdaptiveRateLimitStore``: a shared limit split between user and background work.

Each resource is one ``AdaptiveStats`` item holding its sliced rate window, its activity over
the monitoring window and the capacity split last computed (the decisions are pure, in
:mod:`.adaptive_state`). The sliced counters are rings (one slot per slice), so every write
is one conditional UpdateItem that sends deltas, never counts it read:

* **admit** within the current slices: add 1 to the current slots if the slices are still
  the ones the caller counted against and the window has room (``slot < limit - frozen
  slots``; for background work also the background share of the split the caller used,
  pinned by ``ComputedAt``);
* **move to a new slice**: zero the slots the new slices reuse and put the admission in the
  new one, if the newest slice is still the one the caller knew, and the old newest slot
  (which other processes may still have been adding to) leaves room. Admissions racing into
  the old slice are never lost: the move does not depend on them unless the window is full;
* **recompute the split** when it is due, in the same write, if ``ComputedAt`` is still the
  one the caller knew: one conditional write decides which process recomputes.

A write returns the item (``ALL_NEW`` when it went through, ``ALL_OLD`` when its condition
failed), so the caller always knows the state as of its last request and a lost race costs
no read. Every process admits on the split stored in the item.

Costs: ``acquire``/``record`` 1 UpdateItem in the steady state; one more when a slice moved or
the split was recomputed by another process since this store's last request, and on a
store's first call for a resource another process created (its PutItem fails and returns the
item). A refusal on a state learned less than one rate slice ago sends nothing; an older one
is refreshed by one GetItem first. ``can_proceed``/``get_wait_time``/``get_status`` 1
consistent GetItem (plus one write when the split is due, so that every process reports the
same one), ``reset`` 1 DeleteItem. The item holds at most 184 small counters (under 1 KB).

As for the rate-limit store, requests must be well faster than a slice (``window / 60``);
see :mod:`.rate_limit`.

All processes must configure a resource alike (limit, window, adaptive config): the split is
recomputed at once by a process with another limit, and a process with another window or
monitoring window restarts those counters.
"""

from __future__ import annotations

import dataclasses
import functools
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
from comic_vine_dynamodb_store.models.base import expiry_actions, ring_actions
from comic_vine_dynamodb_store.stores.adaptive_core import Capacity, Trend, validate_priority
from comic_vine_dynamodb_store.stores.adaptive_state import (
    AdaptiveLayout,
    AdaptiveState,
    Plan,
    StoredCapacity,
    plan,
    remaining,
    ring_of,
    slot_condition_bound,
    state_reset_ms,
    wait_for,
    window_of_ring,
)
from comic_vine_dynamodb_store.stores.base import (
    DynamoDBStore,
    PerResourceLimits,
    admission,
    falls_back,
    refuse,
    skipped,
    status_fallback,
    waiting,
)
from comic_vine_dynamodb_store.stores.contracts import (
    AdaptiveStatus,
    Priority,
    RateLimitStats,
    RateLimitStatus,
)
from comic_vine_dynamodb_store.stores.rate_limit_core import SliceLayout, WindowState, counted

__all__ = ["DynamoDBAdaptiveRateLimitStore"]

_MAX_ATTEMPTS = 8


@dataclasses.dataclass(frozen=True, slots=True)
class _Stored:
    """The layout and newest slices the item holds, as written (conditions pin them)."""

    window_ms: int
    current_slice: int
    activity_ms: int
    activity_slice: int
    expires_at_ms: int | None
    computed_at_ms: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class _Known:
    """What this store last learned of a resource: the state read for ``layout`` (None: no
    item), what the item held as written, whether its counters fit ``layout``, and when it
    learned it."""

    state: AdaptiveState | None
    stored: _Stored | None
    fits: bool
    learned_at_ms: int
    layout: AdaptiveLayout | None = None


_UNKNOWN = _Known(None, None, True, -(2**62))


@dataclasses.dataclass(frozen=True, slots=True)
class _Admission:
    """One request to add in place: its priority, whether the window's room is a condition
    (``acquire``) or not (``record``), and the instant it was decided at."""

    priority: Priority
    enforce: bool
    now_ms: int


class DynamoDBAdaptiveRateLimitStore(
    PerResourceLimits, DynamoDBStore[AdaptiveRateLimitStoreOptions]
):
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

    def _layout(self, resource: str) -> tuple[RateLimitConfig, AdaptiveLayout]:
        config = self.get_resource_config(resource)
        return config, AdaptiveLayout.of(config.window_ms, self.options.adaptive_config)

    # -- admission -------------------------------------------------------------------------

    @falls_back(admission)
    def acquire(self, resource: str, priority: Priority = "background") -> bool:
        """Admit one ``priority`` request if it may go, recording it in the same write."""
        return self._count(resource, priority, "acquire", enforce=True)

    @falls_back(skipped)
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
        # Every attempt decides as of the call's start: an admission may take effect at any
        # instant of the call, and the start's slice is the oldest it may be counted in. So a
        # retry that learns another writer already moved the window on to that slice (or
        # beyond) adds to it instead of moving it again: with slow requests, racing writers
        # would otherwise keep moving the window under each other.
        started = self._now_ms()
        for _ in range(_MAX_ATTEMPTS):
            now = started
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

        ``admission`` says what the admitted request is; without it nothing is counted (the
        write only shares a recomputed split).
        """
        items = self._items
        pk, sk = AdaptiveStats.key_of(self._namespace, resource)
        now = self._now_ms()
        if known.state is None or known.stored is None:
            attributes = self._whole(resource, layout, decision.after).serialize()
            condition = items.pk.does_not_exist() | (items.expires_at_ms <= now)
            outcome = self._run(
                operation,
                functools.partial(
                    items.put_unless_blocked, attributes, condition=condition, raw=True
                ),
                key=resource,
            )
            if not outcome.blocked:
                return self._remember(resource, layout, decision.after, now), True
        else:
            if known.fits:
                update = self._delta(layout, known.state, known.stored, decision, admission)
            else:
                update = self._rewrite(resource, layout, known.stored, decision)
            outcome = self._run(
                operation,
                functools.partial(
                    items.update_unless_blocked, pk, sk, **update, return_new=True, raw=True
                ),
                key=resource,
            )
        return self._learn(resource, layout, outcome.raw, now), not outcome.blocked

    def _delta(
        self,
        layout: AdaptiveLayout,
        before: AdaptiveState,
        stored: _Stored,
        decision: Plan,
        admission: _Admission | None,
    ) -> dict[str, Any]:
        """The UpdateItem moving ``before`` to ``decision.after`` by deltas: actions and the
        condition under which they are right."""
        items = self._items
        current, after = decision.current, decision.after
        condition = (
            (items.current_slice == stored.current_slice)
            & (items.activity_slice == stored.activity_slice)
            & (items.window_ms == layout.rate.window_ms)
            & (items.activity_ms == layout.activity.window_ms)
        )
        user = admission is not None and admission.priority == "user"
        counts = admission is not None
        actions: list[Any] = [
            *_ring_actions(items.total_ring, before.total, after.total, layout.rate),
            *_ring_actions(items.background_ring, before.background, after.background, layout.rate),
            *_ring_actions(
                items.user_activity_ring, before.user_activity, after.user_activity, layout.activity
            ),
            *_ring_actions(
                items.background_activity_ring,
                before.background_activity,
                after.background_activity,
                layout.activity,
            ),
        ]
        if after.total.current_slice != before.total.current_slice:
            actions.append(items.current_slice.set(after.total.current_slice))
        if after.user_activity.current_slice != before.user_activity.current_slice:
            actions.append(items.activity_slice.set(after.user_activity.current_slice))
        if user:
            actions.append(items.last_user_at_ms.set(cast(int, after.last_user_ms)))
        if counts:
            expires = after.expires_at_ms(layout)
            if stored.expires_at_ms is None or expires > stored.expires_at_ms:
                actions += expiry_actions(
                    items,
                    expires,
                    moved_from_ms=stored.expires_at_ms,
                )
        stored_split = current.capacity
        if decision.recomputed and stored_split is not None:
            actions += _capacity_actions(items, stored_split)
            condition &= (
                items.computed_at_ms.does_not_exist()
                if stored.computed_at_ms is None
                else items.computed_at_ms == stored.computed_at_ms
            )
        if admission is not None and admission.enforce and stored_split is not None:
            now = admission.now_ms
            bound = slot_condition_bound(
                current.total, stored.current_slice, layout.rate, stored_split.limit, now
            )
            if bound is not None:
                slot = stored.current_slice % (layout.rate.history_slices + 1)
                condition &= items.total_ring[slot] < bound
            if not user:
                share = stored_split.capacity.background_max
                bound = slot_condition_bound(
                    current.background, stored.current_slice, layout.rate, share, now
                )
                if bound is not None:
                    slot = stored.current_slice % (layout.rate.history_slices + 1)
                    condition &= items.background_ring[slot] < bound
                if not decision.recomputed:
                    # The split this admission was decided on must still be the one in force.
                    condition &= items.computed_at_ms == stored_split.computed_at_ms
        return {"actions": actions, "condition": condition}

    def _rewrite(
        self, resource: str, layout: AdaptiveLayout, stored: _Stored, decision: Plan
    ) -> dict[str, Any]:
        """The UpdateItem writing the state whole: the item's counters were made for
        another window, so they restart (a reconfiguration, not the steady state)."""
        items = self._items
        whole = self._whole(resource, layout, decision.after)
        actions = [
            getattr(items, name).set(getattr(whole, name))
            for name in _STATE_ATTRIBUTES
            if getattr(whole, name) is not None
        ]
        condition = (
            (items.window_ms == stored.window_ms)
            & (items.current_slice == stored.current_slice)
            & (items.activity_ms == stored.activity_ms)
            & (items.activity_slice == stored.activity_slice)
        )
        return {"actions": actions, "condition": condition}

    def _whole(self, resource: str, layout: AdaptiveLayout, state: AdaptiveState) -> AdaptiveStats:
        """The item holding ``state`` whole."""
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
            expires_at_ms=state.expires_at_ms(layout),
            window_ms=layout.rate.window_ms,
            current_slice=state.total.current_slice,
            total_ring=ring_of(state.total, layout.rate),
            background_ring=ring_of(state.background, layout.rate),
            activity_ms=layout.activity.window_ms,
            activity_slice=state.user_activity.current_slice,
            user_activity_ring=ring_of(state.user_activity, layout.activity),
            background_activity_ring=ring_of(state.background_activity, layout.activity),
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
        return refuse(
            self,
            store=self.store_name,
            table=self.table_name,
            resource=resource,
            config=config,
            wait_ms=lambda: wait_for(state, layout, config.limit, priority, now),
            priority=priority,
        )

    # -- state ---------------------------------------------------------------------------

    def _remember(
        self, resource: str, layout: AdaptiveLayout, state: AdaptiveState, now: int
    ) -> _Known:
        """Remember ``state`` as just written whole by this store."""
        stored = _Stored(
            window_ms=layout.rate.window_ms,
            current_slice=state.total.current_slice,
            activity_ms=layout.activity.window_ms,
            activity_slice=state.user_activity.current_slice,
            expires_at_ms=state.expires_at_ms(layout),
            computed_at_ms=None if state.capacity is None else state.capacity.computed_at_ms,
        )
        known = _Known(state, stored, True, now, layout)
        self._known[resource] = known
        return known

    def _learn(
        self, resource: str, layout: AdaptiveLayout, item: Mapping[str, Any] | None, now: int
    ) -> _Known:
        known = dataclasses.replace(_state_of(item, layout, now), layout=layout)
        self._known[resource] = known
        return known

    def _read(self, operation: str, resource: str, layout: AdaptiveLayout) -> _Known:
        pk, sk = AdaptiveStats.key_of(self._namespace, resource)
        connection = self._items._get_connection()

        def get() -> Mapping[str, Any] | None:
            found: Mapping[str, Any] | None = connection.get_item(
                pk, range_key=sk, consistent_read=True
            ).get("Item")
            return found

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

    @falls_back(admission)
    def can_proceed(self, resource: str, priority: Priority = "background") -> bool:
        """True if a ``priority`` request may go now (nothing is recorded)."""
        return self._current("can_proceed", resource, priority)[2].admitted

    @falls_back(waiting)
    def get_wait_time(self, resource: str, priority: Priority = "background") -> int:
        """Milliseconds until a ``priority`` request may go; 0 when it may now."""
        config, layout, decision, now = self._current("get_wait_time", resource, priority)
        return wait_for(decision.current, layout, config.limit, priority, now)

    @falls_back(status_fallback)
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
                state = _state_of(item.serialize(), layout, now).state
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
    "window_ms",
    "current_slice",
    "total_ring",
    "background_ring",
    "activity_ms",
    "activity_slice",
    "user_activity_ring",
    "background_activity_ring",
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


def _ring_actions(
    ring: Any, before: WindowState, after: WindowState, layout: SliceLayout
) -> list[Any]:
    """Actions taking the stored ring of ``before`` to ``after`` (see ``ring_actions``)."""
    return ring_actions(
        ring,
        size=layout.history_slices + 1,
        from_slice=before.current_slice,
        from_count=before.current,
        to_slice=after.current_slice,
        to_count=after.current,
    )


def _capacity_actions(items: Any, stored: StoredCapacity) -> list[Any]:
    """Actions storing a newly computed split."""
    split = stored.capacity
    return [
        items.user_reserved.set(split.user_reserved),
        items.background_max.set(split.background_max),
        items.background_paused.set(split.background_paused),
        items.recent_user_activity.set(split.recent_user_activity),
        items.trend.set(split.trend.value),
        items.reason.set(split.reason),
        items.computed_at_ms.set(stored.computed_at_ms),
        items.computed_for_limit.set(stored.limit),
    ]


def _number(item: Mapping[str, Any], name: str) -> int | None:
    value = item.get(name)
    return None if value is None or "N" not in value else int(value["N"])


def _ring(item: Mapping[str, Any], name: str) -> tuple[int, ...]:
    value = item.get(name)
    return () if value is None else tuple(int(slot["N"]) for slot in value.get("L", ()))


def _ring_pair(
    item: Mapping[str, Any],
    names: tuple[str, str],
    window_ms: int,
    current_slice: int,
    layout: SliceLayout,
) -> tuple[WindowState, WindowState] | None:
    """The two windows stored as rings ``names``, or None if they were made for another
    window (their counts then restart)."""
    first, second = _ring(item, names[0]), _ring(item, names[1])
    size = layout.history_slices + 1
    if window_ms != layout.window_ms or len(first) != size or len(second) != size:
        return None
    return window_of_ring(first, current_slice), window_of_ring(second, current_slice)


def _state_of(item: Mapping[str, Any] | None, layout: AdaptiveLayout, now: int) -> _Known:
    """What ``item`` (as DynamoDB returned it) says, read for ``layout``: counters of another
    window start afresh. Decoded by hand: it is on every admission's path, and a generic
    decoder spends more time on its 184 numbers than the request takes."""
    expires = None if item is None else _number(item, "ExpiresAt")
    if item is None or (expires is not None and now >= expires):
        return _Known(None, None, True, now)
    stored = _Stored(
        window_ms=_number(item, "WindowMs") or 0,
        current_slice=_number(item, "CurSlice") or 0,
        activity_ms=_number(item, "ActivityMs") or 0,
        activity_slice=_number(item, "ActSlice") or 0,
        expires_at_ms=expires,
        computed_at_ms=_number(item, "ComputedAt"),
    )
    fresh = AdaptiveState.fresh(layout, now)
    rate = _ring_pair(item, ("Tot", "Bg"), stored.window_ms, stored.current_slice, layout.rate)
    activity = _ring_pair(
        item, ("ActUser", "ActBg"), stored.activity_ms, stored.activity_slice, layout.activity
    )
    fits = rate is not None and activity is not None
    total, background = rate or (fresh.total, fresh.background)
    user_activity, background_activity = activity or (
        fresh.user_activity,
        fresh.background_activity,
    )
    split: StoredCapacity | None = None
    reserved = _number(item, "UserReserved")
    if stored.computed_at_ms is not None and reserved is not None:
        split = StoredCapacity(
            Capacity(
                user_reserved=reserved,
                background_max=_number(item, "BackgroundMax") or 0,
                background_paused=bool(item.get("BackgroundPaused", {}).get("BOOL", False)),
                recent_user_activity=_number(item, "RecentUserActivity") or 0,
                trend=Trend(item.get("Trend", {}).get("S", Trend.NONE.value)),
                reason=item.get("Reason", {}).get("S", ""),
            ),
            computed_at_ms=stored.computed_at_ms,
            limit=_number(item, "ComputedForLimit") or 0,
        )
    state = AdaptiveState(
        total=total,
        background=background,
        user_activity=user_activity,
        background_activity=background_activity,
        last_user_ms=_number(item, "LastUserAt"),
        capacity=split,
    )
    return _Known(state, stored, fits, now)
