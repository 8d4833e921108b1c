"""The signal catalogue: every blinker signal the library sends, and what each carries.

Signals are the library's one observability bus: logging, metrics and custom handlers all
connect here (``signal.connect(receiver)``), nothing in the stores calls a handler directly.
Each signal's sender is the store (or, for transport-level signals, the store whose operation
was running); the payload is one frozen dataclass passed as ``event=``::

    from comic_vine_dynamodb_store.observability import signals

    @signals.operation_completed.connect
    def on_operation(sender, event):
        print(event.store, event.operation, event.duration_ms, event.outcome)

Every payload is built at the moment its signal is sent, so ``OperationEvent.correlation_id``
names the correlation (see ``Monitor.start_correlation``) the operation ran in.

Two rules every sender follows (see :func:`send`):

* no payload is built when nobody listens (``if signal.receivers``), so an unobserved store
  pays nothing for observability;
* a receiver that raises never breaks the store call: the error is logged once per receiver
  and the call carries on.

==========================  =====================  ==========================================
signal                      payload                fires
==========================  =====================  ==========================================
``operation_completed``     :class:`OperationEvent`  after every store operation, success or
                                                     failure (one per public call that talks
                                                     to DynamoDB)
``cache_hit``               :class:`CacheEvent`    ``get`` found a live value
``cache_miss``              :class:`CacheEvent`    ``get`` found nothing live
``cache_decode_error``      :class:`CacheEvent`    stored bytes did not decode or validate
                                                     (the ``get`` reports a miss)
``rate_limited``            :class:`RateLimitedEvent`  ``acquire`` refused a request (the window
                                                     was full)
``dedupe_joined``           :class:`DedupeEvent`   ``register_or_join`` found another caller's
                                                     live job and joined it
``circuit_state_changed``   :class:`CircuitEvent`  the breaker moved between closed, open and
                                                     half-open
``request_retried``         :class:`RetryEvent`    botocore is about to retry a request
                                                     (throttling, 5xx, connection, timeout)
``health_checked``          :class:`HealthEvent`   a health check's DynamoDB round trip
                                                     ended (its sender is the store checked)
``store_fallback``          :class:`FallbackEvent`  DynamoDB was unavailable and the store
                                                     fell back as ``on_unavailable`` says
==========================  =====================  ==========================================

:class:`~comic_vine_dynamodb_store.observability.monitor.Monitor` sends two more; their sender
is the monitor:

==========================  =====================  ==========================================
signal                      payload                fires
==========================  =====================  ==========================================
``metric_recorded``         :class:`MetricEvent`   ``record_metric`` was called (a custom
                                                     metric, forwarded by every metrics handler)
``correlation_ended``       :class:`CorrelationEvent`  ``end_correlation`` closed a correlation
                                                     (``monitor_operation`` ends one per call)
==========================  =====================  ==========================================

The client flow (:mod:`comic_vine_dynamodb_store.client`) sends its own signals, all with a
:class:`ClientEvent`; their sender is the ``GuardedFlow`` of the session or transport.
They describe requests, where the store signals above describe store operations:

================================  ==============================================================
signal                            fires
================================  ==============================================================
``client_cache_hit``              a GET/HEAD was answered from the cache
``client_cache_miss``             the cache had no usable response for it
``client_dedupe_joined``          another caller was already fetching it; sent once the wait
                                  ends (``status`` None: nothing usable, an own attempt follows)
``client_limiter_waited``         the limiter refused at first; ``waited_ms`` slept for it,
                                  ``admitted`` says whether it let the request go in the end
``client_retry_after``            the API answered 420/429 with ``Retry-After``; ``waited_ms`` is
                                  slept before one more attempt
``client_upstream_call``          a request is about to go to the API (after admission)
``client_upstream_status``        the API answered: ``status``, ``duration_ms``
``client_store_unavailable``      a store raised ``StoreUnavailableError``: ``store`` (cache,
                                  dedupe, rate_limit), ``operation``, ``error``; cache and dedupe
                                  failures are served around, a limiter failure refuses
================================  ==============================================================
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from blinker import NamedSignal, Namespace

__all__ = [
    "ALL_SIGNALS",
    "CacheEvent",
    "CircuitEvent",
    "ClientEvent",
    "ClientStore",
    "CorrelationEvent",
    "DedupeEvent",
    "Fallback",
    "FallbackEvent",
    "HealthEvent",
    "MetricEvent",
    "OperationEvent",
    "Outcome",
    "RateLimitedEvent",
    "RetryEvent",
    "cache_decode_error",
    "cache_hit",
    "cache_miss",
    "circuit_state_changed",
    "client_cache_hit",
    "client_cache_miss",
    "client_dedupe_joined",
    "client_limiter_waited",
    "client_retry_after",
    "client_store_unavailable",
    "client_upstream_call",
    "client_upstream_status",
    "correlation_ended",
    "dedupe_joined",
    "health_checked",
    "metric_recorded",
    "operation_completed",
    "rate_limited",
    "request_retried",
    "send",
    "store_fallback",
]

_log = logging.getLogger(__name__)

namespace = Namespace()

operation_completed = namespace.signal(
    "operation-completed", doc="A store operation finished (payload: OperationEvent)."
)
cache_hit = namespace.signal("cache-hit", doc="A cache get found a live value (CacheEvent).")
cache_miss = namespace.signal("cache-miss", doc="A cache get found nothing live (CacheEvent).")
cache_decode_error = namespace.signal(
    "cache-decode-error", doc="Stored cache bytes did not decode; reported as a miss."
)
rate_limited = namespace.signal(
    "rate-limited", doc="An acquire was refused: the window is full (RateLimitedEvent)."
)
dedupe_joined = namespace.signal(
    "dedupe-joined", doc="register_or_join joined another caller's live job (DedupeEvent)."
)
circuit_state_changed = namespace.signal(
    "circuit-state-changed", doc="The circuit breaker changed state (CircuitEvent)."
)
request_retried = namespace.signal(
    "request-retried", doc="A DynamoDB request is about to be retried (RetryEvent)."
)
store_fallback = namespace.signal(
    "store-fallback", doc="DynamoDB was unavailable; the store fell back (FallbackEvent)."
)
health_checked = namespace.signal(
    "health-checked", doc="A health check's DynamoDB round trip ended (HealthEvent)."
)
metric_recorded = namespace.signal(
    "metric-recorded", doc="A custom metric was recorded through a Monitor (MetricEvent)."
)
correlation_ended = namespace.signal(
    "correlation-ended", doc="A Monitor correlation ended (CorrelationEvent)."
)
client_cache_hit = namespace.signal(
    "client-cache-hit", doc="A GET/HEAD was answered from the cache (ClientEvent)."
)
client_cache_miss = namespace.signal(
    "client-cache-miss", doc="The cache had no usable response for a GET/HEAD (ClientEvent)."
)
client_dedupe_joined = namespace.signal(
    "client-dedupe-joined", doc="A request waited for another caller's fetch (ClientEvent)."
)
client_limiter_waited = namespace.signal(
    "client-limiter-waited", doc="A request waited for the rate limiter (ClientEvent)."
)
client_retry_after = namespace.signal(
    "client-retry-after", doc="The API answered 420/429 with Retry-After; waiting (ClientEvent)."
)
client_upstream_call = namespace.signal(
    "client-upstream-call", doc="A request is about to go to the API (ClientEvent)."
)
client_upstream_status = namespace.signal(
    "client-upstream-status", doc="The API answered a request (ClientEvent)."
)
client_store_unavailable = namespace.signal(
    "client-store-unavailable", doc="A store the client flow uses was unavailable (ClientEvent)."
)

ALL_SIGNALS: tuple[NamedSignal, ...] = (
    operation_completed,
    cache_hit,
    cache_miss,
    cache_decode_error,
    rate_limited,
    dedupe_joined,
    circuit_state_changed,
    request_retried,
    health_checked,
    store_fallback,
    metric_recorded,
    correlation_ended,
    client_cache_hit,
    client_cache_miss,
    client_dedupe_joined,
    client_limiter_waited,
    client_retry_after,
    client_upstream_call,
    client_upstream_status,
    client_store_unavailable,
)

Outcome = Literal["success", "error", "rejected"]


@dataclass(frozen=True, slots=True)
class OperationEvent:
    """One store operation: what, where, how long, what it cost, how it ended.

    ``outcome`` is ``success``, ``error`` (DynamoDB or the transport failed) or ``rejected``
    (the circuit breaker refused it: no request was sent). ``requests`` counts HTTP requests
    sent, retries included; ``consumed_capacity`` sums the capacity units DynamoDB reported.
    ``correlation_id`` is the correlation the call ran in, if any.
    """

    store: str
    operation: str
    table: str
    key: str | None
    duration_ms: float
    outcome: Outcome
    requests: int
    retries: int
    consumed_capacity: float
    error: BaseException | None = None
    request_id: str | None = None
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class CacheEvent:
    """A cache lookup's result for ``key``; ``error`` says why a stored value was unusable."""

    store: str
    table: str
    key: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RateLimitedEvent:
    """``acquire`` refused a request for ``resource``; one may go after ``wait_ms``."""

    store: str
    table: str
    resource: str
    limit: int
    window_ms: int
    wait_ms: int
    priority: str | None = None


@dataclass(frozen=True, slots=True)
class DedupeEvent:
    """``register_or_join`` for ``key`` joined the live job ``job_id`` of another caller."""

    store: str
    table: str
    key: str
    job_id: str


@dataclass(frozen=True, slots=True)
class CircuitEvent:
    """The breaker of ``store`` moved from ``previous`` to ``state``."""

    store: str
    table: str
    previous: str
    state: str
    failure_count: int


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Request ``attempt`` (1-based) failed with ``error_code``; the next one runs after
    ``delay_ms``."""

    store: str | None
    operation: str | None
    table: str | None
    attempt: int
    error_code: str
    delay_ms: float


Fallback = Literal["miss", "skipped", "local", "admitted", "refused"]


@dataclass(frozen=True, slots=True)
class FallbackEvent:
    """``operation`` met an unavailable DynamoDB (``error``) and returned ``fallback``
    instead of raising, as the store's ``on_unavailable`` (``mode``) says: a cache ``miss``,
    a write ``skipped``, dedupe work run ``local``, a limiter that ``admitted`` or
    ``refused``."""

    store: str
    table: str
    operation: str
    key: str | None
    mode: str
    fallback: Fallback
    error: BaseException


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """One health check of ``store``: a DynamoDB round trip that took ``latency_ms``."""

    store: str
    table: str
    healthy: bool
    latency_ms: float
    checked_at_ms: int
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class MetricEvent:
    """A custom metric: ``value`` in CloudWatch ``unit``, with ``dimensions``."""

    name: str
    value: float
    unit: str
    timestamp_ms: int
    dimensions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CorrelationEvent:
    """A correlation that ran for ``duration_ms`` and ended in ``success`` (or ``error``)."""

    correlation_id: str
    operation: str
    duration_ms: float
    success: bool
    metadata: tuple[tuple[str, str], ...] = ()
    parent_id: str | None = None
    error: BaseException | None = None


ClientStore = Literal["cache", "dedupe", "rate_limit"]


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """One step of a request through the client flow.

    ``key`` is the request's cache and dedupe key (``"<METHOD> <url>"``, ignored parameters
    such as ``api_key`` removed, so events can be logged as they are), ``resource`` what the
    limiter counts it against, ``priority`` the limiter priority it asked for. The other
    fields are set by the signals they belong to: ``status`` (upstream status, or the status
    served to a dedupe joiner, or the 420/429 behind a ``Retry-After`` wait), ``waited_ms``
    (limiter, dedupe and ``Retry-After`` waits), ``admitted`` (limiter waits),
    ``duration_ms`` (the upstream call), ``store`` / ``operation`` / ``error`` (an
    unavailable store).
    """

    method: str
    key: str
    resource: str
    priority: str
    status: int | None = None
    waited_ms: int | None = None
    admitted: bool | None = None
    duration_ms: float | None = None
    store: ClientStore | None = None
    operation: str | None = None
    error: BaseException | None = None


_reported: set[tuple[int, int]] = set()
_reported_lock = threading.Lock()


def send(signal: NamedSignal, sender: Any, build: Callable[[], Any]) -> None:
    """Send ``build()`` as ``event`` to ``signal``'s receivers, if it has any.

    ``build`` runs only when someone listens to this sender (a receiver connected to another
    store does not make this one pay). Each receiver runs on its own: one that raises is
    logged (once per signal and receiver) and the others, and the caller, carry on.
    """
    if not signal.has_receivers_for(sender):
        return
    event = build()
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, event=event)
        except Exception:
            marker = (id(signal), id(receiver))
            with _reported_lock:
                first = marker not in _reported
                _reported.add(marker)
            if first:
                _log.exception(
                    "receiver %r of signal %r raised; ignored (reported once)",
                    receiver,
                    signal.name,
                )
