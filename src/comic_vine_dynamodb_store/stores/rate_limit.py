"""``DynamoDBRateLimitStore``: one sliding window per resource, shared by every process.

The window math (slices, what is counted, the over/under-admission bound) is in
:mod:`.rate_limit_core`. Here each resource's counters are one item, a ring of one count per
slice (slice ``k`` in slot ``k mod len``, ``CurSlice`` the newest), and every change is one
conditional UpdateItem that sends a delta, never counts it read:

* **admit** into the newest slice: add 1 to its slot if ``CurSlice`` is still the slice the
  caller counted against and the slot is below ``limit`` minus the other counted slots (those
  cannot change while ``CurSlice`` stays, so the condition covers the whole window);
* **move on** to a new slice: zero the slots the new slices reuse, set the new slot to 1 and
  ``CurSlice`` to the new slice, if ``CurSlice`` is still the old one and the old newest slot
  (which others may still have been adding to) leaves room. Admissions racing into the old
  slice never make the move fail unless the window is full.

A failed condition returns the item (``ALL_OLD``), so the caller learns the new state from the
same request, and tries again (a move races once per slice; a refusal is final when the
returned counters fill the window). Each store remembers the last state it saw per resource:
counts only grow within a slice, so when that state already fills the window, ``acquire``
refuses with no request at all. The item that comes back is decoded by hand: it is on every
admission's path.

Costs: ``acquire``/``record`` 1 UpdateItem in the steady state; at most 2 when the slice rolls
over and the state this store last saw is out of date (another process rolled the slice or
admitted since; busy processes pay this once per slice), and on a store's first call for a
resource that already has a window. ``can_proceed``/``get_status``/``get_wait_time`` 1
consistent GetItem, ``reset`` 1 DeleteItem. The item holds at most 61 counters, so consumed
capacity does not grow with the limit.

Refusals from remembered counts are free while those counts are less than one slice old;
older ones are refreshed by one read before refusing. So a ``reset`` in another process is
seen within one slice (the only way remembered counts can be too high), and a store hammering
a full window sends at most one request per slice.

Requests must be well faster than a slice (``window / 60``: 1 s for a one-minute window,
167 ms for ten seconds). A writer whose request takes about a slice keeps finding the window
moved on by other writers, and a call that loses 8 races in a row refuses: under-admission,
never over-admission. With requests at a quarter of a slice, four racing writers fill the
window exactly (``tests/faults/test_slow_requests.py``).

All processes must configure a resource alike: a writer with another window length resets the
resource's window.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from pynamodb.expressions.condition import Condition

from comic_vine_dynamodb_store.clock import Clock, system_clock_ms
from comic_vine_dynamodb_store.config import (
    RateLimitConfig,
    RateLimitConfigs,
    RateLimitStoreOptions,
)
from comic_vine_dynamodb_store.keys import validate_key
from comic_vine_dynamodb_store.models import RateLimitEvent
from comic_vine_dynamodb_store.models.base import expiry_actions, ring_actions
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
from comic_vine_dynamodb_store.stores.contracts import RateLimitStats, RateLimitStatus
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

__all__ = ["DynamoDBRateLimitStore"]

_MAX_ATTEMPTS = 8


class DynamoDBRateLimitStore(PerResourceLimits, DynamoDBStore[RateLimitStoreOptions]):
    """A sliding-window limit per resource: ``limit`` admissions per ``window_ms``.

    ``default_config`` (200 per 60 s) applies to every resource without an entry in
    ``resource_configs``; :meth:`set_resource_config` changes one at run time (in this store;
    other processes need the same setting).
    """

    options_model: ClassVar[type[RateLimitStoreOptions]] = RateLimitStoreOptions
    store_name: ClassVar[str] = "rate_limit"
    item_model: ClassVar[type[RateLimitEvent]] = RateLimitEvent

    def __init__(
        self,
        *,
        options: RateLimitStoreOptions | None = None,
        clock: Clock = system_clock_ms,
        **kwargs: Any,
    ) -> None:
        super().__init__(options=options, clock=clock, **kwargs)
        self._windows = self._model(RateLimitEvent)
        self._configs = RateLimitConfigs(self.options.default_config, self.options.resource_configs)
        self._known: dict[str, tuple[SliceLayout, WindowState, int]] = {}
        self._start_background("cleanup", self.options.cleanup_interval_ms, self.cleanup)

    # -- admission -------------------------------------------------------------------------

    @falls_back(admission)
    def acquire(self, resource: str) -> bool:
        """Admit one request if the window has room, recording it in the same write."""
        return self._count(resource, "acquire", enforce=True)

    @falls_back(skipped)
    def record(self, resource: str) -> None:
        """Count one request whether or not the window has room."""
        self._count(resource, "record", enforce=False)

    def _count(self, resource: str, operation: str, *, enforce: bool) -> bool:
        validate_key(resource, what="resource")
        self._check_open(operation)  # refusals from known counts send nothing, so check here
        config = self.get_resource_config(resource)
        layout = SliceLayout.for_window(config.window_ms)
        state, learned_at = self._remembered(resource, layout)
        windows = self._windows
        pk, sk = RateLimitEvent.key_of(self._namespace, resource)
        # Every attempt decides as of the call's start: an admission may take effect at any
        # instant of the call, and the start's slice is the oldest it may be counted in. So a
        # retry that learns another writer already moved the window on to that slice (or
        # beyond) adds to it instead of moving it again: with slow requests, racing writers
        # would otherwise keep moving the window under each other.
        started = self._now_ms()
        for _ in range(_MAX_ATTEMPTS):
            now = started
            if enforce and (config.limit <= 0 or room(state, layout, config.limit, now) <= 0):
                if config.limit <= 0 or now - learned_at < layout.slice_ms:
                    return self._refuse(resource, config, layout, state, now)
                # Known counts say full but are older than a slice (another process may have
                # reset the window): read once, then decide on what the table holds.
                _, _, state = self._read(operation, resource)
                learned_at = now
                if room(state, layout, config.limit, now) <= 0:
                    return self._refuse(resource, config, layout, state, now)
            current = layout.slice_of(layout.effective_now(state, now))
            if state is None:
                created = WindowState(current, 1, fresh_state(layout, current).history)
                item = windows.build(
                    self._namespace,
                    resource,
                    window_ms=layout.window_ms,
                    slice_ms=layout.slice_ms,
                    current_slice=created.current_slice,
                    counts=ring_of(created, layout),
                    expires_at_ms=_window_expiry(layout, created),
                )
                outcome = self._run(
                    operation,
                    functools.partial(
                        windows.put_unless_blocked,
                        item.serialize(),
                        condition=self._replaceable(layout, now),
                        raw=True,
                    ),
                    key=resource,
                )
                if not outcome.blocked:
                    return self._remember(resource, layout, created)
            else:
                rolled = roll(state, layout, current)
                after = WindowState(current, rolled.current + 1, rolled.history)
                outcome = self._run(
                    operation,
                    functools.partial(
                        windows.update_unless_blocked,
                        pk,
                        sk,
                        **self._admission(
                            layout, config.limit, state, after, now=now, enforce=enforce
                        ),
                        return_new=True,
                        raw=True,
                    ),
                    key=resource,
                )
                if not outcome.blocked:
                    self._remember(resource, layout, _state_of(outcome.raw, layout) or after)
                    return True
            # Someone else wrote first: learn their state from the failure and decide again.
            state = _state_of(outcome.raw, layout)
            learned_at = now
            self._remember(resource, layout, state)
        # Still racing after every attempt: refusing is the side that never over-admits.
        return self._refuse(resource, config, layout, state, self._now_ms()) if enforce else False

    def _admission(
        self,
        layout: SliceLayout,
        limit: int,
        before: WindowState,
        after: WindowState,
        *,
        now: int,
        enforce: bool,
    ) -> dict[str, Any]:
        """The UpdateItem counting one admission: add to the newest slot, or move the ring
        on to ``after``'s slice, if the newest slice is still ``before``'s (and, enforcing,
        the window has room for it)."""
        windows = self._windows
        size = layout.history_slices + 1
        condition = (windows.current_slice == before.current_slice) & (
            windows.window_ms == layout.window_ms
        )
        if enforce:
            rolled = roll(before, layout, after.current_slice)
            bound = slot_condition_bound(rolled, before.current_slice, layout, limit, now)
            if bound is not None:
                condition &= windows.counts[before.current_slice % size] < bound
        actions: list[Any] = ring_actions(
            windows.counts,
            size=size,
            from_slice=before.current_slice,
            from_count=before.current,
            to_slice=after.current_slice,
            to_count=after.current,
        )
        if after.current_slice != before.current_slice:
            actions.append(windows.current_slice.set(after.current_slice))
            actions += expiry_actions(
                windows,
                _window_expiry(layout, after),
                moved_from_ms=_window_expiry(layout, before),
            )
        return {"actions": actions, "condition": condition}

    def _replaceable(self, layout: SliceLayout, now: int) -> Condition:
        """A new window may be written over: nothing, a dead window, or another layout."""
        windows = self._windows
        free = (
            windows.pk.does_not_exist()
            | (windows.expires_at_ms <= now)
            | (windows.window_ms != layout.window_ms)
        )
        return cast(Condition, free)

    def _refuse(
        self,
        resource: str,
        config: RateLimitConfig,
        layout: SliceLayout,
        state: WindowState | None,
        now: int,
    ) -> bool:
        return refuse(
            self,
            store=self.store_name,
            table=self.table_name,
            resource=resource,
            config=config,
            wait_ms=lambda: wait_ms(state, layout, config.limit, now),
        )

    # -- state ---------------------------------------------------------------------------

    def _remembered(self, resource: str, layout: SliceLayout) -> tuple[WindowState | None, int]:
        """The last state seen for ``resource`` and when it was learned (epoch ms)."""
        known = self._known.get(resource)
        if known is None or known[0] != layout:
            return None, 0
        return known[1], known[2]

    def _remember(self, resource: str, layout: SliceLayout, state: WindowState | None) -> bool:
        if state is None:
            self._known.pop(resource, None)
        else:
            self._known[resource] = (layout, state, self._now_ms())
        return True

    def _read(self, operation: str, resource: str) -> tuple[RateLimitConfig, SliceLayout, Any]:
        validate_key(resource, what="resource")
        config = self.get_resource_config(resource)
        layout = SliceLayout.for_window(config.window_ms)
        pk, sk = RateLimitEvent.key_of(self._namespace, resource)
        connection = self._windows._get_connection()

        def get() -> Mapping[str, Any] | None:
            found: Mapping[str, Any] | None = connection.get_item(
                pk, range_key=sk, consistent_read=True
            ).get("Item")
            return found

        state = _state_of(self._run(operation, get, key=resource), layout)
        self._remember(resource, layout, state)
        return config, layout, state

    # -- reading -------------------------------------------------------------------------

    @falls_back(admission)
    def can_proceed(self, resource: str) -> bool:
        """True if a request may go now (one read; nothing is recorded)."""
        config, layout, state = self._read("can_proceed", resource)
        return config.limit > 0 and room(state, layout, config.limit, self._now_ms()) > 0

    @falls_back(status_fallback)
    def get_status(self, resource: str) -> RateLimitStatus:
        """Admissions left, when the counted ones have all left the window, and the limit."""
        config, layout, state = self._read("get_status", resource)
        now = self._now_ms()
        return RateLimitStatus(
            remaining=room(state, layout, config.limit, now),
            reset_time=datetime.fromtimestamp(reset_ms(state, layout, now) / 1000, tz=UTC),
            limit=config.limit,
        )

    @falls_back(waiting)
    def get_wait_time(self, resource: str) -> int:
        """Milliseconds until a request may proceed; 0 when it may now."""
        config, layout, state = self._read("get_wait_time", resource)
        return wait_ms(state, layout, config.limit, self._now_ms())

    def reset(self, resource: str) -> None:
        """Forget every admission of ``resource``."""
        validate_key(resource, what="resource")
        pk, sk = RateLimitEvent.key_of(self._namespace, resource)
        self._run("reset", self._windows(pk, sk).delete, key=resource)
        self._known.pop(resource, None)

    # -- store-wide ----------------------------------------------------------------------

    def get_stats(self) -> RateLimitStats:
        """Resources with a window, those with admissions still counted, and how many."""
        now = self._now_ms()

        def count() -> RateLimitStats:
            total = active = requests = 0
            for window in self._windows.iter_index(self._namespace):
                total += 1
                layout = _layout_of(window)
                current_slice, counts = window.ring()
                in_window = (
                    counted(window_of_ring(counts, current_slice), layout, now)
                    if len(counts) == layout.history_slices + 1
                    else 0
                )
                active += in_window > 0
                requests += in_window
            return RateLimitStats(
                total_resources=total, active_resources=active, total_requests=requests
            )

        return self._run("get_stats", count, bounded=False)

    def cleanup(self) -> int:
        """Remove windows whose admissions have all left; returns how many."""
        return self._remove_expired(self._windows)


def _window_expiry(layout: SliceLayout, state: WindowState) -> int:
    """When the newest counters of ``state`` leave the window (the item's ``ExpiresAt``)."""
    return (state.current_slice + 1) * layout.slice_ms + layout.window_ms


def _layout_of(window: RateLimitEvent) -> SliceLayout:
    # The item's own layout, whatever the config of this store says now.
    return SliceLayout.for_window(int(window.window_ms))


def _state_of(item: Mapping[str, Any] | None, layout: SliceLayout) -> WindowState | None:
    """The window ``item`` (as DynamoDB returned it) holds, if it was made for ``layout``."""
    if item is None or int(item.get("WindowMs", {}).get("N", "0")) != layout.window_ms:
        return None
    counts = tuple(int(slot["N"]) for slot in item.get("Counts", {}).get("L", ()))
    if len(counts) != layout.history_slices + 1:
        return None
    return window_of_ring(counts, int(item["CurSlice"]["N"]))
