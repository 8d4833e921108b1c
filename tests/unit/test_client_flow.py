"""The client flow with the in-memory stores and a scripted API: every rule of the flow.

Time is a fake clock that the flow's ``sleep`` moves, so waits are exact and take no time.
Stores are wrapped in :class:`Spy`, which records every call (and can make one raise
``StoreUnavailableError``), so the tests see exactly which store operations a request costs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, cast

import pytest
from blinker import NamedSignal

from comic_vine_dynamodb_store.client.flow import (
    FlowRequest,
    FlowResponse,
    GuardedFlow,
    StoredResponse,
    UpstreamResponse,
    default_resource_for,
    filter_headers,
    redact_url,
    request_key,
    retry_after_ms,
)
from comic_vine_dynamodb_store.errors import (
    ConfigurationError,
    RateLimitedError,
    StoreUnavailableError,
)
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.contracts import Registration
from comic_vine_dynamodb_store.stores.memory_adaptive import InMemoryAdaptiveRateLimitStore
from comic_vine_dynamodb_store.stores.memory_cache import InMemoryCacheStore
from comic_vine_dynamodb_store.stores.memory_dedupe import InMemoryDedupeStore
from comic_vine_dynamodb_store.stores.memory_rate_limit import InMemoryRateLimitStore
from tests.support import FakeClock

T0 = 1_700_000_000_000
SECRET = "s3cr3t-k3y"
URL = f"https://cv.example/api/issue/4000-1/?format=json&api_key={SECRET}"
KEY = "GET https://cv.example/api/issue/4000-1/?format=json"
OTHER_URL = f"https://cv.example/api/issues/?offset=0&api_key={SECRET}"
BODY = b'{"error": "OK", "results": {"id": 1, "name": "Saga #1"}}'

CLIENT_SIGNALS = (
    signals.client_cache_hit,
    signals.client_cache_miss,
    signals.client_dedupe_joined,
    signals.client_limiter_waited,
    signals.client_retry_after,
    signals.client_upstream_call,
    signals.client_upstream_status,
    signals.client_store_unavailable,
)


# -- test doubles ----------------------------------------------------------------------------


class FakeTime:
    """A clock in ms and a ``sleep`` that moves it (and records what was slept)."""

    def __init__(self) -> None:
        self.clock = FakeClock(T0)
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(round(seconds * 1000))


class Spy:
    """Forwards every method call to ``inner`` and records it; the ``failing`` operations
    raise ``StoreUnavailableError`` instead (the store is down for them)."""

    def __init__(self, inner: Any, failing: Iterable[str] = ()) -> None:
        self.inner = inner
        self.failing = set(failing)
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        @functools.wraps(target)  # keeps the signature: how the flow tells adaptive stores
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            if name in self.failing:
                raise StoreUnavailableError(f"{name}: DynamoDB is down", operation=name)
            return target(*args, **kwargs)

        return call

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def args_of(self, name: str) -> list[tuple[Any, ...]]:
        return [args for called, args, _ in self.calls if called == name]


def spy(inner: Any, failing: Iterable[str] = ()) -> Any:
    return Spy(inner, failing)


@dataclass(frozen=True)
class Reply:
    """One scripted answer of the API."""

    status: int = 200
    body: bytes = BODY
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    reason: str = "OK"


@dataclass(frozen=True)
class Native:
    """Stands for the HTTP library's response object: the flow must hand it back untouched."""

    number: int
    status: int


@dataclass
class Api:
    """The upstream callable: answers from ``script`` in order (then 200), counts everything."""

    script: list[Reply | BaseException] = field(default_factory=list)
    requests: list[FlowRequest] = field(default_factory=list)
    body_reads: int = 0
    closed: int = 0

    def __call__(self, request: FlowRequest) -> UpstreamResponse[Native]:
        self.requests.append(request)
        reply = self.script.pop(0) if self.script else Reply()
        if isinstance(reply, BaseException):
            raise reply
        length = (("Content-Length", str(len(reply.body))),)

        def read_body() -> bytes:
            self.body_reads += 1
            return reply.body

        def close() -> None:
            self.closed += 1

        return UpstreamResponse(
            native=Native(len(self.requests), reply.status),
            status=reply.status,
            reason=reply.reason,
            headers=reply.headers + length,
            url=request.url,
            read_body=read_body,
            close=close,
        )


class AlwaysFull:
    """A limiter some other process keeps full: refuses, and always says "1 s"."""

    def __init__(self, wait_ms: int = 1000) -> None:
        self.wait_ms = wait_ms
        self.acquires = 0

    def acquire(self, resource: str) -> bool:
        self.acquires += 1
        return False

    def get_wait_time(self, resource: str) -> int:
        return self.wait_ms


Events = list[tuple[str, signals.ClientEvent]]


@pytest.fixture
def time_() -> FakeTime:
    return FakeTime()


@pytest.fixture
def api() -> Api:
    return Api()


@pytest.fixture
def events() -> Iterator[Events]:
    """Every client signal sent during the test, in order, as (signal name, event)."""
    seen: Events = []

    def receiver_for(signal: NamedSignal) -> Callable[..., None]:
        def receive(sender: Any, event: signals.ClientEvent) -> None:
            seen.append((signal.name, event))

        return receive

    with contextlib.ExitStack() as stack:
        for signal in CLIENT_SIGNALS:
            stack.enter_context(signal.connected_to(receiver_for(signal)))
        yield seen


def names(events: Events) -> list[str]:
    return [name for name, _ in events]


def of(events: Events, name: str) -> list[signals.ClientEvent]:
    return [event for seen, event in events if seen == name]


def make_flow(time_: FakeTime, **options: Any) -> GuardedFlow:
    return GuardedFlow(sleep=time_.sleep, clock=time_.clock, **options)


def cache_store(time_: FakeTime) -> InMemoryCacheStore[Any]:
    return InMemoryCacheStore(clock=time_.clock)


def dedupe_store(time_: FakeTime, sleep: Callable[[float], None] | None = None) -> Any:
    return InMemoryDedupeStore(clock=time_.clock, sleep=sleep)


def limiter(time_: FakeTime, limit: int = 100, window_ms: int = 60_000) -> InMemoryRateLimitStore:
    return InMemoryRateLimitStore(
        default_config={"limit": limit, "window_ms": window_ms}, clock=time_.clock
    )


def get(flow: GuardedFlow, api: Api, url: str = URL, **kwargs: Any) -> FlowResponse[Native]:
    return flow.send(FlowRequest("GET", url), api, **kwargs)


def stored_value(status: int = 200, body: bytes = BODY) -> dict[str, Any]:
    return StoredResponse(
        status=status,
        reason="OK",
        url="https://cv.example/api/issue/4000-1/?format=json",
        headers=(("Content-Type", "application/json"), ("Content-Length", str(len(body)))),
        body=body,
    ).to_json()


# -- keys, URLs, headers ---------------------------------------------------------------------


def test_key_sorts_the_query_and_drops_ignored_parameters_user_info_and_fragment() -> None:
    first = "https://user:pw@cv.example/api/issues/?offset=0&api_key=x&limit=10#top"
    second = "https://cv.example/api/issues/?limit=10&api%5Fkey=y&offset=0"
    expected = "GET https://cv.example/api/issues/?limit=10&offset=0"
    assert request_key("get", first) == expected
    assert request_key("GET", second) == expected
    assert request_key("HEAD", second) == expected.replace("GET", "HEAD")
    assert request_key("GET", second, ignored=()) != expected
    assert request_key("GET", "https://cv.example/api/issues/?offset=10") != request_key(
        "GET", "https://cv.example/api/issues/?offset=0"
    )


def test_redacted_url_keeps_the_order_and_encoding_of_what_is_left() -> None:
    url = "https://user:pw@cv.example/api/search/?query=saga%20vol&api_key=x&limit=5#frag"
    assert redact_url(url) == "https://cv.example/api/search/?query=saga%20vol&limit=5"
    assert redact_url(url, ignored=("api_key", "limit")) == (
        "https://cv.example/api/search/?query=saga%20vol"
    )


@pytest.mark.parametrize(
    ("url", "resource"),
    [
        ("https://comicvine.gamespot.com/api/issue/4000-14582/?api_key=x", "issue"),
        ("https://comicvine.gamespot.com/api/issues/?offset=100", "issues"),
        ("http://127.0.0.1:8080/api/volume/4050-1/", "volume"),
        ("https://other.example/v2/things/1", "other.example"),
        ("https://other.example/api", "other.example"),
        ("https://user:pw@other.example:8443/", "other.example:8443"),
    ],
)
def test_default_resource_is_the_segment_after_api_else_the_host(url: str, resource: str) -> None:
    assert default_resource_for(url) == resource


def test_stored_headers_drop_hop_by_hop_cookies_and_the_encoding() -> None:
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
        ("Content-Length", "120"),
        ("Connection", "keep-alive, X-Trace"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Proxy-Authenticate", "Basic"),
        ("TE", "trailers"),
        ("Trailer", "Expires"),
        ("Upgrade", "h2c"),
        ("Set-Cookie", "session=abc"),
        ("X-Trace", "connection-scoped"),
        ("X-RateLimit-Remaining", "10"),
    ]
    assert filter_headers(headers, body_length=500) == [
        ("Content-Type", "application/json"),
        ("X-RateLimit-Remaining", "10"),
        ("Content-Length", "500"),
    ]


def test_head_keeps_its_length_unless_an_encoding_changed_it() -> None:
    plain = [("Content-Type", "text/plain"), ("Content-Length", "42")]
    assert filter_headers(plain, body_length=None) == plain
    encoded = [*plain, ("Content-Encoding", "gzip")]
    assert filter_headers(encoded, body_length=None) == [("Content-Type", "text/plain")]
    # An empty body without a length (204) gets none.
    assert filter_headers([("Date", "x")], body_length=0) == [("Date", "x")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3000), (" 1.5 ", 1500), ("0", 0), ("-1", None), ("soon", None), ("nan", None)],
)
def test_retry_after_in_seconds(value: str, expected: int | None) -> None:
    assert retry_after_ms([("Retry-After", value)]) == expected


def test_retry_after_as_a_date_and_absent() -> None:
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after_ms([("retry-after", past)]) == 0
    future = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    wait = retry_after_ms([("Retry-After", future)])
    assert wait is not None
    assert 3_500_000 < wait <= 3_600_000
    assert retry_after_ms([("Content-Type", "text/plain")]) is None


def test_stored_response_json_keeps_text_readable_and_binary_as_base64() -> None:
    text = StoredResponse(200, "OK", "https://x.example/", (("A", "1"),), "é ok".encode())
    value = text.to_json()
    assert value["body"] == "é ok"
    assert value["body_encoding"] == "utf-8"
    assert json.loads(json.dumps(value)) == value
    assert StoredResponse.from_json(value) == text

    binary = StoredResponse(200, "OK", "https://x.example/", (), b"\x89PNG\xff\x00")
    value = binary.to_json()
    assert value["body_encoding"] == "base64"
    assert StoredResponse.from_json(value) == binary


@pytest.mark.parametrize(
    "value",
    [
        None,
        "text",
        {"status": 200},
        {**stored_value(), "status": True},
        {**stored_value(), "headers": [["only-a-name"]]},
        {**stored_value(), "body_encoding": "gzip"},
        {**stored_value(), "body": "!!not base64!!", "body_encoding": "base64"},
    ],
)
def test_values_not_made_by_the_flow_are_not_responses(value: object) -> None:
    assert StoredResponse.from_json(value) is None


# -- options ---------------------------------------------------------------------------------


def test_bad_options_and_priorities_are_refused_before_any_request(
    time_: FakeTime, api: Api
) -> None:
    with pytest.raises(ConfigurationError) as bad_priority:
        make_flow(time_, priority=cast(Any, "vip"))
    assert bad_priority.value.field == "priority"
    with pytest.raises(ConfigurationError):
        make_flow(time_, max_wait_ms=-1)
    with pytest.raises(ConfigurationError):
        make_flow(time_, cache_ttl_seconds=-5)
    flow = make_flow(time_)
    with pytest.raises(ConfigurationError):
        get(flow, api, priority=cast(Any, "urgent"))
    assert api.requests == []


def test_with_no_store_every_request_goes_upstream(time_: FakeTime, api: Api) -> None:
    flow = make_flow(time_)
    first, second = get(flow, api), get(flow, api)
    assert (first.source, second.source) == ("upstream", "upstream")
    assert first.native == Native(1, 200)
    assert second.native == Native(2, 200)
    assert not first.from_cache
    assert api.body_reads == 0  # nothing to store, so the body is left to the caller


# -- cache -----------------------------------------------------------------------------------


def test_a_miss_goes_upstream_once_and_the_next_get_is_a_hit(
    time_: FakeTime, api: Api, events: Events
) -> None:
    cache = cache_store(time_)
    flow = make_flow(time_, cache=cache, cache_ttl_seconds=60)

    first = get(flow, api)
    assert first.source == "upstream"
    assert first.native == Native(1, 200)
    second = get(flow, api, url=URL.replace(SECRET, "someone-elses-key"))
    assert second.source == "cache"
    assert second.from_cache
    assert second.stored == StoredResponse(
        status=200,
        reason="OK",
        url="https://cv.example/api/issue/4000-1/?format=json",
        headers=(("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))),
        body=BODY,
    )
    assert len(api.requests) == 1
    assert cache.get(KEY) == {
        "status": 200,
        "reason": "OK",
        "url": "https://cv.example/api/issue/4000-1/?format=json",
        "headers": [["Content-Type", "application/json"], ["Content-Length", str(len(BODY))]],
        "body": BODY.decode(),
        "body_encoding": "utf-8",
    }
    assert names(events) == [
        "client-cache-miss",
        "client-upstream-call",
        "client-upstream-status",
        "client-cache-hit",
    ]
    # cache_ttl_seconds is the stored response's lifetime.
    time_.clock.advance(60_000)
    assert get(flow, api).source == "upstream"


def test_get_and_head_are_cached_apart(time_: FakeTime, api: Api) -> None:
    cache = cache_store(time_)
    flow = make_flow(time_, cache=cache)
    head = flow.send(FlowRequest("HEAD", URL), api)
    assert head.source == "upstream"
    assert get(flow, api).source == "upstream"
    again = flow.send(FlowRequest("head", URL), api)
    assert again.source == "cache"
    assert again.stored is not None
    assert again.stored.body == BODY  # the scripted API sends one; the store keeps it
    assert len(api.requests) == 2
    assert cache.get(KEY.replace("GET", "HEAD")) is not None


def test_an_unusable_cached_value_reads_as_a_miss_and_is_replaced(
    time_: FakeTime, api: Api
) -> None:
    cache = cache_store(time_)
    cache.set(KEY, {"not": "a response"}, 60)
    flow = make_flow(time_, cache=cache)
    assert get(flow, api).source == "upstream"
    assert StoredResponse.from_json(cache.get(KEY)) is not None
    assert get(flow, api).source == "cache"


@pytest.mark.parametrize("status", [200, 201, 203, 204])
def test_2xx_responses_are_stored(time_: FakeTime, api: Api, status: int) -> None:
    body = b"" if status == 204 else BODY
    api.script = [Reply(status=status, body=body)]
    flow = make_flow(time_, cache=cache_store(time_))
    get(flow, api)
    hit = get(flow, api)
    assert hit.stored is not None
    assert (hit.stored.status, hit.stored.body) == (status, body)
    assert len(api.requests) == 1


@pytest.mark.parametrize("status", [206, 301, 304, 404, 420, 429, 500, 503])
def test_other_responses_are_never_stored_and_fail_the_dedupe_job(
    time_: FakeTime, api: Api, status: int
) -> None:
    api.script = [Reply(status=status)]
    cache, dedupe = cache_store(time_), dedupe_store(time_)
    flow = make_flow(time_, cache=cache, dedupe=dedupe)

    response = get(flow, api)
    assert response.native == Native(1, status)
    assert cache.get(KEY) is None
    assert dedupe.get_stats().failed_jobs == 1
    assert api.body_reads == 0  # a response that is not stored stays unread
    assert get(flow, api).source == "upstream"
    assert len(api.requests) == 2


def test_ignored_parameters_are_in_no_key_no_stored_value_and_no_event(
    time_: FakeTime, api: Api, events: Events
) -> None:
    cache, dedupe = spy(cache_store(time_)), spy(dedupe_store(time_))
    limits = spy(limiter(time_))
    flow = make_flow(
        time_, cache=cache, dedupe=dedupe, rate_limit=limits, ignored_parameters="api_key"
    )
    get(flow, api)
    get(flow, api, url=URL.replace(SECRET, "another-key"))
    get(flow, api, url=OTHER_URL)

    written = json.dumps([cache.calls, dedupe.calls, limits.calls], default=repr)
    assert SECRET not in written
    assert "another-key" not in written
    assert "api_key" not in written
    assert cache.args_of("set")[0][0] == KEY
    assert all(SECRET not in repr(event) for _, event in events)
    # ...while the API itself got the key.
    assert all("api_key=" in request.url for request in api.requests)


def test_a_failing_cache_still_serves_from_upstream_and_says_so(
    time_: FakeTime, api: Api, events: Events
) -> None:
    cache = spy(cache_store(time_), failing={"get", "set"})
    flow = make_flow(time_, cache=cache)
    assert get(flow, api).native == Native(1, 200)
    assert get(flow, api).native == Native(2, 200)
    unavailable = of(events, "client-store-unavailable")
    assert [(event.store, event.operation) for event in unavailable] == [
        ("cache", "get"),
        ("cache", "set"),
    ] * 2
    assert all(isinstance(event.error, StoreUnavailableError) for event in unavailable)
    assert unavailable[0].key == KEY


# -- de-duplication --------------------------------------------------------------------------


def test_the_owner_publishes_a_pointer_to_the_cache_or_else_the_response(
    time_: FakeTime, api: Api
) -> None:
    with_cache = spy(dedupe_store(time_))
    get(make_flow(time_, cache=cache_store(time_), dedupe=with_cache), api)
    assert with_cache.names() == ["register_or_join", "complete"]
    [(key, value)] = with_cache.args_of("complete")
    assert key == KEY
    assert value == {"in_cache": True}  # the cache holds it; the job stays small
    assert with_cache.inner.get_stats().completed_jobs == 1  # with the owner's job id

    without_cache = spy(dedupe_store(time_))
    get(make_flow(time_, dedupe=without_cache), api)
    [(_, value)] = without_cache.args_of("complete")
    published = StoredResponse.from_json(value)
    assert published is not None
    assert published.body == BODY


def _joined(
    time_: FakeTime, finish: Callable[[InMemoryDedupeStore[Any], Registration], object]
) -> InMemoryDedupeStore[Any]:
    """A dedupe store where another caller owns KEY and ``finish``es it while we wait."""
    finished: list[bool] = []
    store: InMemoryDedupeStore[Any] = dedupe_store(time_, sleep=lambda _: on_poll())
    owner = store.register_or_join(KEY)

    def on_poll() -> None:
        if not finished:
            finished.append(True)
            finish(store, owner)

    return store


def test_a_joiner_gets_the_owners_response_without_calling_upstream(
    time_: FakeTime, api: Api, events: Events
) -> None:
    dedupe = _joined(
        time_, lambda store, owner: store.complete(KEY, stored_value(), job_id=owner.job_id)
    )
    limits = spy(limiter(time_))
    response = get(make_flow(time_, dedupe=dedupe, rate_limit=limits), api)
    assert response.source == "dedupe"
    assert response.from_cache
    assert response.stored is not None
    assert response.stored.body == BODY
    assert api.requests == []
    assert limits.calls == []
    [joined] = of(events, "client-dedupe-joined")
    assert joined.status == 200


def test_a_joiner_reads_the_cache_when_the_owner_points_there(time_: FakeTime, api: Api) -> None:
    cache = cache_store(time_)

    def finish(store: InMemoryDedupeStore[Any], owner: Registration) -> None:
        cache.set(KEY, stored_value(body=b'{"from": "cache"}'), 60)
        store.complete(KEY, {"in_cache": True}, job_id=owner.job_id)

    dedupe = _joined(time_, finish)
    # The first cache read misses (the owner has not written yet), the second finds it.
    response = get(make_flow(time_, cache=cache, dedupe=dedupe), api)
    assert response.source == "dedupe"
    assert response.stored is not None
    assert response.stored.body == b'{"from": "cache"}'
    assert api.requests == []


def test_a_joiner_of_a_failed_job_makes_its_own_attempt_through_the_limiter(
    time_: FakeTime, api: Api, events: Events
) -> None:
    dedupe = _joined(time_, lambda store, owner: store.fail(KEY, "HTTP 500", job_id=owner.job_id))
    cache, limits = cache_store(time_), spy(limiter(time_))
    response = get(make_flow(time_, cache=cache, dedupe=dedupe, rate_limit=limits), api)
    assert response.source == "upstream"
    assert len(api.requests) == 1
    assert limits.names() == ["acquire"]
    assert cache.get(KEY) is not None  # its own 2xx is cached for everyone
    [joined] = of(events, "client-dedupe-joined")
    assert joined.status is None


def test_after_a_failed_job_waiters_join_the_next_owner_instead_of_all_calling_upstream(
    time_: FakeTime, api: Api, events: Events
) -> None:
    owners: list[Registration] = []
    ours: list[Registration] = []

    class Busy(InMemoryDedupeStore[Any]):
        """The first owner fails; another waiter re-registers just before we do."""

        def register_or_join(self, key: str) -> Registration:
            if ours:  # our second registration: the other waiter got there first
                owners.append(super().register_or_join(key))
                assert owners[-1].is_owner
            ours.append(super().register_or_join(key))
            return ours[-1]

    store = Busy(clock=time_.clock, sleep=lambda _: on_poll(), poll_interval_ms=10)
    owners.append(InMemoryDedupeStore.register_or_join(store, KEY))

    def on_poll() -> None:
        if len(owners) == 1:
            store.fail(KEY, "HTTP 420", job_id=owners[0].job_id)
        else:
            store.complete(KEY, stored_value(), job_id=owners[1].job_id)

    limits = spy(limiter(time_))
    response = get(make_flow(time_, dedupe=store, rate_limit=limits), api)
    # We saw the first job fail, joined the second owner's job and got its response: the
    # API is called by the new owner alone, not by every waiter of the failed job.
    assert response.source == "dedupe"
    assert response.stored is not None
    assert response.stored.body == BODY
    assert api.requests == []
    assert limits.calls == []
    assert [e.status for e in of(events, "client-dedupe-joined")] == [None, 200]
    assert [r.is_owner for r in ours] == [False, False]


def test_an_upstream_error_fails_the_job_so_the_next_caller_tries_again(
    time_: FakeTime, api: Api
) -> None:
    api.script = [ConnectionError("reset by peer")]
    dedupe = dedupe_store(time_)
    flow = make_flow(time_, cache=cache_store(time_), dedupe=dedupe)
    with pytest.raises(ConnectionError):
        get(flow, api)
    assert dedupe.get_stats().failed_jobs == 1
    assert not dedupe.is_in_progress(KEY)
    assert get(flow, api).source == "upstream"
    assert dedupe.get_stats().completed_jobs == 1


def test_an_owner_finding_the_response_cached_after_registering_serves_it(
    time_: FakeTime, api: Api, events: Events
) -> None:
    cache = cache_store(time_)

    class RacedDedupe(InMemoryDedupeStore[Any]):
        """Another caller finishes between our cache read and our registration."""

        def register_or_join(self, key: str) -> Registration:
            cache.set(key, stored_value(), 60)
            return super().register_or_join(key)

    dedupe = RacedDedupe(clock=time_.clock)
    response = get(make_flow(time_, cache=cache, dedupe=dedupe), api)
    assert response.source == "cache"
    assert api.requests == []
    assert dedupe.get_stats().completed_jobs == 1  # the job we owned is finished, not left
    assert names(events) == ["client-cache-miss", "client-cache-hit"]


def test_a_response_too_large_for_a_job_fails_it_and_is_still_returned(
    time_: FakeTime, api: Api
) -> None:
    big = os.urandom(600_000).hex().encode()  # compresses poorly: above the job's item
    api.script = [Reply(body=big)]
    dedupe = dedupe_store(time_)
    response = get(make_flow(time_, dedupe=dedupe), api)
    assert response.native == Native(1, 200)
    assert dedupe.get_stats().failed_jobs == 1


@pytest.mark.parametrize("failing", ["register_or_join", "complete"])
def test_a_failing_dedupe_store_still_serves_and_says_so(
    time_: FakeTime, api: Api, events: Events, failing: str
) -> None:
    dedupe = spy(dedupe_store(time_), failing={failing})
    response = get(make_flow(time_, dedupe=dedupe), api)
    assert response.native == Native(1, 200)
    [event] = of(events, "client-store-unavailable")
    assert (event.store, event.operation) == ("dedupe", failing)


def test_a_joiner_whose_wait_fails_makes_its_own_attempt(
    time_: FakeTime, api: Api, events: Events
) -> None:
    inner = dedupe_store(time_)
    inner.register_or_join(KEY)  # someone else owns it
    dedupe = spy(inner, failing={"wait_for"})
    response = get(make_flow(time_, dedupe=dedupe), api)
    assert response.source == "upstream"
    assert len(api.requests) == 1
    [event] = of(events, "client-store-unavailable")
    assert (event.store, event.operation) == ("dedupe", "wait_for")


# -- the limiter -----------------------------------------------------------------------------


def test_admission_is_one_acquire_per_upstream_call(time_: FakeTime, api: Api) -> None:
    limits = spy(limiter(time_))
    flow = make_flow(time_, cache=cache_store(time_), rate_limit=limits)
    get(flow, api)
    get(flow, api)  # a hit: no admission
    get(flow, api, url=OTHER_URL)
    flow.send(FlowRequest("POST", OTHER_URL), api)
    assert limits.names() == ["acquire"] * 3
    assert limits.args_of("acquire") == [("issue",), ("issues",), ("issues",)]
    assert len(api.requests) == 3


def test_a_refused_admission_waits_for_the_limiter_then_goes(
    time_: FakeTime, api: Api, events: Events
) -> None:
    limits = spy(limiter(time_, limit=1, window_ms=1000))
    flow = make_flow(time_, rate_limit=limits)
    get(flow, api)
    get(flow, api)
    assert time_.sleeps == [1.0]
    assert limits.names() == ["acquire", "acquire", "get_wait_time", "acquire"]
    assert len(api.requests) == 2
    [waited] = of(events, "client-limiter-waited")
    assert (waited.waited_ms, waited.admitted, waited.resource) == (1000, True, "issue")


def test_the_limiter_is_waited_for_until_max_wait_ms_then_nothing_is_sent(
    time_: FakeTime, api: Api, events: Events
) -> None:
    full = AlwaysFull(wait_ms=1000)
    dedupe = dedupe_store(time_)
    flow = make_flow(time_, rate_limit=cast(Any, full), dedupe=dedupe, max_wait_ms=2500)
    with pytest.raises(RateLimitedError) as refused:
        get(flow, api)
    assert time_.sleeps == [1.0, 1.0]  # the third wait would pass max_wait_ms
    assert full.acquires == 3
    assert (refused.value.resource, refused.value.wait_ms) == ("issue", 1000)
    assert api.requests == []
    assert dedupe.get_stats().failed_jobs == 1
    [waited] = of(events, "client-limiter-waited")
    assert (waited.waited_ms, waited.admitted) == (2000, False)


def test_a_wait_beyond_max_wait_ms_is_refused_at_once(time_: FakeTime, api: Api) -> None:
    flow = make_flow(time_, rate_limit=limiter(time_, limit=1, window_ms=60_000), max_wait_ms=5000)
    get(flow, api)
    with pytest.raises(RateLimitedError) as refused:
        get(flow, api)
    assert refused.value.wait_ms == 60_000
    assert time_.sleeps == []
    assert len(api.requests) == 1
    no_wait = make_flow(time_, rate_limit=cast(Any, AlwaysFull(wait_ms=0)), max_wait_ms=0)
    with pytest.raises(RateLimitedError):
        get(no_wait, api)
    assert time_.sleeps == []


def test_a_refusal_with_no_reported_wait_pauses_a_little_before_retrying(
    time_: FakeTime, api: Api
) -> None:
    full = AlwaysFull(wait_ms=0)  # raced: another process took the room just now
    with pytest.raises(RateLimitedError):
        get(make_flow(time_, rate_limit=cast(Any, full), max_wait_ms=35), api)
    assert time_.sleeps == [0.01, 0.01, 0.01, 0.005]
    assert full.acquires == 5


def test_an_adaptive_store_gets_the_priority(time_: FakeTime, api: Api) -> None:
    adaptive = spy(
        InMemoryAdaptiveRateLimitStore(
            default_config={"limit": 10, "window_ms": 60_000}, clock=time_.clock
        )
    )
    flow = make_flow(time_, rate_limit=adaptive, priority="background")
    get(flow, api, priority="user")
    get(flow, api, url=OTHER_URL)
    assert adaptive.args_of("acquire") == [("issue", "user"), ("issues", "background")]
    assert adaptive.inner.get_status("issue").remaining == 9

    plain = spy(limiter(time_))
    get(make_flow(time_, rate_limit=plain), api, priority="user")
    assert plain.args_of("acquire") == [("issue",)]


def test_user_requests_go_where_background_ones_wait(time_: FakeTime, api: Api) -> None:
    adaptive = InMemoryAdaptiveRateLimitStore(
        default_config={"limit": 10, "window_ms": 60_000}, clock=time_.clock
    )
    split = adaptive.get_status("issues").adaptive
    assert split is not None
    assert 0 < split.background_max < 10
    flow = make_flow(time_, rate_limit=adaptive, max_wait_ms=0)
    for page in range(split.background_max):  # what background work may use
        get(flow, api, url=f"{OTHER_URL}&offset={page}")
    with pytest.raises(RateLimitedError):
        get(flow, api, url=f"{OTHER_URL}&offset=99")
    assert get(flow, api, url=f"{OTHER_URL}&offset=99", priority="user").source == "upstream"


def test_a_failing_limiter_refuses_the_request(time_: FakeTime, api: Api, events: Events) -> None:
    dedupe = dedupe_store(time_)
    flow = make_flow(time_, rate_limit=spy(limiter(time_), failing={"acquire"}), dedupe=dedupe)
    with pytest.raises(RateLimitedError) as refused:
        get(flow, api)
    assert isinstance(refused.value.__cause__, StoreUnavailableError)
    assert api.requests == []
    assert dedupe.get_stats().failed_jobs == 1
    [event] = of(events, "client-store-unavailable")
    assert (event.store, event.operation) == ("rate_limit", "acquire")


def test_other_methods_are_only_rate_limited(time_: FakeTime, api: Api) -> None:
    cache, dedupe, limits = spy(cache_store(time_)), spy(dedupe_store(time_)), spy(limiter(time_))
    flow = make_flow(time_, cache=cache, dedupe=dedupe, rate_limit=limits)
    for method in ("POST", "PUT", "DELETE", "post"):
        assert flow.send(FlowRequest(method, URL), api).source == "upstream"
    assert cache.calls == []
    assert dedupe.calls == []
    assert limits.names() == ["acquire"] * 4
    assert len(api.requests) == 4
    assert api.body_reads == 0


# -- 420 / 429 -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [420, 429])
def test_retry_after_within_max_wait_is_waited_then_retried_once_through_the_limiter(
    time_: FakeTime, api: Api, events: Events, status: int
) -> None:
    api.script = [Reply(status=status, headers=(("Retry-After", "2"),))]
    cache, limits = cache_store(time_), spy(limiter(time_))
    flow = make_flow(time_, cache=cache, rate_limit=limits, max_wait_ms=5000)
    response = get(flow, api)
    assert response.native == Native(2, 200)
    assert time_.sleeps == [2.0]
    assert limits.names() == ["acquire", "acquire"]
    assert api.closed == 1  # the refused response was released
    assert StoredResponse.from_json(cache.get(KEY)) is not None
    [retry] = of(events, "client-retry-after")
    assert (retry.status, retry.waited_ms) == (status, 2000)


def test_retry_after_is_honoured_once_only(time_: FakeTime, api: Api) -> None:
    limited = Reply(status=429, headers=(("Retry-After", "0"),))
    api.script = [limited, limited, Reply()]
    cache = cache_store(time_)
    response = get(make_flow(time_, cache=cache), api)
    assert response.native == Native(2, 429)
    assert cache.get(KEY) is None
    assert time_.sleeps == []


def test_retry_after_beyond_max_wait_returns_the_420(time_: FakeTime, api: Api) -> None:
    api.script = [Reply(status=420, headers=(("Retry-After", "30"),))]
    cache, dedupe = cache_store(time_), dedupe_store(time_)
    flow = make_flow(time_, cache=cache, dedupe=dedupe, max_wait_ms=10_000)
    response = get(flow, api)
    assert response.native == Native(1, 420)
    assert time_.sleeps == []
    assert cache.get(KEY) is None
    assert dedupe.get_stats().failed_jobs == 1


def test_a_420_without_retry_after_is_returned_as_it_is(time_: FakeTime, api: Api) -> None:
    api.script = [Reply(status=420)]
    response = get(make_flow(time_), api)
    assert response.native == Native(1, 420)
    assert len(api.requests) == 1


def test_a_retry_after_date_already_past_retries_at_once(time_: FakeTime, api: Api) -> None:
    past = format_datetime(datetime.now(UTC) - timedelta(minutes=5), usegmt=True)
    api.script = [Reply(status=429, headers=(("Retry-After", past),))]
    response = get(make_flow(time_), api)
    assert response.native == Native(2, 200)
    assert time_.sleeps == []


def test_limiter_waits_and_retry_after_share_max_wait_ms(time_: FakeTime, api: Api) -> None:
    api.script = [Reply(status=429, headers=(("Retry-After", "2"),))]
    limits = limiter(time_, limit=1, window_ms=2000)
    limits.acquire("issue")  # full for 2 s
    response = get(make_flow(time_, rate_limit=limits, max_wait_ms=3000), api)
    assert time_.sleeps == [2.0]  # the limiter took 2 s: 1 s left, less than Retry-After
    assert response.native == Native(1, 429)


def test_post_is_not_retried_after_a_429(time_: FakeTime, api: Api) -> None:
    api.script = [Reply(status=429, headers=(("Retry-After", "1"),))]
    response = make_flow(time_).send(FlowRequest("POST", URL), api)
    assert response.native == Native(1, 429)
    assert time_.sleeps == []


# -- signals ---------------------------------------------------------------------------------


def test_every_step_is_signalled_with_its_payload(
    time_: FakeTime, api: Api, events: Events
) -> None:
    flow = make_flow(
        time_, cache=cache_store(time_), dedupe=dedupe_store(time_), rate_limit=limiter(time_)
    )
    get(flow, api, priority="user")
    miss, call, status = (event for _, event in events)
    assert names(events) == ["client-cache-miss", "client-upstream-call", "client-upstream-status"]
    for event in (miss, call, status):
        assert (event.method, event.key, event.resource, event.priority) == (
            "GET",
            KEY,
            "issue",
            "user",
        )
    assert status.status == 200
    assert status.duration_ms is not None
    assert status.duration_ms >= 0
    assert miss.status is None
    assert miss.error is None
    events.clear()
    get(flow, api)
    [(name, hit)] = events
    assert (name, hit.priority, hit.key) == ("client-cache-hit", "background", KEY)


def test_the_flow_is_the_sender(time_: FakeTime, api: Api) -> None:
    flow = make_flow(time_, cache=cache_store(time_))
    senders: list[Any] = []

    def receive(sender: Any, event: signals.ClientEvent) -> None:
        senders.append(sender)

    with signals.client_cache_miss.connected_to(receive, sender=flow):
        get(flow, api)
        get(make_flow(time_, cache=cache_store(time_)), api)
    assert senders == [flow]


# -- packaging -------------------------------------------------------------------------------


def test_the_client_package_imports_without_httpx() -> None:
    script = (
        "import sys\n"
        "sys.modules['httpx'] = None  # as if it were not installed\n"
        "import comic_vine_dynamodb_store.client as client\n"
        "assert client.GuardedSession is not None\n"
        "try:\n"
        "    client.GuardedTransport\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert "GuardedTransport needs httpx" in done.stdout
