"""The fake Comic Vine API: Comic Vine's shapes, errors, limits and counts, over real HTTP.

Later tests (client flow, demo) trust its counters and bodies, so they are checked here with
plain ``urllib`` and ``requests`` and with simyan, whose pydantic models are the reference for
what a Comic Vine body must contain.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

import pytest
import requests
from simyan.comicvine import Comicvine  # type: ignore[import-untyped]
from simyan.errors import (  # type: ignore[import-untyped]
    AuthenticationError,
    RateLimitError,
    ServiceError,
)

from comic_vine_dynamodb_store.demo import FakeComicVine

ENVELOPE_KEYS = [
    "error",
    "limit",
    "offset",
    "number_of_page_results",
    "number_of_total_results",
    "status_code",
    "results",
    "version",
]


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    """Status, headers and raw (undecoded) body of a GET, error statuses included."""
    try:
        with urlopen(Request(url, headers=headers or {}), timeout=10) as response:
            return response.status, response.headers, response.read()
    except HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def fetch_json(url: str) -> tuple[int, Any]:
    status, _, body = fetch(url)
    return status, json.loads(body)


@pytest.fixture
def api() -> Iterator[FakeComicVine]:
    with FakeComicVine() as running:
        yield running


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as client:
        yield client


def test_an_item_has_comic_vines_envelope_and_an_object_result(api: FakeComicVine) -> None:
    status, headers, body = fetch(f"{api.base_url}/issue/4000-17/?api_key=k&format=json")

    assert status == 200
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["Content-Encoding"] is None
    payload = json.loads(body)
    assert list(payload) == ENVELOPE_KEYS
    assert payload["error"] == "OK"
    assert payload["status_code"] == 1
    assert payload["version"] == "1.0"
    assert payload["number_of_page_results"] == 1
    assert payload["number_of_total_results"] == 1
    issue = payload["results"]
    assert issue["id"] == 17
    assert issue["api_detail_url"] == "https://comicvine.gamespot.com/api/issue/4000-17/"
    assert issue["volume"]["id"] == 2  # issues 11-20 belong to volume 2
    assert issue["person_credits"][0]["role"] == "writer"


def test_bodies_depend_only_on_the_url(api: FakeComicVine) -> None:
    url = "/volume/4050-3/?api_key=k"
    first = fetch(api.base_url + url)[2]
    assert fetch(api.base_url + url)[2] == first
    assert fetch(api.base_url + "/volume/4050-3/?api_key=other")[2] == first
    assert fetch(api.base_url + "/volume/4050-4/?api_key=k")[2] != first
    with FakeComicVine() as another:  # another port, same bytes
        assert fetch(another.base_url + url)[2] == first


def test_lists_page_through_ids_from_offset_plus_one(api: FakeComicVine) -> None:
    status, page = fetch_json(f"{api.base_url}/volumes/?api_key=k&limit=30&offset=40")
    assert status == 200
    assert list(page) == ENVELOPE_KEYS
    assert [v["id"] for v in page["results"]] == list(range(41, 71))
    assert (page["limit"], page["offset"], page["number_of_page_results"]) == (30, 40, 30)
    assert page["number_of_total_results"] == 1000
    assert "issues" not in page["results"][0]  # references only in the item's own endpoint

    _, default = fetch_json(f"{api.base_url}/volumes/?api_key=k")
    assert [v["id"] for v in default["results"]] == list(range(1, 101))

    _, capped = fetch_json(f"{api.base_url}/volumes/?api_key=k&limit=500&offset=950")
    assert capped["limit"] == 100
    assert [v["id"] for v in capped["results"]] == list(range(951, 1001))

    _, past_the_end = fetch_json(f"{api.base_url}/volumes/?api_key=k&offset=1000")
    assert past_the_end["results"] == []
    assert past_the_end["number_of_page_results"] == 0


def test_totals_are_configurable_per_resource() -> None:
    with FakeComicVine(total_results=42, totals={"issues": 7}) as api:
        _, issues = fetch_json(f"{api.base_url}/issues/?api_key=k")
        _, teams = fetch_json(f"{api.base_url}/teams/?api_key=k")
        status, _ = fetch_json(f"{api.base_url}/issue/4000-8/?api_key=k")
    assert issues["number_of_total_results"] == 7
    assert len(issues["results"]) == 7
    assert teams["number_of_total_results"] == 42
    assert status == 404


def test_head_answers_like_get_without_a_body(
    api: FakeComicVine, session: requests.Session
) -> None:
    url = f"{api.base_url}/team/4060-3/?api_key=k"
    head = session.head(url, headers={"Accept-Encoding": "identity"}, timeout=10)
    get = session.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
    assert (head.status_code, head.content) == (200, b"")
    assert int(head.headers["Content-Length"]) == len(get.content)
    assert api.calls_for("/api/team/4060-3/") == 2


def test_search_pages_hold_ten_results_of_the_named_resource(api: FakeComicVine) -> None:
    _, page = fetch_json(f"{api.base_url}/search/?api_key=k&query=x&resources=team&page=2")
    assert [t["id"] for t in page["results"]] == list(range(11, 21))
    assert {t["resource_type"] for t in page["results"]} == {"team"}
    assert page["offset"] == 10
    _, unknown = fetch_json(f"{api.base_url}/search/?api_key=k&query=x&resources=nope")
    assert (unknown["results"], unknown["number_of_total_results"]) == ([], 0)


@pytest.mark.parametrize(
    "path",
    [
        "/issue/4000-0/",
        "/issue/4000-1001/",
        "/issue/4050-1/",  # another resource's type id
        "/issue/1/",
        "/comics/",
        "/",
    ],
)
def test_unknown_ids_and_resources_are_404_object_not_found(
    api: FakeComicVine, session: requests.Session, path: str
) -> None:
    response = session.get(api.base_url + path, params={"api_key": "k"}, timeout=10)
    assert response.status_code == 404
    body = response.json()
    assert list(body) == ENVELOPE_KEYS
    assert (body["status_code"], body["error"], body["results"]) == (101, "Object Not Found", [])


def test_outside_api_is_404(api: FakeComicVine) -> None:
    root = api.base_url.removesuffix("/api")
    status, body = fetch_json(f"{root}/elsewhere/?api_key=k")
    assert (status, body["status_code"]) == (404, 101)


@pytest.mark.parametrize("query", ["", "?format=json", "?api_key=&format=json"])
def test_a_missing_api_key_is_401_invalid_api_key(api: FakeComicVine, query: str) -> None:
    status, body = fetch_json(f"{api.base_url}/issue/4000-1/{query}")
    assert status == 401
    assert (body["status_code"], body["error"], body["results"]) == (100, "Invalid API Key", [])
    assert api.calls_for("/api/issue/4000-1/") == 1
    assert api.rejected == 0


def test_more_than_limit_requests_per_resource_are_420_until_the_window_slides() -> None:
    with FakeComicVine(limit=3, window_s=0.3) as api:
        for n in range(1, 4):
            assert fetch_json(f"{api.base_url}/issue/4000-{n}/?api_key=k")[0] == 200
        status, body = fetch_json(f"{api.base_url}/issue/4000-9/?api_key=k")
        assert status == 420
        assert list(body) == ENVELOPE_KEYS
        assert (body["status_code"], body["error"]) == (107, "Rate limit exceeded")
        # Other resources have windows of their own ("issues" is not "issue").
        assert fetch_json(f"{api.base_url}/issues/?api_key=k")[0] == 200
        assert fetch_json(f"{api.base_url}/volume/4050-1/?api_key=k")[0] == 200
        assert (api.rejected, api.total_calls) == (1, 5)
        assert api.calls_for("/api/issue/4000-9/") == 0  # refused, not served

        time.sleep(0.35)
        assert fetch_json(f"{api.base_url}/issue/4000-9/?api_key=k")[0] == 200
        assert api.calls_for("/api/issue/4000-9/") == 1
        assert api.rejected == 1


def test_refused_requests_do_not_extend_the_window() -> None:
    with FakeComicVine(limit=1, window_s=0.3) as api:
        assert fetch(f"{api.base_url}/team/4060-1/?api_key=k")[0] == 200
        time.sleep(0.15)
        assert fetch(f"{api.base_url}/team/4060-1/?api_key=k")[0] == 420
        time.sleep(0.2)  # 0.35 s after the admitted request, 0.2 s after the refused one
        assert fetch(f"{api.base_url}/team/4060-1/?api_key=k")[0] == 200
        assert (api.total_calls, api.rejected) == (2, 1)


def test_calls_are_keyed_by_path_and_sorted_query_without_api_key(
    api: FakeComicVine, session: requests.Session
) -> None:
    url = f"{api.base_url}/issues/"
    session.get(url, params={"api_key": "a", "offset": "0", "limit": "5"}, timeout=10)
    session.get(url, params={"limit": "5", "api_key": "b", "offset": "0"}, timeout=10)
    session.get(url, params={"api_key": "a", "offset": "5", "limit": "5"}, timeout=10)
    session.get(f"{api.base_url}/issue/4000-1/", params={"api_key": "a"}, timeout=10)

    assert api.calls == {
        "/api/issues/?limit=5&offset=0": 2,
        "/api/issues/?limit=5&offset=5": 1,
        "/api/issue/4000-1/": 1,
    }
    assert not any("api_key" in key for key in api.calls)
    assert api.calls_for("/api/issues/") == 3
    assert api.calls_for("/api/issue/4000-2/") == 0
    assert api.total_calls == 4

    api.reset_counts()
    assert (api.calls, api.total_calls, api.rejected) == ({}, 0, 0)


def test_counters_are_exact_under_concurrent_requests(api: FakeComicVine) -> None:
    def worker() -> None:
        with requests.Session() as client:
            for _ in range(10):
                client.get(f"{api.base_url}/concept/4015-1/?api_key=k", timeout=10)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert api.calls_for("/api/concept/4015-1/") == 80


def test_gzip_only_when_the_client_accepts_it(api: FakeComicVine) -> None:
    url = f"{api.base_url}/character/4005-2/?api_key=k"
    _, plain_headers, plain = fetch(url)
    _, gz_headers, compressed = fetch(url, {"Accept-Encoding": "deflate, gzip;q=0.8"})
    _, refused_headers, refused = fetch(url, {"Accept-Encoding": "gzip;q=0, identity"})

    assert plain_headers["Content-Encoding"] is None
    assert gz_headers["Content-Encoding"] == "gzip"
    assert int(gz_headers["Content-Length"]) == len(compressed)
    assert gzip.decompress(compressed) == plain
    assert len(compressed) < len(plain)
    assert (refused_headers["Content-Encoding"], refused) == (None, plain)

    with requests.Session() as client:  # requests asks for gzip and decodes it
        response = client.get(url, timeout=10)
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.content == plain
    assert response.json()["results"]["id"] == 2


def test_set_big_pads_one_item_with_poorly_compressible_json(api: FakeComicVine) -> None:
    size = 3_000_000
    _, before = fetch_json(f"{api.base_url}/issue/4000-5/?api_key=k")
    api.set_big("issue", 5, size)

    _, _, body = fetch(f"{api.base_url}/issue/4000-5/?api_key=k")
    assert len(body) == size
    assert len(zlib.compress(body)) > 400_000
    big = json.loads(body)
    assert big["results"]["id"] == 5
    assert len(big["results"]["description"]) > size - 10_000
    assert {k: v for k, v in big["results"].items() if k != "description"} == {
        k: v for k, v in before["results"].items() if k != "description"
    }
    assert fetch(f"{api.base_url}/issue/4000-5/?api_key=k")[2] == body  # still deterministic

    _, headers, compressed = fetch(
        f"{api.base_url}/issue/4000-5/?api_key=k", {"Accept-Encoding": "gzip"}
    )
    assert headers["Content-Encoding"] == "gzip"
    assert len(compressed) > 400_000
    assert gzip.decompress(compressed) == body

    _, other = fetch_json(f"{api.base_url}/issue/4000-6/?api_key=k")
    assert len(json.dumps(other)) < 10_000
    _, page = fetch_json(f"{api.base_url}/issues/?api_key=k&limit=10")
    assert len(json.dumps(page)) < 100_000  # lists keep the ordinary item


def test_set_big_refuses_unknown_resources_and_ids(api: FakeComicVine) -> None:
    with pytest.raises(ValueError, match="unknown resource"):
        api.set_big("comic", 1, 1000)
    with pytest.raises(ValueError, match="does not exist"):
        api.set_big("volumes", 1001, 1000)


def test_latency_delays_every_answer_while_requests_overlap() -> None:
    with FakeComicVine(latency_s=0.2) as api:
        statuses: list[int] = []

        def worker(n: int) -> None:
            statuses.append(fetch(f"{api.base_url}/team/4060-{n}/?api_key=k")[0])

        started = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(1, 5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    assert statuses == [200] * 4
    assert 0.2 <= elapsed < 0.6


def test_lifecycle_and_arguments() -> None:
    api = FakeComicVine()
    with pytest.raises(RuntimeError, match="not running"):
        _ = api.base_url
    with api, requests.Session() as client:
        base_url = api.base_url
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/api")
        assert client.get(f"{base_url}/issues/?api_key=k", timeout=10).status_code == 200
        with pytest.raises(RuntimeError, match="already running"):
            api.start()
    # The keep-alive connection is gone with the server, and nothing listens any more.
    with pytest.raises(URLError):
        fetch(f"{base_url}/issues/?api_key=k")
    bad_arguments: list[dict[str, Any]] = [
        {"limit": -1},
        {"window_s": 0},
        {"latency_s": -1},
        {"total_results": 0},
        {"totals": {"issue": 0}},
    ]
    for bad in bad_arguments:
        with pytest.raises(ValueError, match=r"limit|least one"):
            FakeComicVine(**bad)
    with pytest.raises(ValueError, match="unknown resource"):
        FakeComicVine(totals={"comics": 3})


# -- simyan: its models are the reference for Comic Vine's shapes -----------------------------


@pytest.fixture
def comicvine(api: FakeComicVine, tmp_path: Path) -> Iterator[Any]:
    client = Comicvine(
        api_key="x",
        base_url=api.base_url,
        cache_path=tmp_path / "c.sqlite",
        ratelimit_path=tmp_path / "r.sqlite",
    )
    yield client
    client._session.close()


@pytest.mark.parametrize(
    "resource",
    [
        "issue",
        "volume",
        "publisher",
        "character",
        "creator",
        "team",
        "story_arc",
        "location",
        "concept",
        "power",
        "origin",
        "item",
    ],
)
def test_simyan_reads_every_resource(comicvine: Any, api: FakeComicVine, resource: str) -> None:
    item = getattr(comicvine, f"get_{resource}")(7)
    assert item.id == 7
    assert item.api_url is not None
    listed = getattr(comicvine, f"list_{resource}s")(max_results=5)
    assert [entry.id for entry in listed] == [1, 2, 3, 4, 5]
    found = getattr(comicvine, f"search_{resource}s")("anything", max_results=10)
    assert [entry.id for entry in found] == list(range(1, 11))
    assert api.total_calls == 3


def test_simyan_details_carry_their_references(comicvine: Any) -> None:
    issue = comicvine.get_issue(23)
    assert (issue.volume.id, issue.number) == (3, "3")
    assert [c.roles for c in issue.creators] == ["writer", "artist, cover"]
    assert len(issue.characters) == 3
    volume = comicvine.get_volume(3)
    assert [i.id for i in volume.issues] == list(range(21, 31))
    assert [i.number for i in volume.issues] == [str(n) for n in range(1, 11)]
    assert [i.name for i in volume.issues][3:5] == ["Issue 24", None]
    assert [i.name for i in comicvine.list_issues(max_results=5)][3:] == ["Issue 4", None]
    assert volume.issue_count == 10
    assert comicvine.get_publisher(2).name == "Publisher 2"
    assert len(comicvine.get_character(4).powers) == 2
    assert comicvine.get_creator(4).website is not None


def test_simyan_paginates_lists_by_offset(comicvine: Any, api: FakeComicVine) -> None:
    issues = comicvine.list_issues(max_results=250)
    assert [issue.id for issue in issues] == list(range(1, 251))
    assert api.calls_for("/api/issues/") == 3
    assert api.calls["/api/issues/?format=json&limit=100&offset=200"] == 1

    volumes = comicvine.list_volumes(max_results=None, params={"offset": "950"})
    assert [volume.id for volume in volumes] == list(range(951, 1001))


def test_simyan_reads_big_items(comicvine: Any, api: FakeComicVine) -> None:
    api.set_big("volume", 9, 1_000_000)
    volume = comicvine.get_volume(9)
    assert volume.id == 9
    assert len(volume.description) > 990_000


def test_simyan_maps_comic_vines_errors(api: FakeComicVine, tmp_path: Path) -> None:
    def client(api_key: str, base_url: str, name: str) -> Any:
        return Comicvine(
            api_key=api_key,
            base_url=base_url,
            cache_path=tmp_path / f"{name}-c.sqlite",
            ratelimit_path=tmp_path / f"{name}-r.sqlite",
        )

    anonymous = client("", api.base_url, "anonymous")
    with pytest.raises(AuthenticationError, match="Invalid API Key"):
        anonymous.get_issue(1)
    anonymous._session.close()

    keyed = client("x", api.base_url, "keyed")
    with pytest.raises(ServiceError, match="not found"):
        keyed.get_issue(1001)
    keyed._session.close()

    with FakeComicVine(limit=0) as closed:
        limited = client("x", closed.base_url, "limited")
        with pytest.raises(RateLimitError, match="Rate limit exceeded"):
            limited.get_issue(1)
        limited._session.close()
        assert (closed.rejected, closed.total_calls) == (1, 0)
