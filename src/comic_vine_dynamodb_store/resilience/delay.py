"""A pacing delay for bulk jobs that backs off while DynamoDB throttles and fades when it stops.

Retries handle one request; a bulk job (thousands of writes) also needs to slow its *next*
requests once throttling starts, or each of them pays for its own retries. The delay:

* starts at 0: an unthrottled job runs at full speed;
* on a throttle, becomes ``base_delay_ms`` if it was 0, else grows by ``growth`` (capped at
  ``max_delay_ms``);
* on a success, shrinks by ``shrink``; once below ``base_delay_ms`` it drops to 0, so pacing
  stops soon after throttling does instead of lingering at a few milliseconds.

:meth:`AdaptiveDelayCalculator.next_delay_ms` draws the wait with full jitter (uniform in
``[0, current]``) so that workers sharing a table do not resend in lockstep.
"""

from __future__ import annotations

import math
import random
import threading

from comic_vine_dynamodb_store.errors import ConfigurationError

__all__ = ["AdaptiveDelayCalculator"]


def _check_number(name: str, value: object, *, minimum: float, inclusive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {value!r}", field=name)
    if value < minimum or (not inclusive and value == minimum):
        bound = ">=" if inclusive else ">"
        raise ConfigurationError(f"{name} must be {bound} {minimum}, got {value!r}", field=name)
    return float(value)


class AdaptiveDelayCalculator:
    """The delay to wait before a bulk job's next request, adapted to throttling.

    Thread-safe: workers of one job share a calculator, so one worker's throttle slows all.
    Every value it returns lies in ``[0, max_delay_ms]``.
    """

    def __init__(
        self,
        base_delay_ms: float = 100,
        max_delay_ms: float = 20_000,
        *,
        growth: float = 2.0,
        shrink: float = 0.5,
        jitter: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self._base = _check_number("base_delay_ms", base_delay_ms, minimum=0, inclusive=False)
        self._max = _check_number("max_delay_ms", max_delay_ms, minimum=self._base)
        self._growth = _check_number("growth", growth, minimum=1, inclusive=False)
        self._shrink = _check_number("shrink", shrink, minimum=0)
        if self._shrink >= 1:
            raise ConfigurationError(f"shrink must be < 1, got {shrink!r}", field="shrink")
        self._jitter = jitter
        self._rng = rng if rng is not None else random.Random()
        self._current = 0.0
        self._lock = threading.Lock()

    @property
    def base_delay_ms(self) -> float:
        """The delay the first throttle sets."""
        return self._base

    @property
    def max_delay_ms(self) -> float:
        """The cap on the delay, however long throttling lasts."""
        return self._max

    @property
    def current_delay_ms(self) -> float:
        """The delay now, before jitter: 0 or within ``[base_delay_ms, max_delay_ms]``."""
        with self._lock:
            return self._current

    def record_throttle(self) -> None:
        """DynamoDB throttled (or left items unprocessed): slow down."""
        with self._lock:
            self._current = min(self._max, max(self._base, self._current * self._growth))

    def record_success(self) -> None:
        """A request went through whole: speed up, back to no delay below ``base_delay_ms``."""
        with self._lock:
            shrunk = self._current * self._shrink
            self._current = shrunk if shrunk >= self._base else 0.0

    def reset(self) -> None:
        """Forget the throttling seen so far (a new job, or a table known to be idle)."""
        with self._lock:
            self._current = 0.0

    def next_delay_ms(self) -> float:
        """Milliseconds to wait before the next request: jittered when ``jitter`` is on."""
        with self._lock:
            if not self._jitter or self._current == 0:
                return self._current
            return min(self._current, max(0.0, self._rng.uniform(0.0, self._current)))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(current_delay_ms={self.current_delay_ms:g}, "
            f"base_delay_ms={self._base:g}, max_delay_ms={self._max:g})"
        )
