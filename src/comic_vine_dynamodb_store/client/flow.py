"""The client flow: cache, de-duplication and rate limiting around one HTTP call.

Written once, with no HTTP library: the ``requests`` session and the ``httpx`` transport only
translate their request and response types and hand :meth:`GuardedFlow.send` a callable that
performs the real call. For a GET or HEAD::

    cache.get ── hit ──────────────────────────────────────────────> stored response
       │ miss
    dedupe.register_or_join ── joined: wait_for ── result ─────────> stored response
       │ owner                                 └─ none: own attempt (limiter, API, cache)
    (cache.get again: another caller may have just finished)
    limiter.acquire (waiting up to max_wait_ms) ── refused ────────> RateLimitedError
    API ── 2xx: cache.set, dedupe.complete ────────────────────────> the API's response
        └─ other: dedupe.fail (waiters try themselves); 420/429 with Retry-After: wait, retry once

Other methods are only rate limited. The stores are the contracts of
:mod:`comic_vine_dynamodb_store.stores.contracts`, so the in-memory twins and the DynamoDB
stores serve the same way. A cache or dedupe store that raises ``StoreUnavailableError`` never
fails a request (it reads as a miss, or as no de-duplication); a limiter that raises it
refuses the request (``RateLimitedError``): the API's limit must hold even when DynamoDB does
not answer. Every step sends a ``ClientEvent`` signal
(:mod:`comic_vine_dynamodb_store.observability.signals`).
"""

from __future__ import annotations

import base64
import binascii
import inspect
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Generic, Literal, TypedDict, TypeVar, cast, get_args
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from blinker import NamedSignal

from comic_vine_dynamodb_store.clock import Clock
from comic_vine_dynamodb_store.errors import (
    ConfigurationError,
    DynamoDBStoreError,
    RateLimitedError,
    StoreUnavailableError,
)
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.contracts import (
    AdaptiveRateLimitStore,
    CacheStore,
    DedupeStore,
    Priority,
    RateLimitStore,
)

__all__ = [
    "CACHEABLE_METHODS",
    "FlowOptions",
    "FlowRequest",
    "FlowResponse",
    "GuardedFlow",
    "StoredResponse",
    "UpstreamResponse",
    "default_resource_for",
    "filter_headers",
    "monotonic_ms",
    "redact_url",
    "request_key",
    "retry_after_ms",
]

_log = logging.getLogger(__name__)

N = TypeVar("N")

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
"""Methods whose responses are cached and de-duplicated; every other one is only limited."""

RETRY_STATUSES = frozenset({420, 429})
""""Too many requests" (420 is Comic Vine's): honoured through ``Retry-After``."""

_MIN_PAUSE_MS = 10
"""Shortest pause between two refused admissions, when the limiter reports no wait (another
process took the room first): keeps a retry loop from spinning."""

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "te", "trailer", "trailers", "transfer-encoding", "upgrade"}
)
_NEVER_STORED = frozenset({"set-cookie", "set-cookie2"})
_IN_CACHE: dict[str, Any] = {"in_cache": True}
"""A dedupe result saying "read the response from the cache": the owner wrote it there, and a
cache value may be far larger than a dedupe item can hold."""


def monotonic_ms() -> int:
    """Milliseconds of a monotonic clock: what waits and budgets are measured with."""
    return time.monotonic_ns() // 1_000_000


# -- keys, URLs, headers ---------------------------------------------------------------------


def _query_parts(query: str, ignored: frozenset[str]) -> list[str]:
    """The query's ``name=value`` parts, as sent, without empty ones and ignored names."""
    return [
        part
        for part in query.split("&")
        if part and unquote_plus(part.partition("=")[0]) not in ignored
    ]


def _without_userinfo(netloc: str) -> str:
    return netloc.rpartition("@")[2]


def redact_url(url: str, ignored: Iterable[str] = ("api_key",)) -> str:
    """``url`` without the ``ignored`` query parameters, user info and fragment.

    The other parameters keep their order and encoding: this is the URL a stored response
    carries, so nothing secret is ever written to the table.
    """
    parts = urlsplit(url)
    query = "&".join(_query_parts(parts.query, frozenset(ignored)))
    return urlunsplit((parts.scheme, _without_userinfo(parts.netloc), parts.path, query, ""))


def request_key(method: str, url: str, ignored: Iterable[str] = ("api_key",)) -> str:
    """The cache and dedupe key of a request: ``"<METHOD> <url>"``.

    The query is sorted (the same request built with its parameters in another order shares
    the key) and the ``ignored`` parameters are removed (a key is stored in the table, and
    requests made with different API keys share their responses).
    """
    parts = urlsplit(url)
    query = "&".join(sorted(_query_parts(parts.query, frozenset(ignored))))
    target = urlunsplit((parts.scheme, _without_userinfo(parts.netloc), parts.path, query, ""))
    return f"{method.upper()} {target}"


def default_resource_for(url: str) -> str:
    """What the limiter counts a request against: the path segment after ``/api/``.

    Comic Vine limits each resource on its own (``/api/issue/4000-1/`` counts against
    ``issue``, ``/api/issues/`` against ``issues``). A URL with no ``api`` segment followed by
    another counts against its host: one limit for the whole API.
    """
    parts = urlsplit(url)
    segments = [segment for segment in parts.path.split("/") if segment]
    for index, segment in enumerate(segments[:-1]):
        if segment == "api":
            return segments[index + 1]
    return _without_userinfo(parts.netloc) or url


def filter_headers(
    headers: Iterable[tuple[str, str]], *, body_length: int | None
) -> list[tuple[str, str]]:
    """The headers a stored response keeps.

    Dropped: hop-by-hop headers (those of RFC 9110 section 7.6.1, ``Proxy-*`` and any the
    ``Connection`` header names), which describe one connection, and ``Set-Cookie``, which
    belongs to one client. The body is stored decoded, so ``Content-Encoding`` goes and
    ``Content-Length`` is the decoded length (``body_length``; None for HEAD, whose length
    is kept only when no encoding changed it).
    """
    pairs = list(headers)
    named_by_connection = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    encoded = any(
        name.lower() == "content-encoding" and value.strip().lower() not in {"", "identity"}
        for name, value in pairs
    )
    had_length = any(name.lower() == "content-length" for name, _ in pairs)
    kept: list[tuple[str, str]] = []
    for name, value in pairs:
        lower = name.lower()
        if (
            lower in _HOP_BY_HOP
            or lower.startswith("proxy-")
            or lower in _NEVER_STORED
            or lower in named_by_connection
            or lower == "content-encoding"
        ):
            continue
        if lower == "content-length" and (body_length is not None or encoded):
            continue
        kept.append((name, value))
    if body_length is not None and (had_length or encoded or body_length > 0):
        kept.append(("Content-Length", str(body_length)))
    return kept


def retry_after_ms(headers: Iterable[tuple[str, str]]) -> int | None:
    """The wait a ``Retry-After`` header asks for, in ms; None if absent or unreadable.

    Both forms of RFC 9110: seconds, or an HTTP date (a date in the past means 0).
    """
    value = next((v for name, v in headers if name.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return math.ceil(seconds * 1000) if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0, math.ceil(when.timestamp() * 1000 - time.time() * 1000))


# -- what goes in and out --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowRequest:
    """What the flow needs of a request: its method and full URL (query included)."""

    method: str
    url: str


_JOIN_ROUNDS = 2
"""How many times a caller joins another's request before making its own attempt."""


def _noop() -> None:
    return None


@dataclass(frozen=True, slots=True)
class UpstreamResponse(Generic[N]):
    """What an adapter's upstream call returns: the HTTP library's own response (``native``,
    handed back to the caller untouched) and what the flow reads of it.

    ``read_body`` returns the body with its ``Content-Encoding`` undone; the flow calls it only
    for a response it stores, so other responses stay streamable. ``close`` releases a
    response the flow discards (a 420/429 it retries).
    """

    native: N
    status: int
    reason: str
    headers: Sequence[tuple[str, str]]
    url: str
    read_body: Callable[[], bytes]
    close: Callable[[], None] = _noop


_BodyEncoding = Literal["utf-8", "base64"]


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response as the cache and dedupe stores hold it.

    Its JSON form (:meth:`to_json`) is ``{"status", "reason", "url", "headers": [[name,
    value], ...], "body", "body_encoding"}``: the body is the text itself when it decodes as
    UTF-8 (``"utf-8"``: JSON APIs store readable, compressible text), else base64
    (``"base64"``). ``url`` has the ignored parameters removed (:func:`redact_url`) and the
    headers are filtered (:func:`filter_headers`).
    """

    status: int
    reason: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def to_json(self) -> dict[str, Any]:
        """The JSON value stored in the cache and published to dedupe waiters."""
        encoding: _BodyEncoding
        try:
            text = self.body.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            text = base64.b64encode(self.body).decode("ascii")
            encoding = "base64"
        return {
            "status": self.status,
            "reason": self.reason,
            "url": self.url,
            "headers": [[name, value] for name, value in self.headers],
            "body": text,
            "body_encoding": encoding,
        }

    @classmethod
    def from_json(cls, value: object) -> StoredResponse | None:
        """The response ``value`` holds, or None when it is not one :meth:`to_json` made."""
        if not isinstance(value, dict):
            return None
        status, reason, url = value.get("status"), value.get("reason"), value.get("url")
        headers, body = value.get("headers"), value.get("body")
        encoding = value.get("body_encoding")
        if not (
            isinstance(status, int)
            and not isinstance(status, bool)
            and isinstance(reason, str)
            and isinstance(url, str)
            and isinstance(body, str)
            and encoding in get_args(_BodyEncoding)
            and isinstance(headers, list)
            and all(
                isinstance(pair, list)
                and len(pair) == 2
                and all(isinstance(part, str) for part in pair)
                for pair in headers
            )
        ):
            return None
        try:
            raw = (
                body.encode("utf-8")
                if encoding == "utf-8"
                else base64.b64decode(body, validate=True)
            )
        except (binascii.Error, UnicodeEncodeError):
            return None
        pairs = tuple((str(pair[0]), str(pair[1])) for pair in headers)
        return cls(status=status, reason=reason, url=url, headers=pairs, body=raw)


Source = Literal["cache", "dedupe", "upstream"]


@dataclass(frozen=True, slots=True)
class FlowResponse(Generic[N]):
    """The outcome of :meth:`GuardedFlow.send`.

    ``source`` says where it came from: ``"upstream"`` (this call's own request to the API;
    ``native`` is the HTTP library's response), ``"cache"`` or ``"dedupe"`` (another caller's
    response, ``stored``). :attr:`from_cache` is True for the last two: no request of this
    call reached the API.
    """

    source: Source
    native: N | None = None
    stored: StoredResponse | None = None

    @property
    def from_cache(self) -> bool:
        """True when the response was not fetched by this call."""
        return self.source != "upstream"


class FlowOptions(TypedDict, total=False):
    """The keywords of :class:`GuardedFlow`, which the adapters take as they are."""

    cache: CacheStore[Any] | None
    dedupe: DedupeStore[Any] | None
    rate_limit: RateLimitStore | AdaptiveRateLimitStore | None
    cache_ttl_seconds: float
    priority: Priority
    resource_for: Callable[[str], str]
    max_wait_ms: int
    ignored_parameters: Iterable[str]
    sleep: Callable[[float], None]
    clock: Clock


def _check_priority(priority: object, field: str = "priority") -> Priority:
    if priority not in get_args(Priority):
        raise ConfigurationError(
            f"priority must be 'user' or 'background', not {priority!r}", field=field
        )
    return cast(Priority, priority)


def _takes_priority(store: RateLimitStore | AdaptiveRateLimitStore) -> bool:
    """True when ``store.acquire`` takes a priority: the adaptive contract.

    Both limiter protocols have the same method names, so only the signature tells them
    apart; wrappers made with ``functools.wraps`` expose the wrapped one's.
    """
    try:
        parameters = inspect.signature(store.acquire).parameters
    except (TypeError, ValueError):
        return False
    return "priority" in parameters


def _is_stored_status(status: int) -> bool:
    # 206 is a part of the resource, asked for by a Range header the key does not include.
    return 200 <= status < 300 and status != 206


@dataclass(slots=True)
class _Call:
    """One ``send``: what every store call and signal of it names."""

    method: str
    key: str
    resource: str
    priority: Priority
    dedupe_down: bool = False
    """The dedupe store failed during this call: it is not asked again."""


class GuardedFlow:
    """Cache, de-duplication and rate limiting around one HTTP call; see the module docs.

    Every store is optional (None: that protection is off). ``cache_ttl_seconds`` is how long
    a response stays cached (0: until deleted). ``priority`` is the default limiter priority
    (an adaptive store's ``acquire(resource, priority)``; a plain store ignores it),
    ``resource_for(url)`` names what the limiter counts the request against. A refused
    admission waits (``get_wait_time``, then ``acquire`` again) while the wait fits in
    ``max_wait_ms``, counted from the first attempt and shared with ``Retry-After`` waits;
    beyond that the request fails with ``RateLimitedError`` before anything is sent.
    ``ignored_parameters`` are query parameters kept out of keys and stored URLs (secrets,
    cache busters). ``sleep`` (seconds) and ``clock`` (monotonic ms) are what waits use.

    Thread-safe: a flow holds no state of its own between calls.
    """

    def __init__(
        self,
        *,
        cache: CacheStore[Any] | None = None,
        dedupe: DedupeStore[Any] | None = None,
        rate_limit: RateLimitStore | AdaptiveRateLimitStore | None = None,
        cache_ttl_seconds: float = 3600,
        priority: Priority = "background",
        resource_for: Callable[[str], str] = default_resource_for,
        max_wait_ms: int = 60_000,
        ignored_parameters: Iterable[str] = ("api_key",),
        sleep: Callable[[float], None] = time.sleep,
        clock: Clock = monotonic_ms,
    ) -> None:
        if not cache_ttl_seconds >= 0:
            raise ConfigurationError(
                "cache_ttl_seconds must be 0 (no expiry) or more", field="cache_ttl_seconds"
            )
        if max_wait_ms < 0:
            raise ConfigurationError("max_wait_ms must be 0 or more", field="max_wait_ms")
        self.cache = cache
        self.dedupe = dedupe
        self.rate_limit = rate_limit
        self.cache_ttl_seconds = cache_ttl_seconds
        self.priority: Priority = _check_priority(priority)
        self.resource_for = resource_for
        self.max_wait_ms = max_wait_ms
        if isinstance(ignored_parameters, str):
            ignored_parameters = (ignored_parameters,)
        self.ignored_parameters = frozenset(ignored_parameters)
        self._sleep = sleep
        self._clock = clock
        self._adaptive: AdaptiveRateLimitStore | None = None
        self._plain: RateLimitStore | None = None
        if rate_limit is not None and _takes_priority(rate_limit):
            self._adaptive = cast(AdaptiveRateLimitStore, rate_limit)
        elif rate_limit is not None:
            self._plain = cast(RateLimitStore, rate_limit)

    # -- the flow ----------------------------------------------------------------------------

    def send(
        self,
        request: FlowRequest,
        upstream: Callable[[FlowRequest], UpstreamResponse[N]],
        *,
        priority: Priority | None = None,
    ) -> FlowResponse[N]:
        """Serve ``request``, calling ``upstream(request)`` only when no stored response does.

        ``priority`` overrides the flow's default for this request. Raises
        ``RateLimitedError`` when the limiter does not admit the request within
        ``max_wait_ms`` or is unavailable; whatever ``upstream`` raises passes through (and
        fails the dedupe job, so waiters try themselves).
        """
        method = request.method.upper()
        call = _Call(
            method=method,
            key=request_key(method, request.url, self.ignored_parameters),
            resource=self.resource_for(request.url),
            priority=self.priority if priority is None else _check_priority(priority),
        )
        if method not in CACHEABLE_METHODS:
            return FlowResponse("upstream", native=self._fetch(call, request, upstream).native)

        hit = self._read_cache(call)
        if hit is not None:
            self._announce(signals.client_cache_hit, call)
            return FlowResponse("cache", stored=hit)
        if self.cache is not None:
            self._announce(signals.client_cache_miss, call)

        registration = None
        for round_ in range(_JOIN_ROUNDS):
            registration = None
            if self.dedupe is not None:
                registration = self._dedupe_call(
                    call, "register_or_join", lambda store: store.register_or_join(call.key)
                )
            if registration is None or registration.is_owner:
                break
            shared = self._join(call)
            if shared is not None:
                return FlowResponse("dedupe", stored=shared)
            if round_ + 1 == _JOIN_ROUNDS or call.dedupe_down:
                return self._fetch_and_store(call, request, upstream, job_id=None)
            # The owner failed (or gave no answer in time). Rather than every waiter calling
            # the API at once, just when it may be pushing back, look again and register
            # again: one becomes the new owner, the others join it.
            hit = self._read_cache(call)
            if hit is not None:
                self._announce(signals.client_cache_hit, call)
                return FlowResponse("cache", stored=hit)
        job_id = None if registration is None else registration.job_id
        if job_id is not None:
            # A caller that finished between our cache read and our registration left the
            # key free; its response is in the cache, one read away from a second API call.
            hit = self._read_cache(call)
            if hit is not None:
                self._announce(signals.client_cache_hit, call)
                self._complete(call, job_id, _IN_CACHE)
                return FlowResponse("cache", stored=hit)
        return self._fetch_and_store(call, request, upstream, job_id=job_id)

    def _fetch_and_store(
        self,
        call: _Call,
        request: FlowRequest,
        upstream: Callable[[FlowRequest], UpstreamResponse[N]],
        *,
        job_id: str | None,
    ) -> FlowResponse[N]:
        """Fetch a GET/HEAD, store a 2xx, and finish the dedupe job ``job_id`` if we own one.

        The body is read only to store it: with nowhere to put it, it is left to the caller
        (who may stream it).
        """
        sharing = self.cache is not None or job_id is not None
        try:
            response = self._fetch(call, request, upstream, retry_after=True)
            stored = None
            if sharing and _is_stored_status(response.status):
                body = response.read_body()
                stored = StoredResponse(
                    status=response.status,
                    reason=response.reason,
                    url=redact_url(response.url, self.ignored_parameters),
                    headers=tuple(
                        filter_headers(
                            response.headers,
                            body_length=None if call.method == "HEAD" else len(body),
                        )
                    ),
                    body=body,
                )
        except BaseException as exc:
            if job_id is not None:
                self._fail(call, job_id, exc)
            raise
        if stored is None:
            if job_id is not None:
                self._fail(call, job_id, f"HTTP {response.status}")
            return FlowResponse("upstream", native=response.native)
        value = stored.to_json()
        in_cache = self._write_cache(call, value)
        if job_id is not None:
            self._complete(call, job_id, _IN_CACHE if in_cache else value)
        return FlowResponse("upstream", native=response.native)

    def _fetch(
        self,
        call: _Call,
        request: FlowRequest,
        upstream: Callable[[FlowRequest], UpstreamResponse[N]],
        *,
        retry_after: bool = False,
    ) -> UpstreamResponse[N]:
        """Admit, call the API; with ``retry_after``, honour one 420/429 ``Retry-After``."""
        started = self._clock()
        response = self._attempt(call, request, upstream, started)
        if not retry_after or response.status not in RETRY_STATUSES:
            return response
        delay_ms = retry_after_ms(response.headers)
        remaining_ms = self.max_wait_ms - (self._clock() - started)
        if delay_ms is None or delay_ms > remaining_ms:
            return response
        self._announce(signals.client_retry_after, call, status=response.status, waited_ms=delay_ms)
        response.close()
        if delay_ms > 0:
            self._sleep(delay_ms / 1000)
        return self._attempt(call, request, upstream, started)

    def _attempt(
        self,
        call: _Call,
        request: FlowRequest,
        upstream: Callable[[FlowRequest], UpstreamResponse[N]],
        started: int,
    ) -> UpstreamResponse[N]:
        self._admit(call, started)
        self._announce(signals.client_upstream_call, call)
        began = time.perf_counter()
        response = upstream(request)
        duration_ms = (time.perf_counter() - began) * 1000
        self._announce(
            signals.client_upstream_status, call, status=response.status, duration_ms=duration_ms
        )
        return response

    # -- the limiter -------------------------------------------------------------------------

    def _admit(self, call: _Call, started: int) -> None:
        """One ``acquire`` per attempt; refused, wait what the limiter says while the wait
        fits in what is left of ``max_wait_ms``, else ``RateLimitedError``."""
        if self._adaptive is None and self._plain is None:
            return
        first_refusal: int | None = None
        while True:
            if self._limiter(call, "acquire"):
                if first_refusal is not None:
                    self._announce(
                        signals.client_limiter_waited,
                        call,
                        waited_ms=self._clock() - first_refusal,
                        admitted=True,
                    )
                return
            now = self._clock()
            if first_refusal is None:
                first_refusal = now
            wait_ms = max(0, int(self._limiter(call, "get_wait_time")))
            remaining_ms = self.max_wait_ms - (now - started)
            if remaining_ms <= 0 or wait_ms > remaining_ms:
                self._announce(
                    signals.client_limiter_waited,
                    call,
                    waited_ms=now - first_refusal,
                    admitted=False,
                )
                raise RateLimitedError(
                    f"rate limit of {call.resource!r}: the next admission is {wait_ms} ms away, "
                    f"beyond what is left of max_wait_ms ({max(remaining_ms, 0)} of "
                    f"{self.max_wait_ms} ms); nothing was sent",
                    resource=call.resource,
                    wait_ms=wait_ms,
                )
            self._sleep(min(max(wait_ms, _MIN_PAUSE_MS), remaining_ms) / 1000)

    def _limiter(self, call: _Call, operation: Literal["acquire", "get_wait_time"]) -> Any:
        try:
            if self._adaptive is not None:
                if operation == "acquire":
                    return self._adaptive.acquire(call.resource, call.priority)
                return self._adaptive.get_wait_time(call.resource, call.priority)
            assert self._plain is not None
            if operation == "acquire":
                return self._plain.acquire(call.resource)
            return self._plain.get_wait_time(call.resource)
        except StoreUnavailableError as exc:
            self._unavailable(call, "rate_limit", operation, exc)
            raise RateLimitedError(
                f"rate limiter unavailable for {call.resource!r} ({exc}); nothing was sent",
                resource=call.resource,
            ) from exc

    # -- the cache ---------------------------------------------------------------------------

    def _read_cache(self, call: _Call) -> StoredResponse | None:
        if self.cache is None:
            return None
        try:
            value = self.cache.get(call.key)
        except StoreUnavailableError as exc:
            self._unavailable(call, "cache", "get", exc)
            return None
        if value is None:
            return None
        stored = StoredResponse.from_json(value)
        if stored is None:
            _log.warning("cached value for %r is not a stored response; read as a miss", call.key)
        return stored

    def _write_cache(self, call: _Call, value: dict[str, Any]) -> bool:
        """Cache ``value``; True once it is there. Failing to cache never fails the request."""
        if self.cache is None:
            return False
        try:
            self.cache.set(call.key, value, self.cache_ttl_seconds)
        except StoreUnavailableError as exc:
            self._unavailable(call, "cache", "set", exc)
            return False
        except (TypeError, ValueError) as exc:  # ItemTooLargeError is a ValueError
            _log.warning("response for %r not cached: %s", call.key, exc)
            return False
        return True

    # -- de-duplication ----------------------------------------------------------------------

    def _join(self, call: _Call) -> StoredResponse | None:
        """Wait for the owner's response; None sends the caller to its own attempt."""
        began = self._clock()
        value = self._dedupe_call(call, "wait_for", lambda store: store.wait_for(call.key))
        if value == _IN_CACHE:
            stored = self._read_cache(call)
        else:
            stored = None if value is None else StoredResponse.from_json(value)
        self._announce(
            signals.client_dedupe_joined,
            call,
            waited_ms=self._clock() - began,
            status=None if stored is None else stored.status,
        )
        return stored

    def _complete(self, call: _Call, job_id: str, value: dict[str, Any]) -> None:
        try:
            self._dedupe_call(
                call, "complete", lambda store: store.complete(call.key, value, job_id=job_id)
            )
        except (TypeError, ValueError) as exc:  # too large for a job: waiters fetch it
            _log.warning("dedupe result for %r not published: %s", call.key, exc)
            self._fail(call, job_id, f"result not published: {exc}")

    def _fail(self, call: _Call, job_id: str, error: BaseException | str) -> None:
        try:
            self._dedupe_call(
                call, "fail", lambda store: store.fail(call.key, error, job_id=job_id)
            )
        except DynamoDBStoreError as exc:  # the lease frees the key anyway
            _log.warning("could not mark the dedupe job for %r failed: %s", call.key, exc)

    def _dedupe_call(
        self, call: _Call, operation: str, run: Callable[[DedupeStore[Any]], Any]
    ) -> Any:
        """``run(dedupe)``; an unavailable store reads as "no de-duplication" (None)."""
        assert self.dedupe is not None
        try:
            return run(self.dedupe)
        except StoreUnavailableError as exc:
            call.dedupe_down = True
            self._unavailable(call, "dedupe", operation, exc)
            return None

    # -- signals -----------------------------------------------------------------------------

    def _unavailable(
        self,
        call: _Call,
        store: signals.ClientStore,
        operation: str,
        error: StoreUnavailableError,
    ) -> None:
        _log.warning("%s store unavailable during %s of %r: %s", store, operation, call.key, error)
        self._announce(
            signals.client_store_unavailable, call, store=store, operation=operation, error=error
        )

    def _announce(self, signal: NamedSignal, call: _Call, **fields: Any) -> None:
        signals.send(
            signal,
            self,
            lambda: signals.ClientEvent(
                method=call.method,
                key=call.key,
                resource=call.resource,
                priority=call.priority,
                **fields,
            ),
        )
