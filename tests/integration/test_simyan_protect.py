"""simyan's ``Comicvine`` through ``protect``, against the loopback ``FakeComicVine``.

Every test that uses ``stores`` runs twice: on the in-memory stores and on the DynamoDB stores
over DynamoDB Local, with the real clock (dedupe waits and limiter windows are real there).
Each ``Comicvine`` keeps simyan's SQLite files in the test's temporary directory.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from pynamodb.connection import Connection
from simyan.comicvine import Comicvine  # type: ignore[import-untyped]
from simyan.errors import RateLimitError, ServiceError  # type: ignore[import-untyped]

from comic_vine_dynamodb_store.client import GuardedSession
from comic_vine_dynamodb_store.clock import system_clock_ms
from comic_vine_dynamodb_store.demo import FakeComicVine
from comic_vine_dynamodb_store.errors import RateLimitedError
from comic_vine_dynamodb_store.integrations.simyan import (
    COMIC_VINE_RATE_LIMIT,
    ComicvineRateLimitedError,
    protect,
)
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore
from comic_vine_dynamodb_store.stores.contracts import Priority
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore
from comic_vine_dynamodb_store.stores.memory_adaptive import InMemoryAdaptiveRateLimitStore
from comic_vine_dynamodb_store.stores.memory_cache import InMemoryCacheStore
from comic_vine_dynamodb_store.stores.memory_dedupe import InMemoryDedupeStore
from comic_vine_dynamodb_store.stores.memory_rate_limit import InMemoryRateLimitStore
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore

SECRET = "s3cr3t-simyan-k3y"
OTHER_KEY = "another-users-key"
USER_AGENT = "simyan-protect-tests/1.0"
REGION = "us-east-1"


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def api() -> Iterator[FakeComicVine]:
    with FakeComicVine(totals={"issue": 250}) as fake:
        yield fake


@dataclass
class Stores:
    cache: Any
    dedupe: Any
    rate_limit: Any
    kind: str

    def options(self) -> dict[str, Any]:
        return {"cache": self.cache, "dedupe": self.dedupe, "rate_limit": self.rate_limit}


@pytest.fixture(params=["memory", pytest.param("dynamodb", marks=pytest.mark.dynamodb)])
def stores(request: pytest.FixtureRequest) -> Iterator[Stores]:
    if request.param == "memory":
        memory = Stores(
            InMemoryCacheStore(),
            InMemoryDedupeStore(poll_interval_ms=20),
            InMemoryRateLimitStore(default_config=COMIC_VINE_RATE_LIMIT),
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
        make(DynamoDBRateLimitStore, clock=system_clock_ms, default_config=COMIC_VINE_RATE_LIMIT),
        "dynamodb",
    )


@pytest.fixture
def make_comicvine(api: FakeComicVine, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``make(api_key=SECRET, **options)``: a simyan ``Comicvine`` on the fake API, its SQLite
    files in ``tmp_path``; whatever session each one ends up with is closed afterwards."""
    made: list[Any] = []

    def make(api_key: str = SECRET, **options: Any) -> Any:
        index = len(made)
        settings: dict[str, Any] = {
            "base_url": api.base_url,
            "user_agent": USER_AGENT,
            "cache_path": tmp_path / f"simyan-cache-{index}.sqlite",
            "ratelimit_path": tmp_path / f"simyan-limits-{index}.sqlite",
            **options,
        }
        made.append(Comicvine(api_key, **settings))
        return made[-1]

    yield make
    for comicvine in made:
        comicvine._session.close()


def issue_path(issue_id: int) -> str:
    return f"/api/issue/4000-{issue_id}/?format=json"


def list_path(offset: int) -> str:
    return f"/api/issues/?format=json&limit=100&offset={offset}"


# -- the session -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    url: str
    headers: dict[str, str]
    timeout: Any
    from_cache: bool


def test_protect_moves_comicvine_onto_a_guarded_session_with_simyans_settings(
    make_comicvine: Callable[..., Any], api: FakeComicVine
) -> None:
    comicvine = make_comicvine(timeout=7)
    old = comicvine._session
    closed: list[bool] = []
    close = old.close

    def recording_close() -> None:
        closed.append(True)
        close()

    old.close = recording_close
    sent: list[Sent] = []

    def hook(response: requests.Response, **kwargs: Any) -> None:
        request = response.request
        sent.append(
            Sent(
                url=request.url or "",
                headers=dict(request.headers),
                timeout=kwargs.get("timeout"),
                from_cache=response.from_cache,  # type: ignore[attr-defined]
            )
        )

    old.hooks["response"].append(hook)

    protected = protect(comicvine, cache=InMemoryCacheStore())

    assert protected is comicvine
    session = comicvine._session
    assert isinstance(session, GuardedSession)
    assert session is not old
    assert closed == [True]
    assert session.headers["User-Agent"] == USER_AGENT
    assert session.headers["Accept"] == "application/json"
    assert session.params == {"api_key": SECRET, "format": "json"}
    assert session.hooks["response"] == [hook]
    assert session.flow.priority == "user"
    assert session.flow.cache_ttl_seconds == 3600
    assert session.flow.max_wait_ms == 14_000  # simyan's limiter waited twice its timeout

    first = comicvine.get_issue(3)
    again = comicvine.get_issue(3)

    assert first == again
    assert first.id == 3
    assert api.calls == {issue_path(3): 1}
    assert [s.from_cache for s in sent] == [False, True]
    for request in sent:
        assert f"api_key={SECRET}" in request.url
        assert "format=json" in request.url
        assert request.headers["User-Agent"] == USER_AGENT
        assert request.headers["Accept"] == "application/json"
        assert request.timeout == 7  # simyan's timeout still goes with every request


def test_flow_options_pass_through_and_api_key_is_always_ignored(
    make_comicvine: Callable[..., Any],
) -> None:
    comicvine = protect(
        make_comicvine(),
        priority="background",
        cache_ttl_seconds=60,
        max_wait_ms=1234,
        ignored_parameters=["cache_buster"],
    )
    flow = comicvine._session.flow
    assert flow.priority == "background"
    assert flow.cache_ttl_seconds == 60
    assert flow.max_wait_ms == 1234
    assert flow.ignored_parameters == frozenset({"cache_buster", "api_key"})


def test_protect_refuses_anything_but_a_comicvine() -> None:
    with pytest.raises(TypeError, match="Comicvine"):
        protect(requests.Session())


def test_the_api_key_reaches_the_api_but_never_a_store(
    make_comicvine: Callable[..., Any],
    api: FakeComicVine,
    stores: Stores,
    request: pytest.FixtureRequest,
) -> None:
    mine = protect(make_comicvine(), **stores.options())
    theirs = protect(make_comicvine(api_key=OTHER_KEY), **stores.options())

    issue = mine.get_issue(11)  # the fake answers 401 (AuthenticationError) without a key
    page = mine.list_issues(max_results=100)
    assert theirs.get_issue(11) == issue  # keys differ; the response is shared
    assert theirs.list_issues(max_results=100) == page

    assert api.calls == {issue_path(11): 1, list_path(0): 1}
    stored = stores.cache.get(f"GET {api.base_url}/issue/4000-11/?format=json")
    assert stored is not None
    assert stored["url"] == f"{api.base_url}/issue/4000-11/?format=json"
    assert SECRET not in json.dumps(stored)
    if stores.kind == "dynamodb":
        table = request.getfixturevalue("table_name")
        raw: Any = Connection(region=REGION, host=request.getfixturevalue("endpoint")).client
        items = raw.scan(TableName=table, ConsistentRead=True)["Items"]
        assert len(items) >= 2  # both cached responses (and their finished dedupe jobs)
        text = json.dumps(items, default=repr)
        assert "issue/4000-11" in text
        assert SECRET not in text
        assert OTHER_KEY not in text


def test_simyans_models_validate_bodies_served_from_the_cache(
    make_comicvine: Callable[..., Any], api: FakeComicVine, stores: Stores
) -> None:
    comicvine = protect(make_comicvine(), **stores.options())
    live = (comicvine.get_issue(7), comicvine.get_creator(4), comicvine.get_volume(2))
    calls = api.calls
    # Another process's Comicvine on the same stores: nothing reaches the API.
    elsewhere = protect(make_comicvine(), **stores.options())
    cached = (elsewhere.get_issue(7), elsewhere.get_creator(4), elsewhere.get_volume(2))

    assert cached == live
    issue, creator, volume = cached
    assert (issue.id, issue.name, issue.number, issue.volume.id) == (7, "Issue 7", "7", 1)
    assert (creator.id, creator.name) == (4, "Creator 4")
    assert (volume.id, volume.issue_count) == (2, 10)
    expected_calls = {
        issue_path(7): 1,
        "/api/person/4040-4/?format=json": 1,
        "/api/volume/4050-2/?format=json": 1,
    }
    assert calls == expected_calls
    assert api.calls == expected_calls


def test_list_and_search_pages_are_each_fetched_once(
    make_comicvine: Callable[..., Any], api: FakeComicVine, stores: Stores
) -> None:
    comicvine = protect(make_comicvine(), **stores.options())
    issues = comicvine.list_issues(max_results=None)  # 250 issues: pages of 100, 100, 50
    found = comicvine.search_issues("issue", max_results=25)  # pages of 10, 10, 10
    expected_calls = {
        list_path(0): 1,
        list_path(100): 1,
        list_path(200): 1,
        **{
            f"/api/search/?format=json&page={page}&query=issue&resources=issue": 1
            for page in (1, 2, 3)
        },
    }
    assert api.calls == expected_calls

    assert [issue.id for issue in issues] == list(range(1, 251))
    assert [issue.id for issue in found] == list(range(1, 26))
    assert comicvine.list_issues(max_results=None) == issues
    assert comicvine.search_issues("issue", max_results=25) == found
    assert api.calls == expected_calls


# -- errors ----------------------------------------------------------------------------------


def test_a_missing_issue_is_simyans_service_error_and_is_never_cached(
    make_comicvine: Callable[..., Any], api: FakeComicVine, stores: Stores
) -> None:
    comicvine = protect(make_comicvine(), **stores.options())
    for _ in range(2):
        with pytest.raises(ServiceError, match="Resource not found") as missing:
            comicvine.get_issue(999)
        assert not isinstance(missing.value, RateLimitedError)
    assert api.calls == {issue_path(999): 2}
    assert stores.cache.get(f"GET {api.base_url}/issue/4000-999/?format=json") is None


def test_a_refusal_of_the_shared_limiter_is_simyans_rate_limit_error_and_sends_nothing(
    make_comicvine: Callable[..., Any], api: FakeComicVine, stores: Stores
) -> None:
    stores.rate_limit.set_resource_config("issue", {"limit": 2, "window_ms": 60_000})
    # No max_wait_ms: simyan's timeout of 0.05 s makes it 100 ms, far below the 60 s wait.
    comicvine = protect(make_comicvine(timeout=0.05), **stores.options())
    assert comicvine._session.flow.max_wait_ms == 100
    comicvine.get_issue(1)
    comicvine.get_issue(2)
    comicvine.get_issue(1)  # cached: needs no admission

    started = time.monotonic()
    with pytest.raises(RateLimitError) as refused:
        comicvine.get_issue(3)
    elapsed = time.monotonic() - started

    error = refused.value
    assert isinstance(error, ComicvineRateLimitedError)
    assert isinstance(error, ServiceError)  # what simyan callers catch for any failure
    assert isinstance(error, RateLimitedError)
    assert error.resource == "issue"
    assert error.wait_ms is not None
    assert error.wait_ms > 100
    assert isinstance(error.__cause__, RateLimitedError)
    assert not isinstance(error.__cause__, ComicvineRateLimitedError)
    assert elapsed < 5  # gave up at once, without waiting out the window
    assert api.calls == {issue_path(1): 1, issue_path(2): 1}  # issue 3 never left
    assert api.rejected == 0


def test_a_short_limiter_wait_is_waited_out_within_max_wait_ms(
    make_comicvine: Callable[..., Any], api: FakeComicVine, stores: Stores
) -> None:
    stores.rate_limit.set_resource_config("issue", {"limit": 1, "window_ms": 400})
    comicvine = protect(make_comicvine(), max_wait_ms=5000, **stores.options())
    started = time.monotonic()
    issues = [comicvine.get_issue(n).id for n in (1, 2, 3)]
    elapsed = time.monotonic() - started
    assert issues == [1, 2, 3]
    assert elapsed >= 0.7  # two waits of about one window each
    assert api.calls == {issue_path(1): 1, issue_path(2): 1, issue_path(3): 1}


def test_a_420_from_the_api_itself_stays_simyans_own_rate_limit_error(
    make_comicvine: Callable[..., Any],
) -> None:
    with FakeComicVine(limit=1) as strict:
        comicvine = protect(make_comicvine(base_url=strict.base_url), cache=InMemoryCacheStore())
        comicvine.get_issue(1)
        with pytest.raises(RateLimitError) as rejected:
            comicvine.get_issue(2)
        assert not isinstance(rejected.value, RateLimitedError)
        assert strict.rejected == 1
        assert strict.calls == {issue_path(1): 1}


def test_simyans_timeout_still_applies_and_frees_the_url(
    make_comicvine: Callable[..., Any], stores: Stores
) -> None:
    with FakeComicVine(latency_s=0.6) as slow:
        comicvine = protect(make_comicvine(base_url=slow.base_url, timeout=0.1), **stores.options())
        started = time.monotonic()
        for _ in range(2):
            with pytest.raises(ServiceError, match="took too long"):
                comicvine.get_issue(5)
        elapsed = time.monotonic() - started
        # Each call gave up after its 0.1 s timeout; the second was not left waiting for
        # the first one's dedupe job (failed with the timeout) to finish.
        assert elapsed < 1.0
        assert stores.cache.get(f"GET {slow.base_url}/issue/4000-5/?format=json") is None


# -- priority --------------------------------------------------------------------------------


class RecordingAdaptive(InMemoryAdaptiveRateLimitStore):
    """Records the (resource, priority) of every admission."""

    def __init__(self) -> None:
        super().__init__(default_config=COMIC_VINE_RATE_LIMIT)
        self.admissions: list[tuple[str, str]] = []

    def acquire(self, resource: str, priority: Priority = "background") -> bool:
        self.admissions.append((resource, priority))
        return super().acquire(resource, priority)


def test_simyan_requests_reach_an_adaptive_limiter_as_user_unless_told_otherwise(
    make_comicvine: Callable[..., Any],
) -> None:
    limiter = RecordingAdaptive()
    user = protect(make_comicvine(), rate_limit=limiter)
    crawler = protect(make_comicvine(), rate_limit=limiter, priority="background")

    user.get_issue(1)
    user.list_issues(max_results=100)
    crawler.get_issue(2)
    crawler.search_issues("issue", max_results=5)

    assert limiter.admissions == [
        ("issue", "user"),
        ("issues", "user"),
        ("issue", "background"),
        ("search", "background"),
    ]


# -- without simyan --------------------------------------------------------------------------


def test_without_simyan_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name == "simyan" or name.startswith("simyan.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "comic_vine_dynamodb_store.integrations.simyan")
    integrations = importlib.import_module("comic_vine_dynamodb_store.integrations")
    monkeypatch.delattr(integrations, "simyan")

    with pytest.raises(ImportError, match=r"comic-vine-dynamodb-store\[simyan\]") as failed:
        importlib.import_module("comic_vine_dynamodb_store.integrations.simyan")
    assert isinstance(failed.value.__cause__, ModuleNotFoundError)
    with pytest.raises(ImportError, match=r"\[simyan\]"):
        integrations.protect  # noqa: B018
