"""The adaptive limiter's per-resource state as pure arithmetic: windows, activity, capacity.

One resource's state (one DynamoDB item) holds:

* the **rate window** of the resource's :class:`RateLimitConfig`, as two sliced counters that
  share their current slice (see :mod:`.rate_limit_core`): every admission, and background
  admissions alone (user admissions are the difference);
* the **activity** over the monitoring window, the same way with ``ACTIVITY_SLICES`` slices:
  user admissions and background admissions, plus the time of the newest user admission (it
  outlives the monitoring window: sustained inactivity is measured from it);
* the **capacity** last computed from that activity (:func:`.adaptive_core.compute_capacity`),
  with when and for which limit, so every process uses the same split until it is
  recomputed, at most every ``recalculation_interval_ms``.

:func:`plan` is the whole decision of one call: roll the slices to ``now``, recompute the
capacity if it is due, decide the admission, and say what the state becomes. Admission
(``total`` and ``background`` counted the way :func:`.rate_limit_core.counted` does):

* user: ``total < limit``, whatever the split: users are never starved while there is room;
* background: ``total < limit``, ``background < background_max`` and not paused.

So user and background admissions together never exceed the limit in any window, and the
split only caps background work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from comic_vine_dynamodb_store.config import AdaptiveConfig
from comic_vine_dynamodb_store.stores.adaptive_core import (
    Capacity,
    UserActivity,
    compute_capacity,
)
from comic_vine_dynamodb_store.stores.contracts import Priority
from comic_vine_dynamodb_store.stores.rate_limit_core import (
    SliceLayout,
    WindowState,
    counted,
    fresh_state,
    reset_ms,
    ring_of,
    roll,
    room,
    slot_condition_bound,
    wait_ms,
    window_of_ring,
)

__all__ = [
    "ACTIVITY_SLICES",
    "AdaptiveLayout",
    "AdaptiveState",
    "Plan",
    "StoredCapacity",
    "activity_of",
    "admits",
    "advance",
    "plan",
    "remaining",
    "ring_of",
    "slot_condition_bound",
    "state_reset_ms",
    "wait_for",
    "window_of_ring",
]

ACTIVITY_SLICES = 30
"""Slices of the monitoring window; a multiple of 3, so its thirds are whole slices."""


@dataclass(frozen=True, slots=True)
class AdaptiveLayout:
    """How one resource's windows are cut, from its rate limit and the adaptive config."""

    rate: SliceLayout
    activity: SliceLayout
    config: AdaptiveConfig
    retention_ms: int
    """How long a state outlives its newest slice: long enough to still count every admission
    and to tell "users idle for a sustained period" from "no user ever"."""

    @classmethod
    def of(cls, window_ms: int, config: AdaptiveConfig) -> AdaptiveLayout:
        """The layout for a rate window of ``window_ms`` under ``config``."""
        return cls(
            rate=SliceLayout.for_window(window_ms),
            activity=SliceLayout.for_window(config.monitoring_window_ms, ACTIVITY_SLICES),
            config=config,
            retention_ms=max(
                window_ms,
                config.monitoring_window_ms,
                2 * config.sustained_inactivity_threshold_ms,
            ),
        )


@dataclass(frozen=True, slots=True)
class StoredCapacity:
    """A computed split, when it was computed and for which limit."""

    capacity: Capacity
    computed_at_ms: int
    limit: int

    def is_due(self, limit: int, config: AdaptiveConfig, now_ms: int) -> bool:
        """Whether it must be recomputed before use at ``now_ms``."""
        return (
            self.limit != limit or now_ms - self.computed_at_ms >= config.recalculation_interval_ms
        )

    def next_due_ms(self, config: AdaptiveConfig) -> int:
        """When it becomes due (epoch ms)."""
        return self.computed_at_ms + config.recalculation_interval_ms


@dataclass(frozen=True, slots=True)
class AdaptiveState:
    """One resource's counters; ``total``/``background`` share a current slice, as do the two
    activity counters."""

    total: WindowState
    background: WindowState
    user_activity: WindowState
    background_activity: WindowState
    last_user_ms: int | None
    capacity: StoredCapacity | None

    @classmethod
    def fresh(cls, layout: AdaptiveLayout, now_ms: int) -> AdaptiveState:
        """A resource nothing was ever counted for."""
        rate = fresh_state(layout.rate, layout.rate.slice_of(now_ms))
        activity = fresh_state(layout.activity, layout.activity.slice_of(now_ms))
        return cls(rate, rate, activity, activity, None, None)

    def expires_at_ms(self, layout: AdaptiveLayout) -> int:
        """When nothing of this state matters any more (the item's ``ExpiresAt``)."""
        newest = max(
            (self.total.current_slice + 1) * layout.rate.slice_ms,
            (self.user_activity.current_slice + 1) * layout.activity.slice_ms,
        )
        return newest + layout.retention_ms


def advance(state: AdaptiveState, layout: AdaptiveLayout, now_ms: int) -> AdaptiveState:
    """``state`` with its slices rolled to ``now_ms`` (never backwards: a lagging clock counts
    in the newest slice the state has)."""
    rate_slice = layout.rate.slice_of(layout.rate.effective_now(state.total, now_ms))
    activity_slice = layout.activity.slice_of(
        layout.activity.effective_now(state.user_activity, now_ms)
    )
    return dataclasses.replace(
        state,
        total=roll(state.total, layout.rate, rate_slice),
        background=roll(state.background, layout.rate, rate_slice),
        user_activity=roll(state.user_activity, layout.activity, activity_slice),
        background_activity=roll(state.background_activity, layout.activity, activity_slice),
    )


def activity_of(state: AdaptiveState, layout: AdaptiveLayout, now_ms: int) -> UserActivity:
    """What the capacity calculator needs, from the activity counters at ``now_ms``.

    With ``n`` history slices (``ACTIVITY_SLICES``, or fewer for a window of under 30 ms),
    the newest third is the current slice and the ``(n + 1) // 3 - 1`` before it; the
    previous third the ``(n + 1) // 3`` slices before those. Counted in whole slices, the thirds
    may be off by up to one slice of time either way (the trend is a rule of thumb; the rate
    window, which is a guarantee, only ever counts more).
    """
    rolled = advance(state, layout, now_ms)
    user = rolled.user_activity
    history = user.history
    third = max(1, (len(history) + 1) // 3)
    newest_history = history[len(history) - (third - 1) :] if third > 1 else ()
    previous_history = history[max(0, len(history) - (2 * third - 1)) : len(history) - (third - 1)]
    return UserActivity(
        user_requests=counted(user, layout.activity, now_ms),
        background_requests=counted(rolled.background_activity, layout.activity, now_ms),
        newest_third=user.current + sum(newest_history),
        previous_third=sum(previous_history),
        last_user_request_ms=state.last_user_ms,
    )


def admits(
    state: AdaptiveState, layout: AdaptiveLayout, limit: int, priority: Priority, now_ms: int
) -> bool:
    """Whether a ``priority`` request may be admitted now under ``state``'s capacity.

    ``state.capacity`` must be current (see :func:`plan`).
    """
    if room(state.total, layout.rate, limit, now_ms) <= 0:
        return False
    if priority == "user":
        return True
    capacity = state.capacity
    if capacity is None or capacity.capacity.background_paused:
        return False
    return room(state.background, layout.rate, capacity.capacity.background_max, now_ms) > 0


def wait_for(
    state: AdaptiveState | None,
    layout: AdaptiveLayout,
    limit: int,
    priority: Priority,
    now_ms: int,
) -> int:
    """Milliseconds until a ``priority`` request may be admitted; 0 exactly when :func:`admits`.

    The longest of what blocks it: the total window (until enough admissions leave it), and
    for background work the background share (until enough leave it) or, while the split
    gives background nothing or pauses it, the next recomputation of the split.
    """
    if state is None:
        state = AdaptiveState.fresh(layout, now_ms)
    waits = [wait_ms(state.total, layout.rate, limit, now_ms)]
    if priority == "background":
        stored = state.capacity
        if stored is None:
            waits.append(1)
        elif stored.capacity.background_paused or stored.capacity.background_max <= 0:
            waits.append(max(1, stored.next_due_ms(layout.config) - now_ms))
        else:
            waits.append(
                wait_ms(state.background, layout.rate, stored.capacity.background_max, now_ms)
            )
    return max(waits)


def remaining(state: AdaptiveState | None, layout: AdaptiveLayout, limit: int, now_ms: int) -> int:
    """Admissions the total window has room for at ``now_ms``."""
    return room(None if state is None else state.total, layout.rate, limit, now_ms)


def state_reset_ms(state: AdaptiveState | None, layout: AdaptiveLayout, now_ms: int) -> int:
    """When every admission counted at ``now_ms`` has left the rate window."""
    return reset_ms(None if state is None else state.total, layout.rate, now_ms)


@dataclass(frozen=True, slots=True)
class Plan:
    """One call's decision: the state it acts on, whether it admits, and what to write.

    ``after`` is ``current`` with the admission counted (``current`` itself when refused);
    ``rolled`` says nothing was stored yet or a slice moved, ``recomputed`` that the split was
    due and is new in ``current``: either way the state must be written whole rather than by
    adding to its counters.
    """

    current: AdaptiveState
    after: AdaptiveState
    admitted: bool
    rolled: bool
    recomputed: bool


def plan(
    state: AdaptiveState | None,
    layout: AdaptiveLayout,
    limit: int,
    priority: Priority,
    now_ms: int,
    *,
    enforce: bool,
    count: bool,
) -> Plan:
    """Decide one call at ``now_ms`` on ``state`` (``None``: nothing stored yet).

    ``count``: the call records an admission if admitted; ``enforce``: it is admitted only
    if :func:`admits` (``record`` counts unconditionally; the reads count nothing).
    """
    base = AdaptiveState.fresh(layout, now_ms) if state is None else state
    current = advance(base, layout, now_ms)
    rolled = state is None or (
        current.total.current_slice != base.total.current_slice
        or current.user_activity.current_slice != base.user_activity.current_slice
    )
    config = layout.config
    recomputed = base.capacity is None or base.capacity.is_due(limit, config, now_ms)
    if recomputed:
        capacity = compute_capacity(activity_of(current, layout, now_ms), limit, config, now_ms)
        current = dataclasses.replace(current, capacity=StoredCapacity(capacity, now_ms, limit))
    admitted = admits(current, layout, limit, priority, now_ms) if enforce else True
    after = current
    if count and admitted:
        after = _counted_one(current, priority, now_ms)
    return Plan(
        current=current,
        after=after,
        admitted=admitted,
        rolled=rolled,
        recomputed=recomputed,
    )


def _counted_one(state: AdaptiveState, priority: Priority, now_ms: int) -> AdaptiveState:
    """``state`` (rolled to ``now_ms``) with one ``priority`` admission counted."""

    def plus_one(window: WindowState) -> WindowState:
        return dataclasses.replace(window, current=window.current + 1)

    if priority == "user":
        last_user = now_ms if state.last_user_ms is None else max(state.last_user_ms, now_ms)
        return dataclasses.replace(
            state,
            total=plus_one(state.total),
            user_activity=plus_one(state.user_activity),
            last_user_ms=last_user,
        )
    return dataclasses.replace(
        state,
        total=plus_one(state.total),
        background=plus_one(state.background),
        background_activity=plus_one(state.background_activity),
    )
