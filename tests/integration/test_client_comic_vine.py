"""``GuardedSession`` and ``GuardedTransport`` against ``FakeComicVine``, the Comic Vine-shaped API.

What the flow promises when the API or a store misbehaves: a body of several MB is fetched
once, stored whole (chunked on DynamoDB) and served intact; a cache or dedupe store that is
down never fails a request; a rate limiter that is down refuses every request before anything
is sent; a 420 from the API is never stored.

The flow does not care which stores it is given, so every test runs on the in-memory stores
and on the DynamoDB stores over DynamoDB Local (real clocks), and through both adapters
(``requests`` and ``httpx``). A store is taken down in one of three ways:

* ``memory``: the in-memory store, switched to raise ``StoreUnavailableError``;
* ``dynamodb-throttled``: every request of the store's botocore client is answered with a
  ``ThrottlingException`` (``tests/faults/conftest.py``), no retries, no circuit breaker;
* ``dynamodb-breaker-open``: one throttled request opens the store's circuit breaker
  (threshold 1), then DynamoDB answers again but the store sends nothing.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import botocore.session
import httpx
import pytest
import requests
from blinker import NamedSignal

from comic_vine_dynamodb_store.client import GuardedSession, GuardedTransport, request_key
from comic_vine_dynamodb_store.client.flow import GuardedFlow
from comic_vine_dynamodb_store.clock import system_clock_ms
from comic_vine_dynamodb_store.demo.fake_api import FakeComicVine
from comic_vine_dynamodb_store.errors import (
    CircuitBreakerOpenError,
    RateLimitedError,
    StoreUnavailableError,
    ThrottlingError,
)
from comic_vine_dynamodb_store.models import CacheChunk, CacheItem
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.cache import CHUNK_PAYLOAD_BYTES, DynamoDBCacheStore
from comic_vine_dynamodb_store.stores.contracts import Registration
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore
from comic_vine_dynamodb_store.stores.memory_cache import InMemoryCacheStore
from comic_vine_dynamodb_store.stores.memory_dedupe import InMemoryDedupeStore
from comic_vine_dynamodb_store.stores.memory_rate_limit import InMemoryRateLimitStore
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore
from tests.faults import conftest as faults

API_KEY = "cv-test-key"
REGION = "us-east-1"
LIMIT = {"limit": 1000, "window_ms": 60_000}
BIG_BYTES = 3_000_000
ITEM_LIMIT_BYTES = 400_000

Role = Literal["cache", "dedupe", "rate_limit"]
ADAPTERS = ["requests", "httpx"]
DYNAMODB = pytest.mark.dynamodb

inject = faults.inject
"""``inject(store)``: the fault injector of ``tests/faults``, attached to a store's client."""


# -- the API ---------------------------------------------------------------------------------


def issue_url(api: FakeComicVine, number: int) -> str:
    return f"{api.base_url}/issue/4000-{number}/?api_key={API_KEY}"


def issue_path(number: int) -> str:
    return f"/api/issue/4000-{number}/"


def key_of(api: FakeComicVine, number: int) -> str:
    """The cache and dedupe key the flow uses for issue ``number``."""
    return request_key("GET", issue_url(api, number))


def plain_body(url: str) -> bytes:
    """The body a client with no stores gets for ``url``."""
    with requests.Session() as session:
        response = session.get(url)
        assert response.status_code == 200, response.text[:200]
        return response.content


# -- the clients -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """What an adapter's response says, whichever adapter made it."""

    status: int
    content: bytes
    from_cache: bool

    def json(self) -> Any:
        return json.loads(self.content)


@dataclass(frozen=True)
class Client:
    """A guarded client of either adapter: ``get(url)`` and the flow behind it."""

    get: Callable[[str], Fetched]
    flow: GuardedFlow


@contextlib.contextmanager
def guarded_client(adapter: str, **options: Any) -> Iterator[Client]:
    if adapter == "requests":
        with GuardedSession(**options) as session:

            def get(url: str) -> Fetched:
                response = session.get(url)
                return Fetched(response.status_code, response.content, response.from_cache)  # type: ignore[attr-defined]

            yield Client(get, session.flow)
        return
    transport = GuardedTransport(**options)
    with httpx.Client(transport=transport) as client:

        def get_httpx(url: str) -> Fetched:
            response = client.get(url)
            return Fetched(
                response.status_code, response.content, bool(response.extensions["from_cache"])
            )

        yield Client(get_httpx, transport.flow)


def other_adapter(adapter: str) -> str:
    return "httpx" if adapter == "requests" else "requests"


@contextlib.contextmanager
def events_of(signal: NamedSignal, flow: GuardedFlow) -> Iterator[list[signals.ClientEvent]]:
    """The events ``signal`` carries for ``flow``'s requests inside the block."""
    seen: list[signals.ClientEvent] = []

    def receive(sender: object, event: signals.ClientEvent) -> None:
        seen.append(event)

    with signal.connected_to(receive, sender=flow):
        yield seen


# -- stores ----------------------------------------------------------------------------------


@dataclass
class Stores:
    kind: Literal["memory", "dynamodb"]
    cache: Any
    dedupe: Any
    rate_limit: Any
    make: Callable[..., Any] | None = None
    endpoint: str | None = None
    table: str | None = None

    def options(self, **extra: Any) -> dict[str, Any]:
        return {"cache": self.cache, "dedupe": self.dedupe, "rate_limit": self.rate_limit, **extra}

    def of(self, role: Role) -> Any:
        store: Any = getattr(self, role)
        return store


def memory_stores(
    cache: type[Any] = InMemoryCacheStore,
    dedupe: type[Any] = InMemoryDedupeStore,
    rate_limit: type[Any] = InMemoryRateLimitStore,
) -> Stores:
    return Stores(
        "memory",
        cache(),
        dedupe(poll_interval_ms=20),
        rate_limit(default_config=LIMIT),
    )


def dynamodb_stores(request: pytest.FixtureRequest, **options: Any) -> Stores:
    make: Callable[..., Any] = request.getfixturevalue("make_dynamodb_store")
    return Stores(
        "dynamodb",
        make(DynamoDBCacheStore, clock=system_clock_ms, **options),
        make(DynamoDBDedupeStore, clock=system_clock_ms, poll_interval_ms=20, **options),
        make(DynamoDBRateLimitStore, clock=system_clock_ms, default_config=LIMIT, **options),
        make=make,
        endpoint=request.getfixturevalue("endpoint"),
        table=request.getfixturevalue("table_name"),
    )


@pytest.fixture(params=["memory", pytest.param("dynamodb", marks=DYNAMODB)])
def stores(request: pytest.FixtureRequest) -> Iterator[Stores]:
    if request.param == "dynamodb":
        yield dynamodb_stores(request)
        return
    memory = memory_stores()
    yield memory
    for store in (memory.cache, memory.dedupe, memory.rate_limit):
        store.close()


@contextlib.contextmanager
def raw_dynamodb(endpoint: str) -> Iterator[Any]:
    client: Any = botocore.session.get_session().create_client(
        "dynamodb", region_name=REGION, endpoint_url=endpoint
    )
    try:
        yield client
    finally:
        client.close()


def raw_cache_items(endpoint: str, table: str, key: str) -> list[dict[str, Any]]:
    """Every item under ``key``'s cache partition (head and chunks), as DynamoDB holds them."""
    pk, _ = CacheItem.key_of("", key)
    with raw_dynamodb(endpoint) as raw:
        pages = raw.get_paginator("query").paginate(
            TableName=table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            ConsistentRead=True,
        )
        return [item for page in pages for item in page["Items"]]


# -- stores that can be taken down -----------------------------------------------------------


def _down(operation: str) -> StoreUnavailableError:
    return StoreUnavailableError(f"{operation}: the store is down", operation=operation)


class SwitchableCache(InMemoryCacheStore[Any]):
    """The in-memory cache, raising ``StoreUnavailableError`` once ``down`` is set."""

    down = False

    def get(self, key: str) -> Any:
        if self.down:
            raise _down("get")
        return super().get(key)

    def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        if self.down:
            raise _down("set")
        super().set(key, value, ttl_seconds)


class SwitchableDedupe(InMemoryDedupeStore[Any]):
    """The in-memory dedupe store, raising ``StoreUnavailableError`` once ``down`` is set."""

    down = False

    def register_or_join(self, key: str) -> Registration:
        if self.down:
            raise _down("register_or_join")
        return super().register_or_join(key)

    def wait_for(self, key: str) -> Any:
        if self.down:
            raise _down("wait_for")
        return super().wait_for(key)

    def complete(self, key: str, value: Any, job_id: str | None = None) -> bool:
        if self.down:
            raise _down("complete")
        return super().complete(key, value, job_id)

    def fail(self, key: str, error: BaseException | str, job_id: str | None = None) -> bool:
        if self.down:
            raise _down("fail")
        return super().fail(key, error, job_id)


class SwitchableRateLimit(InMemoryRateLimitStore):
    """The in-memory limiter, raising ``StoreUnavailableError`` once ``down`` is set."""

    down = False

    def acquire(self, resource: str) -> bool:
        if self.down:
            raise _down("acquire")
        return super().acquire(resource)

    def get_wait_time(self, resource: str) -> int:
        if self.down:
            raise _down("get_wait_time")
        return super().get_wait_time(resource)


Mode = Literal["memory", "dynamodb-throttled", "dynamodb-breaker-open"]


@dataclass
class Outage:
    """Stores for a client, any of which :meth:`take_down` takes down the ``mode``'s way."""

    mode: Mode
    stores: Stores
    injectors: dict[Role, faults.Injector] = field(default_factory=dict)
    sent_before_down: dict[Role, int] = field(default_factory=dict)

    @property
    def error_type(self) -> type[StoreUnavailableError]:
        """What a store that is down raises."""
        if self.mode == "dynamodb-throttled":
            return ThrottlingError
        if self.mode == "dynamodb-breaker-open":
            return CircuitBreakerOpenError
        return StoreUnavailableError

    def take_down(self, role: Role) -> None:
        store = self.stores.of(role)
        if self.mode == "memory":
            store.down = True
            return
        injector = self.injectors[role]
        injector.default = faults.throttle
        if self.mode == "dynamodb-breaker-open":
            # One throttled round trip opens the breaker; DynamoDB then answers again, but
            # the store no longer asks it.
            assert store.health_check().healthy is False
            injector.default = None
            assert store.get_circuit_breaker_status().state == "open"
        self.sent_before_down[role] = len(injector.sent)

    def sent_while_down(self, role: Role) -> list[str]:
        """The DynamoDB operations the store sent since it went down."""
        return self.injectors[role].sent[self.sent_before_down[role] :]


MODES = [
    "memory",
    pytest.param("dynamodb-throttled", marks=DYNAMODB),
    pytest.param("dynamodb-breaker-open", marks=DYNAMODB),
]


@pytest.fixture(params=MODES)
def outage(request: pytest.FixtureRequest) -> Iterator[Outage]:
    mode: Mode = request.param
    if mode == "memory":
        memory = memory_stores(SwitchableCache, SwitchableDedupe, SwitchableRateLimit)
        yield Outage(mode, memory)
        for store in (memory.cache, memory.dedupe, memory.rate_limit):
            store.close()
        return
    breaker = (
        {"failure_threshold": 1, "recovery_timeout_ms": 600_000}
        if mode == "dynamodb-breaker-open"
        else {"enabled": False}
    )
    stores_ = dynamodb_stores(request, max_retries=0, circuit_breaker=breaker)
    attach: Callable[[Any], faults.Injector] = request.getfixturevalue("inject")
    roles: tuple[Role, ...] = ("cache", "dedupe", "rate_limit")
    yield Outage(mode, stores_, {role: attach(stores_.of(role)) for role in roles})


# -- a body of several MB --------------------------------------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_3_mb_body_is_fetched_once_stored_whole_and_served_intact(
    stores: Stores, adapter: str
) -> None:
    with FakeComicVine() as api, FakeComicVine() as reference:
        for fake in (api, reference):
            fake.set_big("issue", 7, BIG_BYTES)
        expected = plain_body(issue_url(reference, 7))
        url, key = issue_url(api, 7), key_of(api, 7)
        with guarded_client(adapter, **stores.options()) as client:
            live = client.get(url)
            hit = client.get(url)
        # Another client of the other adapter, on the same stores, reads what this one stored.
        with guarded_client(other_adapter(adapter), **stores.options()) as other:
            other_hit = other.get(url)
        calls = api.calls

    assert len(expected) == BIG_BYTES
    assert len(zlib.compress(expected)) > ITEM_LIMIT_BYTES  # no compression fits one item
    assert calls == {issue_path(7): 1}
    assert (live.status, live.from_cache) == (200, False)
    assert (hit.status, hit.from_cache) == (200, True)
    assert (other_hit.status, other_hit.from_cache) == (200, True)
    assert live.content == hit.content == other_hit.content == expected
    assert hit.json() == other_hit.json() == json.loads(expected)
    assert hit.json()["results"]["id"] == 7

    stats = stores.cache.get_stats()
    assert stats.total_items == 1
    assert stats.estimated_size_bytes > ITEM_LIMIT_BYTES  # stored as it is, not shrunk to fit
    if stores.kind == "dynamodb":
        assert stores.endpoint is not None
        assert stores.table is not None
        items = raw_cache_items(stores.endpoint, stores.table, key)
        heads = [item for item in items if item["SK"]["S"] == CacheItem.VALUE_SORT_KEY]
        chunks = [item for item in items if item["SK"]["S"].startswith(CacheChunk.CHUNK_PREFIX)]
        assert len(heads) == 1
        assert len(items) == 1 + len(chunks)
        assert int(heads[0]["Chunks"]["N"]) == len(chunks)
        payload = sum(len(chunk["Data"]["B"]) for chunk in chunks)
        assert payload == int(heads[0]["Size"]["N"]) > ITEM_LIMIT_BYTES
        assert len(chunks) == -(-payload // CHUNK_PAYLOAD_BYTES) >= 2
        # A store made afresh on the table (another process, say) reads the whole value.
        assert stores.make is not None
        fresh = stores.make(DynamoDBCacheStore, clock=system_clock_ms)
        assert fresh.get(key)["body"] == expected.decode()


# -- a cache or dedupe store that is down ----------------------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("role", ["cache", "dedupe"])
def test_a_cache_or_dedupe_store_down_never_fails_a_request(
    outage: Outage, role: Role, adapter: str
) -> None:
    with FakeComicVine() as api:
        expected = plain_body(issue_url(api, 3))
        key = key_of(api, 3)
        api.reset_counts()
        outage.take_down(role)
        with (
            guarded_client(adapter, **outage.stores.options()) as client,
            events_of(signals.client_store_unavailable, client.flow) as unavailable,
        ):
            first = client.get(issue_url(api, 3))
            second = client.get(issue_url(api, 3))
        calls = api.calls

    assert (first.status, first.from_cache) == (200, False)
    assert first.content == second.content == expected
    assert second.status == 200
    assert unavailable, "no client_store_unavailable signal"
    assert {event.store for event in unavailable} == {role}
    assert all(isinstance(event.error, outage.error_type) for event in unavailable)
    assert all(event.key == key for event in unavailable)
    operations = [event.operation for event in unavailable]
    if role == "cache":
        # Nothing could be stored, so the second request went to the API as well.
        assert calls == {issue_path(3): 2}
        assert second.from_cache is False
        assert set(operations) == {"get", "set"}
        assert operations.count("set") == 2  # each response was offered to the cache
    else:
        # No de-duplication, but the cache still works: the second request is a hit.
        assert calls == {issue_path(3): 1}
        assert second.from_cache is True
        assert operations == ["register_or_join"]
    if outage.mode == "dynamodb-throttled":
        assert outage.sent_while_down(role)  # every request it sent was throttled
    elif outage.mode == "dynamodb-breaker-open":
        assert outage.sent_while_down(role) == []  # the open breaker sent nothing


# -- a rate limiter that is down -------------------------------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_rate_limiter_down_refuses_and_nothing_reaches_the_api(
    outage: Outage, adapter: str
) -> None:
    stores = outage.stores
    with FakeComicVine() as api:
        key = key_of(api, 2)
        with guarded_client(adapter, **stores.options()) as client:
            cached = client.get(issue_url(api, 1))  # the limiter is still up
            outage.take_down("rate_limit")
            with events_of(signals.client_store_unavailable, client.flow) as unavailable:
                still_served = client.get(issue_url(api, 1))
                for _ in range(2):
                    with pytest.raises(RateLimitedError) as refused:
                        client.get(issue_url(api, 2))
        calls = api.calls
        rejected = api.rejected

    assert calls == {issue_path(1): 1}  # issue 2 never reached the API
    assert rejected == 0
    assert (cached.status, cached.from_cache) == (200, False)
    # A stored response needs no admission: served while the limiter is down.
    assert (still_served.status, still_served.from_cache) == (200, True)
    assert still_served.content == cached.content
    assert refused.value.resource == "issue"
    assert isinstance(refused.value.__cause__, outage.error_type)
    assert [(event.store, event.operation) for event in unavailable] == [
        ("rate_limit", "acquire")
    ] * 2
    assert all(isinstance(event.error, outage.error_type) for event in unavailable)
    # The refused request's dedupe job was failed, not left pending, and nothing was stored.
    assert stores.dedupe.is_in_progress(key) is False
    assert stores.cache.get(key) is None
    if outage.mode == "dynamodb-throttled":
        assert outage.sent_while_down("rate_limit") == ["UpdateItem", "UpdateItem"]
    elif outage.mode == "dynamodb-breaker-open":
        assert outage.sent_while_down("rate_limit") == []


# -- 420 from the API ------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_420_from_the_api_is_never_cached(stores: Stores, adapter: str) -> None:
    with FakeComicVine(limit=2) as api:  # per resource, for the whole test
        key = key_of(api, 3)
        with guarded_client(adapter, **stores.options()) as client:
            admitted = [client.get(issue_url(api, n)) for n in (1, 2)]
            refused = [client.get(issue_url(api, 3)) for _ in range(2)]
            cached = client.get(issue_url(api, 1))
            other_resource = client.get(f"{api.base_url}/volume/4050-1/?api_key={API_KEY}")
        calls = api.calls
        rejected = api.rejected

    assert [(r.status, r.from_cache) for r in admitted] == [(200, False)] * 2
    for response in refused:
        assert (response.status, response.from_cache) == (420, False)
        assert response.json()["status_code"] == 107
        assert response.json()["error"] == "Rate limit exceeded"
    assert rejected == 2  # each 420 came from the API, not from a store
    assert (cached.status, cached.from_cache) == (200, True)
    assert (other_resource.status, other_resource.from_cache) == (200, False)
    assert calls == {issue_path(1): 1, issue_path(2): 1, "/api/volume/4050-1/": 1}

    assert stores.cache.get(key) is None
    assert stores.dedupe.is_in_progress(key) is False
    assert stores.cache.get_stats().total_items == 3
    if stores.kind == "dynamodb":
        assert stores.endpoint is not None
        assert stores.table is not None
        assert raw_cache_items(stores.endpoint, stores.table, key) == []
