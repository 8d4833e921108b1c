"""``GuardedSession`` (requests) and ``GuardedTransport`` (httpx) against a real HTTP server.

The server is a small API on 127.0.0.1 started per test (``http.server``): it counts the
requests it serves, gzips when asked, and sends the headers a stored response must drop
(``Set-Cookie``, hop-by-hop ones). Every test that uses ``stores`` runs twice: on the
in-memory stores and on the DynamoDB stores over DynamoDB Local (real clocks: dedupe waits
and limiter windows are real there).
"""

from __future__ import annotations

import gzip
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import requests
from pynamodb.connection import Connection

from comic_vine_dynamodb_store.client import GuardedSession, GuardedTransport
from comic_vine_dynamodb_store.clock import system_clock_ms
from comic_vine_dynamodb_store.errors import RateLimitedError
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore
from comic_vine_dynamodb_store.stores.contracts import Priority
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore
from comic_vine_dynamodb_store.stores.memory_adaptive import InMemoryAdaptiveRateLimitStore
from comic_vine_dynamodb_store.stores.memory_cache import InMemoryCacheStore
from comic_vine_dynamodb_store.stores.memory_dedupe import InMemoryDedupeStore
from comic_vine_dynamodb_store.stores.memory_rate_limit import InMemoryRateLimitStore
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore

SECRET = "s3cr3t-k3y"
REGION = "us-east-1"
DROPPED = ("set-cookie", "content-encoding", "connection", "keep-alive", "x-hop")


# -- the API ---------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """The routes: ``/api/issue/4000-<id>/`` (JSON), ``/api/image/`` (binary), ``/api/moved/``
    (302 to issue 7), ``POST /api/echo/``, anything else 404."""

    protocol_version = "HTTP/1.1"
    server: API

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.server.count(self.path)
        self._send(200, body, "application/octet-stream", send_body=True)

    def _answer(self, *, send_body: bool) -> None:
        self.server.count(self.path)
        self.server.pause()
        path = urlsplit(self.path).path
        if path.startswith("/api/issue/4000-"):
            number = int(path.removeprefix("/api/issue/4000-").strip("/"))
            body = json.dumps(
                {"error": "OK", "results": {"id": number, "name": f"Saga #{number}: é"}}
            ).encode()
            self._send(200, body, "application/json; charset=utf-8", send_body=send_body)
        elif path == "/api/image/":
            self._send(200, bytes(range(256)) * 4, "image/png", send_body=send_body)
        elif path == "/api/moved/":
            self._send(302, b"", "text/plain", send_body=send_body, location="/api/issue/4000-7/")
        else:
            body = json.dumps({"error": "Object Not Found", "status_code": 101}).encode()
            self._send(404, body, "application/json; charset=utf-8", send_body=send_body)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        send_body: bool,
        location: str | None = None,
    ) -> None:
        if "gzip" in self.headers.get("Accept-Encoding", "") and body:
            body = gzip.compress(body)
            encoding: str | None = "gzip"
        else:
            encoding = None
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if encoding:
            self.send_header("Content-Encoding", encoding)
        if location:
            self.send_header("Location", location)
        self.send_header("Set-Cookie", "visit=1; Path=/")
        self.send_header("Connection", "keep-alive, X-Hop")
        self.send_header("X-Hop", "this connection only")
        self.send_header("Keep-Alive", "timeout=5")
        self.send_header("X-Custom", "kept")
        self.end_headers()
        if send_body:
            self.wfile.write(body)


class API(ThreadingHTTPServer):
    """The server, with thread-safe counts of the requests it served (by path and query,
    ``api_key`` left out) and the API keys it was sent."""

    daemon_threads = True

    def __init__(self, latency_s: float) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.latency_s = latency_s
        self.calls: Counter[str] = Counter()
        self.api_keys: set[str] = set()
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/api"

    def count(self, raw_path: str) -> None:
        parts = urlsplit(raw_path)
        pairs = parse_qsl(parts.query)
        query = "&".join(f"{k}={v}" for k, v in sorted(pairs) if k != "api_key")
        with self._lock:
            self.calls[f"{parts.path}?{query}" if query else parts.path] += 1
            self.api_keys.update(v for k, v in pairs if k == "api_key")

    def pause(self) -> None:
        if self.latency_s:
            time.sleep(self.latency_s)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.calls.values())


def start_api(latency_s: float = 0.0) -> Iterator[API]:
    api = API(latency_s)
    thread = threading.Thread(target=api.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.shutdown()
        api.server_close()
        thread.join(5)


@pytest.fixture
def api() -> Iterator[API]:
    yield from start_api()


@pytest.fixture
def slow_api() -> Iterator[API]:
    """Each GET takes 100 ms, so concurrent requests overlap."""
    yield from start_api(latency_s=0.1)


# -- stores ----------------------------------------------------------------------------------


@dataclass
class Stores:
    cache: Any
    dedupe: Any
    rate_limit: Any
    kind: str

    def options(self, **extra: Any) -> dict[str, Any]:
        return {
            "cache": self.cache,
            "dedupe": self.dedupe,
            "rate_limit": self.rate_limit,
            **extra,
        }


LIMIT = {"limit": 1000, "window_ms": 60_000}


@pytest.fixture(params=["memory", pytest.param("dynamodb", marks=pytest.mark.dynamodb)])
def stores(request: pytest.FixtureRequest) -> Iterator[Stores]:
    if request.param == "memory":
        memory = Stores(
            InMemoryCacheStore(),
            InMemoryDedupeStore(poll_interval_ms=20),
            InMemoryRateLimitStore(default_config=LIMIT),
            "memory",
        )
        yield memory
        for store in (memory.cache, memory.dedupe, memory.rate_limit):
            store.close()
        return
    make: Callable[..., Any] = request.getfixturevalue("make_dynamodb_store")
    yield Stores(
        make(DynamoDBCacheStore, clock=system_clock_ms),
        make(DynamoDBDedupeStore, clock=system_clock_ms, poll_interval_ms=20),
        make(DynamoDBRateLimitStore, clock=system_clock_ms, default_config=LIMIT),
        "dynamodb",
    )


def expected_headers(live: Any, body: bytes) -> dict[str, str]:
    """What a stored response keeps of the live one's headers (names lower-cased)."""
    kept = {
        name.lower(): value
        for name, value in live.headers.items()
        if name.lower() not in DROPPED and name.lower() != "content-length"
    }
    kept["content-length"] = str(len(body))
    return kept


def lowered(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


# -- requests --------------------------------------------------------------------------------


def test_a_hit_equals_the_original_response(api: API, stores: Stores) -> None:
    url = f"{api.base}/issue/4000-1/"
    with GuardedSession(**stores.options()) as session:
        live = session.get(url, params={"api_key": SECRET, "format": "json"})
        hit = session.get(url, params={"format": "json", "api_key": "someone-else"})

    assert live.from_cache is False  # type: ignore[attr-defined]
    assert hit.from_cache is True  # type: ignore[attr-defined]
    assert api.calls == {"/api/issue/4000-1/?format=json": 1}
    assert live.headers["Content-Encoding"] == "gzip"  # requests undid it for .content
    assert (hit.status_code, hit.reason, hit.ok) == (200, "OK", True)
    assert hit.content == live.content
    assert hit.text == live.text
    assert hit.json() == live.json() == {"error": "OK", "results": {"id": 1, "name": "Saga #1: é"}}
    assert hit.encoding == live.encoding == "utf-8"
    assert lowered(hit.headers) == expected_headers(live, live.content)
    assert hit.url == f"{api.base}/issue/4000-1/?format=json"  # the key never reaches a store
    assert hit.request.url is not None
    assert "someone-else" in hit.request.url
    assert b"".join(hit.iter_content(7)) == live.content
    assert hit.raw.read() == live.content
    hit.raise_for_status()
    assert hit.history == []


def test_stored_responses_are_decoded_and_hold_no_secret(
    api: API, stores: Stores, request: pytest.FixtureRequest
) -> None:
    url = f"{api.base}/issue/4000-2/?api_key={SECRET}"
    with GuardedSession(**stores.options()) as session:
        live = session.get(url)
    key = f"GET {api.base}/issue/4000-2/"
    value = stores.cache.get(key)
    assert value["body"] == live.text  # the decoded JSON text, not gzip bytes
    assert value["body_encoding"] == "utf-8"
    assert value["url"] == f"{api.base}/issue/4000-2/"
    assert [name.lower() for name, _ in value["headers"]] == [
        "server",
        "date",
        "content-type",
        "x-custom",
        "content-length",
    ]
    assert SECRET not in json.dumps(value)
    assert api.api_keys == {SECRET}
    if stores.kind == "dynamodb":
        table = request.getfixturevalue("table_name")
        raw: Any = Connection(region=REGION, host=request.getfixturevalue("endpoint")).client
        items = raw.scan(TableName=table)["Items"]
        assert items  # the cache item (and the finished dedupe job)
        assert all(SECRET not in json.dumps(item, default=repr) for item in items)


def test_binary_bodies_and_head_requests_are_served_from_the_store(
    api: API, stores: Stores
) -> None:
    url = f"{api.base}/image/"
    with GuardedSession(**stores.options()) as session:
        live = session.get(url)
        hit = session.get(url)
        head = session.head(url)
        head_hit = session.head(url)
    assert hit.from_cache is True  # type: ignore[attr-defined]
    assert hit.content == live.content == bytes(range(256)) * 4
    assert stores.cache.get(f"GET {url}")["body_encoding"] == "base64"
    assert head_hit.from_cache is True  # type: ignore[attr-defined]
    assert head.content == head_hit.content == b""
    assert head_hit.status_code == 200
    assert "Content-Encoding" not in head_hit.headers
    assert api.calls == {"/api/image/": 2}


def test_errors_are_not_stored_and_post_is_never_served_from_the_store(
    api: API, stores: Stores
) -> None:
    with GuardedSession(**stores.options()) as session:
        for _ in range(2):
            missing = session.get(f"{api.base}/nothing/")
            assert missing.from_cache is False  # type: ignore[attr-defined]
            with pytest.raises(requests.HTTPError):
                missing.raise_for_status()
            posted = session.post(f"{api.base}/echo/", data=b"payload")
            assert posted.content == b"payload"
            assert posted.from_cache is False  # type: ignore[attr-defined]
    assert api.calls == {"/api/nothing/": 2, "/api/echo/": 2}


def test_the_limiter_refuses_without_sending(api: API, stores: Stores) -> None:
    stores.rate_limit.set_resource_config("issue", {"limit": 2, "window_ms": 60_000})
    with GuardedSession(**stores.options(max_wait_ms=0)) as session:
        session.get(f"{api.base}/issue/4000-1/")
        session.get(f"{api.base}/issue/4000-2/")
        session.get(f"{api.base}/issue/4000-1/")  # cached: no admission needed
        with pytest.raises(RateLimitedError) as refused:
            session.get(f"{api.base}/issue/4000-3/")
    assert refused.value.resource == "issue"
    assert api.total == 2


class RecordingAdaptive(InMemoryAdaptiveRateLimitStore):
    """Records the (resource, priority) of every admission."""

    def __init__(self) -> None:
        super().__init__(default_config=LIMIT)
        self.admissions: list[tuple[str, str]] = []

    def acquire(self, resource: str, priority: Priority = "background") -> bool:
        self.admissions.append((resource, priority))
        return super().acquire(resource, priority)


def test_every_requests_entry_point_goes_through_the_flow(api: API) -> None:
    limits = RecordingAdaptive()
    hooked: list[tuple[int, bool]] = []

    def hook(response: requests.Response, **kwargs: Any) -> None:
        hooked.append((response.status_code, response.from_cache))  # type: ignore[attr-defined]

    with GuardedSession(cache=InMemoryCacheStore(), rate_limit=limits) as session:
        session.hooks["response"].append(hook)
        session.get(f"{api.base}/issue/4000-1/", priority="user", auth=("u", "p"))
        session.request("GET", f"{api.base}/issue/4000-2/", priority="user")
        prepared = session.prepare_request(
            requests.Request("GET", f"{api.base}/issue/4000-3/", params={"api_key": SECRET})
        )
        session.send(prepared)
        again = session.send(prepared, priority="user")
        moved = session.get(f"{api.base}/moved/")
        moved_again = session.get(f"{api.base}/moved/")

    assert limits.admissions == [
        ("issue", "user"),
        ("issue", "user"),
        ("issue", "background"),
        ("moved", "background"),  # every hop of a redirect is admitted
        ("issue", "background"),
    ]
    assert again.from_cache is True  # type: ignore[attr-defined]
    assert moved.status_code == moved_again.status_code == 200
    assert [r.status_code for r in moved.history] == [302]
    assert moved_again.from_cache is True  # type: ignore[attr-defined]
    assert moved_again.json() == moved.json()
    # Hooks run on live and stored responses alike (the redirect's 302 included).
    assert hooked == [
        (200, False),
        (200, False),
        (200, False),
        (200, True),
        (302, False),
        (200, False),
        (200, True),
    ]
    assert api.calls["/api/moved/"] == 1
    assert api.calls["/api/issue/4000-7/"] == 1


# -- httpx -----------------------------------------------------------------------------------


def test_the_httpx_transport_serves_the_same_way(api: API, stores: Stores) -> None:
    url = f"{api.base}/issue/4000-5/"
    transport = GuardedTransport(**stores.options())
    with httpx.Client(transport=transport) as client:
        live = client.get(url, params={"api_key": SECRET})
        hit = client.get(url, params={"api_key": "someone-else"})
        with client.stream("GET", url) as streamed:
            streamed_body = b"".join(streamed.iter_bytes())
            streamed_from_cache = streamed.extensions["from_cache"]
        missing = client.get(f"{api.base}/nothing/")
        missing_again = client.get(f"{api.base}/nothing/")

    assert live.extensions["from_cache"] is False
    assert hit.extensions["from_cache"] is True
    assert live.headers["content-encoding"] == "gzip"
    assert live.elapsed.total_seconds() >= 0  # the client read it as usual
    assert (hit.status_code, hit.reason_phrase) == (200, live.reason_phrase)
    assert hit.content == live.content == streamed_body
    assert hit.json() == live.json()
    assert hit.text == live.text
    assert lowered(hit.headers) == expected_headers(live, live.content)
    assert streamed_from_cache is True
    assert api.calls == {"/api/issue/4000-5/": 1, "/api/nothing/": 2}
    assert (missing.status_code, missing_again.extensions["from_cache"]) == (404, False)
    assert stores.cache.get(f"GET {url}")["body"] == live.text


def test_httpx_priorities_redirects_and_uncached_streams(api: API) -> None:
    limits = RecordingAdaptive()
    transport = GuardedTransport(cache=InMemoryCacheStore(), rate_limit=limits)
    with httpx.Client(transport=transport, follow_redirects=True) as client:
        client.get(f"{api.base}/issue/4000-1/", extensions={"priority": "user"})
        moved = client.get(f"{api.base}/moved/")
        with client.stream("POST", f"{api.base}/echo/", content=b"x" * 1000) as posted:
            echoed = b"".join(posted.iter_bytes())
    assert limits.admissions == [
        ("issue", "user"),
        ("moved", "background"),
        ("issue", "background"),
        ("echo", "background"),
    ]
    assert moved.json()["results"]["id"] == 7
    assert echoed == b"x" * 1000


# -- threads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", ["requests", "httpx"])
def test_threads_sharing_a_client_make_one_upstream_call_per_url(
    slow_api: API, stores: Stores, adapter: str
) -> None:
    urls = [f"{slow_api.base}/issue/4000-{n}/?api_key={SECRET}" for n in (1, 2, 3)]
    work = [url for url, _ in itertools.product(urls, range(6))]
    results: list[tuple[str, bytes, bool]] = []

    if adapter == "requests":
        session = GuardedSession(**stores.options())

        def fetch(url: str) -> tuple[str, bytes, bool]:
            response = session.get(url)
            return url, response.content, response.from_cache  # type: ignore[attr-defined]

        with session, ThreadPoolExecutor(max_workers=len(work)) as pool:
            results = list(pool.map(fetch, work))
    else:
        client = httpx.Client(transport=GuardedTransport(**stores.options()))

        def fetch_httpx(url: str) -> tuple[str, bytes, bool]:
            response = client.get(url)
            return url, response.content, bool(response.extensions["from_cache"])

        with client, ThreadPoolExecutor(max_workers=len(work)) as pool:
            results = list(pool.map(fetch_httpx, work))

    assert slow_api.calls == {f"/api/issue/4000-{n}/": 1 for n in (1, 2, 3)}
    for url in urls:
        answers = [(body, from_cache) for got, body, from_cache in results if got == url]
        assert len(answers) == 6
        assert len({body for body, _ in answers}) == 1
        assert [from_cache for _, from_cache in answers].count(False) == 1
