"""How the adaptive limiter splits a resource's limit between users and background work.

Pure: activity counts, the limit, the :class:`AdaptiveConfig` and ``now`` in, a
:class:`Capacity` out; every process computing it from the same activity gets the same split.
With ``L`` the limit and ``a`` the user requests in the monitoring window:

* **trend**: user requests in the newest third of the monitoring window against the third
  before it: ``none`` if both are 0, ``increasing`` if newest > 1.5 x previous, ``decreasing``
  if newest < 0.5 x previous, else ``stable``;
* ``a >= high``: ``user_reserved = min(0.9 L, floor(0.5 L x max_user_scaling))``, and background
  is paused while the trend is increasing (if pausing is enabled);
* ``moderate <= a < high``: ``m = min(max_user_scaling, 1 + a / high)``, x1.2 when increasing,
  x0.8 when decreasing, at least 1; ``user_reserved = min(0.7 L, floor(0.4 L) x m)``;
* ``0 < a < moderate``: ``max(floor(0.3 L), min_user_reserved)``;
* ``a == 0``: no traffic yet: ``max(floor(0.3 L), min_user_reserved)``; background traffic
  only: ``min_user_reserved``; users idle for longer than ``sustained_inactivity_threshold_ms``:
  0; otherwise ``min_user_reserved``;
* ``background_max = L - user_reserved``.

Reservations are whole requests, rounded down, and never above ``L``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from comic_vine_dynamodb_store.config import AdaptiveConfig
from comic_vine_dynamodb_store.errors import ConfigurationError
from comic_vine_dynamodb_store.stores.contracts import Priority

__all__ = [
    "PRIORITIES",
    "Capacity",
    "Trend",
    "UserActivity",
    "compute_capacity",
    "trend_of",
    "validate_priority",
]

PRIORITIES: tuple[Priority, ...] = ("user", "background")


def validate_priority(priority: object) -> Priority:
    """``priority`` if it is ``"user"`` or ``"background"``; else ``ConfigurationError``."""
    if not isinstance(priority, str) or priority not in PRIORITIES:
        raise ConfigurationError(
            f"priority must be 'user' or 'background', got {priority!r}", field="priority"
        )
    return priority


class Trend(enum.StrEnum):
    """Direction of user traffic over the monitoring window."""

    NONE = "none"
    INCREASING = "increasing"
    STABLE = "stable"
    DECREASING = "decreasing"


@dataclass(frozen=True, slots=True)
class UserActivity:
    """What the calculator needs to know of a resource's recent traffic.

    ``user_requests`` and ``background_requests`` are counted over the monitoring window;
    ``newest_third`` and ``previous_third`` are the user requests of its newest third and the
    third before; ``last_user_request_ms`` is the newest user request ever seen (None: never).
    """

    user_requests: int
    background_requests: int
    newest_third: int
    previous_third: int
    last_user_request_ms: int | None


@dataclass(frozen=True, slots=True)
class Capacity:
    """The split of a resource's limit, and why."""

    user_reserved: int
    background_max: int
    background_paused: bool
    recent_user_activity: int
    trend: Trend
    reason: str


def trend_of(newest_third: int, previous_third: int) -> Trend:
    """Compare the newest third of the monitoring window with the third before it."""
    if newest_third == 0 and previous_third == 0:
        return Trend.NONE
    if newest_third > 1.5 * previous_third:
        return Trend.INCREASING
    if newest_third < 0.5 * previous_third:
        return Trend.DECREASING
    return Trend.STABLE


def compute_capacity(
    activity: UserActivity, limit: int, config: AdaptiveConfig, now_ms: int
) -> Capacity:
    """The user/background split of ``limit`` for ``activity`` at ``now_ms``."""
    a = activity.user_requests
    trend = trend_of(activity.newest_third, activity.previous_third)
    paused = False
    if a >= config.high_activity_threshold:
        reserved = min(0.9 * limit, math.floor(0.5 * limit * config.max_user_scaling))
        paused = config.background_pause_on_increasing_trend and trend is Trend.INCREASING
        reason = f"high user activity ({a} requests, trend {trend.value})"
    elif a >= config.moderate_activity_threshold:
        scale = min(config.max_user_scaling, 1 + a / config.high_activity_threshold)
        if trend is Trend.INCREASING:
            scale *= 1.2
        elif trend is Trend.DECREASING:
            scale *= 0.8
        scale = max(1.0, scale)
        reserved = min(0.7 * limit, math.floor(0.4 * limit) * scale)
        reason = f"moderate user activity ({a} requests, trend {trend.value})"
    elif a > 0:
        reserved = max(math.floor(0.3 * limit), config.min_user_reserved)
        reason = f"low user activity ({a} requests)"
    elif activity.last_user_request_ms is None and activity.background_requests == 0:
        reserved = max(math.floor(0.3 * limit), config.min_user_reserved)
        reason = "no traffic yet"
    elif activity.last_user_request_ms is None:
        reserved = config.min_user_reserved
        reason = "background traffic only"
    elif now_ms - activity.last_user_request_ms > config.sustained_inactivity_threshold_ms:
        reserved = 0
        reason = "users inactive for a sustained period"
    else:
        reserved = config.min_user_reserved
        reason = "no recent user activity"
    user_reserved = min(limit, max(0, math.floor(reserved)))
    return Capacity(
        user_reserved=user_reserved,
        background_max=limit - user_reserved,
        background_paused=paused,
        recent_user_activity=a,
        trend=trend,
        reason=reason,
    )
