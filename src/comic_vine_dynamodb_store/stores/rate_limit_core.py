"""The sliding window of the rate limiter, as pure arithmetic on one resource's counters.

A window of ``window_ms`` is cut into slices of ``slice_ms = ceil(window_ms / 60)`` (so any
window >= 1 ms works, and a window costs at most 61 counters whatever the limit). A resource's
state is one :class:`WindowState`: the count of its current slice and the final counts of the
``history_slices`` slices before it::

    slice:      k-N  ...  k-2   k-1  |  k (current)
    counts:     h[0] ...  h[N-2] h[N-1] | current
                 \\______ frozen ______/   ^ the only counter that still moves

At time ``t``, the admissions counted are the current slice plus every history slice that
overlaps the window ``(t - window_ms, t]``, each counted whole. Counting the oldest slice whole
never counts fewer admissions than the exact sliding log does, so the limiter never
over-admits; it counts at most one slice's admissions that the exact log has already dropped,
so it under-admits by at most one slice (a refusal at ``t`` means the span
``(t - window_ms - slice_ms, t]`` already held ``limit`` admissions).

History slices never change once the current slice has moved past them: the DynamoDB store
makes the roll-over (current slice into history) a compare-and-set on the current slice and
its count, and every admission is conditioned on the current slice being the one it counted
against. A process whose clock lags behind the state's current slice counts in that slice
(``effective_now``), never in a frozen one.

Clocks are assumed in sync; a clock ahead by ``d`` rolls the window ``d`` early, so across
machines the bound holds for windows of ``window_ms - d``. DynamoDB's TTL reaper deletes a
window item on the service's clock once its last counted admission has left; a process whose
clock lags the service's by more than a second may see such a window vanish while its own
clock still counts it (the same skew caveat).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "SliceLayout",
    "WindowState",
    "counted",
    "fresh_state",
    "history_allowance",
    "reset_ms",
    "ring_of",
    "roll",
    "room",
    "slot_condition_bound",
    "wait_ms",
    "window_of_ring",
]

SLICES_PER_WINDOW = 60


@dataclass(frozen=True, slots=True)
class SliceLayout:
    """How a window is cut: ``slice_ms`` wide slices, ``history_slices`` of them kept."""

    window_ms: int
    slice_ms: int
    history_slices: int

    @classmethod
    def for_window(cls, window_ms: int, slices: int = SLICES_PER_WINDOW) -> SliceLayout:
        """The layout for ``window_ms``: at most ``slices`` slices, each at least 1 ms."""
        if window_ms <= 0:
            raise ValueError(f"window_ms must be > 0, got {window_ms}")
        slice_ms = max(1, math.ceil(window_ms / slices))
        return cls(window_ms, slice_ms, math.ceil(window_ms / slice_ms))

    def slice_of(self, now_ms: int) -> int:
        """Index of the slice holding ``now_ms``."""
        return now_ms // self.slice_ms

    def effective_now(self, state: WindowState | None, now_ms: int) -> int:
        """``now_ms``, or the start of the state's current slice if the clock lags behind it."""
        if state is None:
            return now_ms
        return max(now_ms, state.current_slice * self.slice_ms)


@dataclass(frozen=True, slots=True)
class WindowState:
    """One resource's counters: the current slice's count and the frozen ones before it."""

    current_slice: int
    current: int
    history: tuple[int, ...]

    @property
    def total(self) -> int:
        """Every admission the state holds, counted or not."""
        return self.current + sum(self.history)


def fresh_state(layout: SliceLayout, slice_index: int) -> WindowState:
    """An empty window whose current slice is ``slice_index``."""
    return WindowState(slice_index, 0, (0,) * layout.history_slices)


def roll(state: WindowState, layout: SliceLayout, to_slice: int) -> WindowState:
    """``state`` moved forward so that ``to_slice`` is current (a new, empty slice)."""
    if to_slice < state.current_slice:
        raise ValueError("a window never moves backwards")
    if to_slice == state.current_slice:
        return state
    steps = to_slice - state.current_slice
    n = layout.history_slices
    # Only the last n counters survive: never build more zeros than that (a long idle gap is
    # billions of slices).
    extended = (*state.history, state.current, *(0,) * min(steps - 1, n))
    return WindowState(to_slice, 0, tuple(extended[-n:]) if n else ())


def _counted_history(state: WindowState, layout: SliceLayout, now_ms: int) -> int:
    # History slice i (0 = oldest) is current_slice - n + i; it counts while its end is after
    # now - window, i.e. it overlaps the window.
    oldest_counted = layout.slice_of(now_ms - layout.window_ms)
    n = len(state.history)
    return sum(
        count
        for i, count in enumerate(state.history)
        if state.current_slice - n + i >= oldest_counted
    )


def counted(state: WindowState | None, layout: SliceLayout, now_ms: int) -> int:
    """Admissions counted against the limit at ``now_ms`` (conservatively, slice by slice)."""
    if state is None:
        return 0
    now = layout.effective_now(state, now_ms)
    current = roll(state, layout, layout.slice_of(now))
    return current.current + _counted_history(current, layout, now)


def room(state: WindowState | None, layout: SliceLayout, limit: int, now_ms: int) -> int:
    """How many more admissions the current slice may take at ``now_ms``."""
    return max(0, limit - counted(state, layout, now_ms))


def history_allowance(state: WindowState, layout: SliceLayout, limit: int, now_ms: int) -> int:
    """The most the current slice's counter may reach: ``limit`` minus the counted history.

    This is the bound an admission's condition checks (``current < allowance``).
    """
    return limit - _counted_history(state, layout, layout.effective_now(state, now_ms))


def wait_ms(state: WindowState | None, layout: SliceLayout, limit: int, now_ms: int) -> int:
    """Milliseconds from ``now_ms`` until one more admission would be allowed; 0 if now."""
    if room(state, layout, limit, now_ms) > 0:
        return 0
    if state is None or limit == 0:
        # Nothing will ever leave: a zero limit admits nothing. Report a full window.
        return layout.window_ms
    now = layout.effective_now(state, now_ms)
    # Slices leave the count one by one as time passes their end + window; try each boundary.
    first_slice = layout.slice_of(now - layout.window_ms)
    for boundary_slice in range(first_slice, max(state.current_slice, first_slice) + 1):
        leaves_at = (boundary_slice + 1) * layout.slice_ms + layout.window_ms
        if leaves_at > now and room(state, layout, limit, leaves_at) > 0:
            return leaves_at - now_ms
    return layout.window_ms + layout.slice_ms


def reset_ms(state: WindowState | None, layout: SliceLayout, now_ms: int) -> int:
    """When every admission counted at ``now_ms`` has left the window (epoch ms)."""
    if state is None or counted(state, layout, now_ms) == 0:
        return now_ms
    now = layout.effective_now(state, now_ms)
    current = roll(state, layout, layout.slice_of(now))
    n = len(current.history)
    newest = current.current_slice
    if not current.current:
        newest = max(
            current.current_slice - n + i for i, count in enumerate(current.history) if count
        )
    return (newest + 1) * layout.slice_ms + layout.window_ms


# -- rings: how a sliced window is stored -------------------------------------------------


def ring_of(window: WindowState, layout: SliceLayout) -> list[int]:
    """``window`` as a ring of ``history_slices + 1`` slots, slice ``k`` in slot ``k mod len``."""
    size = layout.history_slices + 1
    ring = [0] * size
    k = window.current_slice
    n = len(window.history)
    for i, count in enumerate(window.history):
        ring[(k - n + i) % size] = count
    ring[k % size] = window.current
    return ring


def window_of_ring(ring: tuple[int, ...], current_slice: int) -> WindowState:
    """The window a ring holds when ``current_slice`` is its newest slice."""
    size = len(ring)
    n = size - 1
    k = current_slice
    return WindowState(k, ring[k % size], tuple(ring[(k - n + i) % size] for i in range(n)))


def slot_condition_bound(
    current: WindowState, stored_slice: int, layout: SliceLayout, limit: int, now_ms: int
) -> int | None:
    """The bound an admission puts on the stored newest slot: ``slot < bound``.

    ``current`` is the window rolled to ``now_ms`` from what the writer knows; the slot of
    ``stored_slice`` (the newest slice in the table) may have grown since, through other
    writers' admissions, while every older slot is frozen and known exactly. So the window
    has room iff that slot's real count is below ``limit`` minus everything else counted.
    ``None`` when that slot no longer counts at ``now_ms``: then everything counted is known.
    """
    now = layout.effective_now(current, now_ms)
    oldest_counted = layout.slice_of(now - layout.window_ms)
    k = stored_slice
    if k < oldest_counted and k != current.current_slice:
        return None
    steps_back = current.current_slice - k
    if steps_back == 0:
        known = current.current
    elif steps_back <= len(current.history):
        known = current.history[len(current.history) - steps_back]
    else:
        return None
    return limit - (counted(current, layout, now_ms) - known)
