"""Time as the library sees it: epoch milliseconds from an injectable clock.

Every decision (expiry, leases, windows) takes ``now`` in ms from a :data:`Clock`, so pure
decision code is tested under a frozen clock and stores can be driven by a fake one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeAlias

__all__ = ["Clock", "system_clock_ms"]

Clock: TypeAlias = Callable[[], int]
"""A zero-argument callable returning the current time in epoch milliseconds."""


def system_clock_ms() -> int:
    """Wall-clock epoch milliseconds (shared across machines, unlike a monotonic clock)."""
    return time.time_ns() // 1_000_000
