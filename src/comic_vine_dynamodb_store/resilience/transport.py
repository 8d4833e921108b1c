"""What every DynamoDB request of a store goes through below PynamoDB: retries and metering.

:class:`StoreConnection` is PynamoDB's ``Connection`` with three things added to each botocore
client it makes:

* **the one retry layer**: botocore's own standard retry handler (which errors are retried:
  throttling, 5xx, connection errors, timeouts), re-registered with ``max_retries + 1``
  attempts and a full-jitter exponential backoff whose base is ``retry_delay_ms``
  (``delay = rand(0, 1) * retry_delay_ms * 2 ** (attempt - 1)``, capped at 20 s). No retry
  starts past the meter's ``deadline`` (the last moment a whole attempt still fits in
  ``circuit_breaker.timeout_ms``), so an operation ends within it even when every attempt
  times out;
* **a meter**: each request sent (retries and injected faults included), each retry, the
  consumed capacity DynamoDB reports and the last request id are added to the
  :class:`RequestMeter` of the operation running in this thread or task (a contextvar set by
  the pipeline), which is how stores report "requests per operation" and capacity;
* optionally **the caller's botocore session** (the ``client`` option), used instead of a new one.

Fault injection in tests registers on the same client's ``before-send`` event, below this
layer, so the real retry path runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import botocore.session
from botocore.retries import quota, standard
from pynamodb.connection import Connection

from comic_vine_dynamodb_store.observability import signals

__all__ = ["RequestMeter", "StoreConnection", "current_meter", "metering"]

_MAX_BACKOFF_S = 20.0


@dataclass(slots=True)
class RequestMeter:
    """What one store operation cost in DynamoDB requests.

    ``deadline`` is a ``time.monotonic()`` value after which no retry starts (set by the
    pipeline so that a retry's whole attempt still ends within the operation's budget).
    """

    store: str | None = None
    operation: str | None = None
    table: str | None = None
    deadline: float | None = None
    requests: int = 0
    retries: int = 0
    consumed_capacity: float = 0.0
    request_id: str | None = None
    error_codes: list[str] = field(default_factory=list)


_meter: contextvars.ContextVar[RequestMeter | None] = contextvars.ContextVar(
    "comic_vine_dynamodb_store_meter", default=None
)


def current_meter() -> RequestMeter | None:
    """The meter of the operation running in this context, if any."""
    return _meter.get()


@contextlib.contextmanager
def metering(meter: RequestMeter) -> Iterator[RequestMeter]:
    """Attribute every request made inside the block to ``meter``."""
    token = _meter.set(meter)
    try:
        yield meter
    finally:
        _meter.reset(token)


class _JitteredBackoff(standard.BaseRetryBackoff):
    def __init__(self, base_delay_s: float) -> None:
        self._base = base_delay_s

    def delay_amount(self, context: standard.RetryContext) -> float:
        exponential = self._base * 2 ** (context.attempt_number - 1)
        return float(random.random() * min(exponential, _MAX_BACKOFF_S))


class _DeadlineAwareRetries:
    """botocore's standard retry handler, refusing retries past the operation's deadline."""

    def __init__(self, client: Any, *, max_attempts: int, base_delay_s: float) -> None:
        adapter = standard.RetryEventAdapter()
        detector = standard.ThrottlingErrorDetector(adapter)
        self._handler = standard.RetryHandler(
            retry_policy=standard.RetryPolicy(
                retry_checker=standard.StandardRetryConditions(max_attempts=max_attempts),
                retry_backoff=_JitteredBackoff(base_delay_s),
            ),
            retry_event_adapter=adapter,
            # The stubs say RetryQuota; botocore itself passes this checker (see
            # standard.register_retry_handler).
            retry_quota=standard.RetryQuotaChecker(quota.RetryQuota(), detector),  # type: ignore[arg-type]
            service_name="dynamodb",
        )

    def needs_retry(self, **kwargs: Any) -> float | None:
        delay = self._handler.needs_retry(**kwargs)
        if delay is None or delay is False:  # False: retry refused, stop other handlers
            return None
        meter = _meter.get()
        deadline = meter.deadline if meter is not None else None
        if deadline is not None and time.monotonic() + delay >= deadline:
            return None
        attempt = int(kwargs.get("attempts", 0))
        code = _error_code(kwargs.get("response"), kwargs.get("caught_exception"))
        if meter is not None:
            meter.retries += 1
            meter.error_codes.append(code)
        signals.send(
            signals.request_retried,
            meter.store if meter else None,
            lambda: signals.RetryEvent(
                store=meter.store if meter else None,
                operation=meter.operation if meter else None,
                table=meter.table if meter else None,
                attempt=attempt,
                error_code=code,
                delay_ms=delay * 1000,
            ),
        )
        return delay


def _error_code(response: Any, caught: BaseException | None) -> str:
    if caught is not None:
        return type(caught).__name__
    if isinstance(response, tuple) and len(response) == 2:
        parsed = response[1] or {}
        error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
        return str(error.get("Code") or parsed.get("ResponseMetadata", {}).get("HTTPStatusCode"))
    return "unknown"


def _count_request(**_: Any) -> None:
    meter = _meter.get()
    if meter is not None:
        meter.requests += 1


def _record_response(parsed: Any = None, **_: Any) -> None:
    meter = _meter.get()
    if meter is None or not isinstance(parsed, dict):
        return
    capacity = parsed.get("ConsumedCapacity")
    entries = capacity if isinstance(capacity, list) else [capacity] if capacity else []
    meter.consumed_capacity += sum(float(e.get("CapacityUnits", 0.0)) for e in entries)
    request_id = parsed.get("ResponseMetadata", {}).get("RequestId")
    if request_id:
        meter.request_id = request_id


_session_lock = threading.RLock()
_session: botocore.session.Session | None = None


def _shared_session() -> botocore.session.Session:
    global _session  # noqa: PLW0603 - one lazily made session per process
    with _session_lock:
        if _session is None:
            _session = botocore.session.get_session()
        return _session


class StoreConnection(Connection):
    """A PynamoDB connection whose clients carry the store's retries and meter."""

    def __init__(
        self,
        *,
        region: str,
        host: str | None,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        max_retries: int,
        retry_delay_ms: int,
        session: botocore.session.Session | None = None,
    ) -> None:
        super().__init__(
            region=region,
            host=host,
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            max_retry_attempts=max_retries,
            # Standard mode with our attempt count; its backoff is replaced per client below.
            retry_configuration={"mode": "standard", "total_max_attempts": max_retries + 1},
        )
        self._max_attempts = max_retries + 1
        self._base_delay_s = retry_delay_ms / 1000
        self._given_session = session
        self._instrumented: Any = None

    @property
    def session(self) -> botocore.session.Session:
        """The caller's session when one was given, else one shared by the process.

        Sharing matters: each botocore session loads its own copy of the service model (about
        20 MB), and PynamoDB would make one per connection and thread. Client creation, the
        one part of a session that is not thread-safe, happens under ``_session_lock``.
        """
        if self._given_session is not None:
            return self._given_session
        return _shared_session()

    @property
    def client(self) -> Any:
        """PynamoDB's client, made under the session lock and instrumented once."""
        client = self._client
        signer = client._request_signer if client is not None else None
        if client is None or (signer is not None and not signer._credentials):
            with _session_lock:
                client = super().client
                if client is not self._instrumented:
                    self._instrument(client)
                    self._instrumented = client
        return client

    def _instrument(self, client: Any) -> None:
        events = client.meta.events
        events.unregister("needs-retry.dynamodb", unique_id="retry-config-dynamodb")
        retries = _DeadlineAwareRetries(
            client, max_attempts=self._max_attempts, base_delay_s=self._base_delay_s
        )
        events.register(
            "needs-retry.dynamodb", retries.needs_retry, unique_id="store-retries-dynamodb"
        )
        events.register_first("before-send.dynamodb", _count_request)
        events.register("after-call.dynamodb", _record_response)
