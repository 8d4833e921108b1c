"""A local, deterministic fake of the Comic Vine API for demos and tests.

Runs a real HTTP server on ``127.0.0.1`` (a free port) so that unmodified clients - ``requests``,
``urllib``, ``httpx``, simyan - can be pointed at it through their base URL, and so that what
they send (and how often) can be counted exactly. Standard library only, so it can ship in the
package and run anywhere without optional dependencies.

Shapes follow Comic Vine (and validate with simyan 4.2.0's models):

* ``GET /api/<singular>/<type id>-<id>/`` (e.g. ``/api/issue/4000-7/``, ``/api/person/4040-3/``)
  answers one item, ``results`` being an object;
* ``GET /api/<plural>/?limit=&offset=`` answers a page of items with ids ``offset + 1`` onwards,
  ``limit`` at most 100, out of a fixed ``number_of_total_results`` per resource;
* ``GET /api/search/?query=&resources=<singular>&page=&limit=`` answers pages of at most 10 items
  of the first named resource, each with its ``resource_type``.

``HEAD`` answers as ``GET`` would, without the body (and is counted and limited the same way).

Bodies depend only on the URL's resource, id, ``limit`` and ``offset`` (and on
:meth:`FakeComicVine.set_big`); links point at the real Comic Vine host, never at this server's
port, so the same URL always gives the same bytes, in one run and across runs.

Errors use Comic Vine's envelope: 401 / ``status_code`` 100 without an ``api_key``, 404 / 101
for an unknown resource or id, 420 / 107 past the per-resource limit.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import re
import socket
import socketserver
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ["FakeComicVine"]

_CV = "https://comicvine.gamespot.com"
_MAX_LIST_LIMIT = 100
_MAX_SEARCH_LIMIT = 10
_ISSUES_PER_VOLUME = 10
_GZIP_LEVEL = 6
_RATE_LIMITED_STATUS = 420

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class _Kind:
    """One Comic Vine resource: its URL names, type id prefix and display label."""

    singular: str
    plural: str
    type_id: int
    label: str
    slug: str


_KINDS: tuple[_Kind, ...] = (
    _Kind("issue", "issues", 4000, "Issue", "issue"),
    _Kind("character", "characters", 4005, "Character", "character"),
    _Kind("publisher", "publishers", 4010, "Publisher", "publisher"),
    _Kind("concept", "concepts", 4015, "Concept", "concept"),
    _Kind("location", "locations", 4020, "Location", "location"),
    _Kind("origin", "origins", 4030, "Origin", "origin"),
    _Kind("power", "powers", 4035, "Power", "power"),
    _Kind("person", "people", 4040, "Creator", "person"),
    _Kind("story_arc", "story_arcs", 4045, "Story Arc", "story-arc"),
    _Kind("volume", "volumes", 4050, "Volume", "volume"),
    _Kind("object", "objects", 4055, "Object", "object"),
    _Kind("team", "teams", 4060, "Team", "team"),
)
_BY_SINGULAR = {kind.singular: kind for kind in _KINDS}
_BY_PLURAL = {kind.plural: kind for kind in _KINDS}


def _kind_named(name: str) -> _Kind:
    kind = _BY_SINGULAR.get(name) or _BY_PLURAL.get(name)
    if kind is None:
        known = ", ".join(sorted(_BY_SINGULAR))
        raise ValueError(f"unknown resource {name!r}; known: {known}")
    return kind


def _mix(kind: _Kind, item_id: int) -> int:
    """A stable pseudo-random number per item, so fields vary without depending on the run."""
    return zlib.crc32(f"{kind.singular}:{item_id}".encode())


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _envelope(
    results: JSONDict | list[JSONDict],
    *,
    limit: int,
    offset: int,
    total: int,
    status_code: int = 1,
    error: str = "OK",
) -> JSONDict:
    page = len(results) if isinstance(results, list) else 1
    return {
        "error": error,
        "limit": limit,
        "offset": offset,
        "number_of_page_results": page,
        "number_of_total_results": total,
        "status_code": status_code,
        "results": results,
        "version": "1.0",
    }


def _error_envelope(status_code: int, error: str) -> JSONDict:
    return {
        "error": error,
        "limit": 0,
        "offset": 0,
        "number_of_page_results": 0,
        "number_of_total_results": 0,
        "status_code": status_code,
        "results": [],
        "version": "1.0",
    }


def _encode(payload: JSONDict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class _Catalogue:
    """Builds every item from its resource and id alone, with links that stay within range."""

    def __init__(self, totals: Mapping[str, int]) -> None:
        self.totals = dict(totals)

    def total(self, kind: _Kind) -> int:
        return self.totals[kind.singular]

    def _wrap(self, kind: _Kind, n: int) -> int:
        return (n - 1) % self.total(kind) + 1

    @staticmethod
    def name(kind: _Kind, item_id: int) -> str:
        return f"{kind.label} {item_id}"

    @staticmethod
    def issue_name(item_id: int) -> str | None:
        """Every fifth issue has no name, as many on Comic Vine do."""
        return None if item_id % 5 == 0 else f"Issue {item_id}"

    @staticmethod
    def issue_number(item_id: int) -> str:
        return str((item_id - 1) % _ISSUES_PER_VOLUME + 1)

    def ref(
        self,
        singular: str,
        n: int,
        *,
        number: bool = False,
        count: int | None = None,
        role: str | None = None,
    ) -> JSONDict:
        kind = _BY_SINGULAR[singular]
        item_id = self._wrap(kind, n)
        entry: JSONDict = {
            "api_detail_url": f"{_CV}/api/{kind.singular}/{kind.type_id}-{item_id}/",
            "id": item_id,
            "name": self.issue_name(item_id) if singular == "issue" else self.name(kind, item_id),
            "site_detail_url": f"{_CV}/{kind.slug}/{kind.type_id}-{item_id}/",
        }
        if number:
            entry["issue_number"] = self.issue_number(item_id)
        if count is not None:
            entry["count"] = count
        if role is not None:
            entry["role"] = role
        return entry

    def refs(self, singular: str, start: int, how_many: int, **extra: Any) -> list[JSONDict]:
        return [self.ref(singular, start + step, **extra) for step in range(how_many)]

    @staticmethod
    def images(kind: _Kind, item_id: int) -> JSONDict:
        def url(size: str) -> str:
            return f"{_CV}/a/uploads/{size}/fake/{kind.singular}-{item_id}.jpg"

        return {
            "icon_url": url("square_avatar"),
            "medium_url": url("scale_medium"),
            "screen_url": url("screen_medium"),
            "screen_large_url": url("screen_kubrick"),
            "small_url": url("scale_small"),
            "super_url": url("scale_large"),
            "thumb_url": url("scale_avatar"),
            "tiny_url": url("square_mini"),
            "original_url": url("original"),
            "image_tags": "All Images",
        }

    def basic(self, kind: _Kind, item_id: int) -> JSONDict:
        """The fields Comic Vine returns for the item in lists (and in the detail view)."""
        mix = _mix(kind, item_id)
        name = self.name(kind, item_id)
        item: JSONDict = {
            "api_detail_url": f"{_CV}/api/{kind.singular}/{kind.type_id}-{item_id}/",
            "id": item_id,
            "name": name,
            "site_detail_url": f"{_CV}/{kind.slug}/{kind.type_id}-{item_id}/",
        }
        if kind.singular == "origin":
            return item
        added = datetime(2008, 6, 6, 11, 10, 16) + timedelta(hours=7 * item_id)
        item |= {
            "aliases": f"{name} alias" if mix % 3 == 0 else None,
            "date_added": _stamp(added),
            "date_last_updated": _stamp(added + timedelta(days=mix % 400, minutes=mix % 60)),
            "description": f"<p>{name} is part of a generated catalogue.</p>",
        }
        if kind.singular == "power":
            return item
        item |= {"deck": f"About {name}.", "image": self.images(kind, item_id)}
        return item | self._basic_extra(kind, item_id, mix)

    def _basic_extra(self, kind: _Kind, item_id: int, mix: int) -> JSONDict:
        year = 1960 + mix % 60
        first_issue = self.ref("issue", mix % 997 + 1, number=True)
        appearances = mix % 500 + 1
        match kind.singular:
            case "issue":
                cover = date(1960 + item_id % 60, item_id % 12 + 1, 1)
                volume = (item_id - 1) // _ISSUES_PER_VOLUME + 1
                return {
                    "associated_images": [],
                    "cover_date": cover.isoformat(),
                    "issue_number": self.issue_number(item_id),
                    "name": self.issue_name(item_id),
                    "store_date": (cover - timedelta(days=45)).isoformat(),
                    "volume": self.ref("volume", volume),
                }
            case "character":
                return {
                    "birth": None,
                    "count_of_issue_appearances": appearances,
                    "first_appeared_in_issue": first_issue,
                    "gender": mix % 3,
                    "origin": self.ref("origin", mix % 10 + 1),
                    "publisher": self.ref("publisher", mix % 50 + 1),
                    "real_name": f"Real Name {item_id}",
                }
            case "publisher":
                return {
                    "location_address": f"{item_id} Fake Street",
                    "location_city": "New York",
                    "location_state": "New York",
                }
            case "concept" | "location" | "object":
                count_field = (
                    "count_of_isssue_appearances"
                    if kind.singular == "concept"
                    else "count_of_issue_appearances"
                )
                return {
                    count_field: appearances,
                    "first_appeared_in_issue": first_issue,
                    "start_year": year,
                }
            case "person":
                death = (
                    {
                        "date": f"{year + 60}-01-01 00:00:00.000000",
                        "timezone": "UTC",
                        "timezone_type": 3,
                    }
                    if mix % 4 == 0
                    else None
                )
                return {
                    "birth": f"{year - 30}-{mix % 12 + 1:02d}-01 00:00:00",
                    "count_of_isssue_appearances": appearances,
                    "country": "United States",
                    "death": death,
                    "email": None,
                    "gender": mix % 3,
                    "hometown": "Springfield",
                    "website": f"https://example.com/creators/{item_id}",
                }
            case "story_arc":
                return {
                    "count_of_isssue_appearances": appearances,
                    "first_appeared_in_issue": first_issue,
                    "publisher": self.ref("publisher", mix % 50 + 1),
                }
            case "volume":
                first = (item_id - 1) * _ISSUES_PER_VOLUME + 1
                return {
                    "count_of_issues": _ISSUES_PER_VOLUME,
                    "first_issue": self.ref("issue", first, number=True),
                    "last_issue": self.ref("issue", first + _ISSUES_PER_VOLUME - 1, number=True),
                    "publisher": self.ref("publisher", mix % 50 + 1),
                    "start_year": str(year),
                }
            case "team":
                return {
                    "count_of_isssue_appearances": appearances,
                    "count_of_team_members": mix % 12 + 1,
                    "first_appeared_in_issue": first_issue,
                    "publisher": self.ref("publisher", mix % 50 + 1),
                }
        return {}  # pragma: no cover - every kind is matched above

    def detail(self, kind: _Kind, item_id: int) -> JSONDict:
        """The item as its own endpoint returns it: the list fields plus its references."""
        return self.basic(kind, item_id) | self._references(kind, item_id)

    def _references(self, kind: _Kind, item_id: int) -> JSONDict:
        n = item_id
        match kind.singular:
            case "issue":
                return {
                    "character_credits": self.refs("character", n, 3),
                    "character_died_in": [],
                    "concept_credits": self.refs("concept", n, 1),
                    "first_appearance_characters": None,
                    "first_appearance_concepts": None,
                    "first_appearance_locations": None,
                    "first_appearance_objects": None,
                    "first_appearance_storyarcs": None,
                    "first_appearance_teams": None,
                    "location_credits": self.refs("location", n, 1),
                    "object_credits": self.refs("object", n, 1),
                    "person_credits": [
                        self.ref("person", n, role="writer"),
                        self.ref("person", n + 1, role="artist, cover"),
                    ],
                    "story_arc_credits": self.refs("story_arc", n, 1),
                    "team_credits": self.refs("team", n, 1),
                    "team_disbanded_in": [],
                }
            case "character":
                return {
                    "character_enemies": self.refs("character", n + 1, 2),
                    "character_friends": self.refs("character", n + 3, 2),
                    "creators": self.refs("person", n, 2),
                    "issue_credits": self.refs("issue", n, 3),
                    "issues_died_in": [],
                    "powers": self.refs("power", n, 2),
                    "story_arc_credits": self.refs("story_arc", n, 1),
                    "team_enemies": self.refs("team", n + 1, 1),
                    "team_friends": self.refs("team", n + 2, 1),
                    "teams": self.refs("team", n, 1),
                    "volume_credits": self.refs("volume", n, 2),
                }
            case "publisher":
                return {
                    "characters": self.refs("character", n, 3),
                    "story_arcs": self.refs("story_arc", n, 2),
                    "teams": self.refs("team", n, 2),
                    "volumes": self.refs("volume", n, 3),
                }
            case "concept":
                return {
                    "issue_credits": self.refs("issue", n, 3, number=True),
                    "volume_credits": self.refs("volume", n, 2),
                }
            case "location":
                return {
                    "issue_credits": self.refs("issue", n, 3, number=True),
                    "story_arc_credits": self.refs("story_arc", n, 1),
                    "volume_credits": self.refs("volume", n, 2),
                }
            case "origin":
                return {
                    "character_set": None,
                    "characters": self.refs("character", n, 3),
                    "profiles": [],
                }
            case "power":
                return {"characters": self.refs("character", n, 3)}
            case "person":
                return {
                    "created_characters": self.refs("character", n, 2),
                    "issues": self.refs("issue", n, 3),
                    "story_arc_credits": self.refs("story_arc", n, 1),
                    "volume_credits": self.refs("volume", n, 2),
                }
            case "story_arc":
                return {"issues": self.refs("issue", n, 4)}
            case "volume":
                first = (n - 1) * _ISSUES_PER_VOLUME + 1
                return {
                    "characters": self.refs("character", n, 3, count=2),
                    "concepts": self.refs("concept", n, 1, count=1),
                    "issues": self.refs("issue", first, _ISSUES_PER_VOLUME, number=True),
                    "locations": self.refs("location", n, 1, count=1),
                    "objects": self.refs("object", n, 1, count=1),
                    "people": self.refs("person", n, 2, count=_ISSUES_PER_VOLUME),
                }
            case "object":
                return {
                    "issue_credits": self.refs("issue", n, 2),
                    "story_arc_credits": self.refs("story_arc", n, 1),
                    "volume_credits": self.refs("volume", n, 1),
                }
            case "team":
                return {
                    "character_enemies": self.refs("character", n + 5, 2),
                    "character_friends": self.refs("character", n + 7, 2),
                    "characters": self.refs("character", n, 4),
                    "disbanded_in_issues": [],
                    "issue_credits": self.refs("issue", n, 3),
                    "story_arc_credits": self.refs("story_arc", n, 1),
                    "volume_credits": self.refs("volume", n, 2),
                }
        return {}  # pragma: no cover - every kind is matched above


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    gzipped: Callable[[], bytes] | None = None


def _accepts_gzip(header: str | None) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (an explicit ``gzip`` entry beats ``*``)."""
    if not header:
        return False
    weights: dict[str, float] = {}
    for part in header.split(","):
        name, _, params = part.partition(";")
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[name.strip().lower()] = weight
    for name in ("gzip", "x-gzip", "*"):
        if name in weights:
            return weights[name] > 0
    return False


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(params[name])
    except (KeyError, ValueError):
        return default


_ITEM_SEGMENT = re.compile(r"(\d+)-(\d+)")


class FakeComicVine:
    """A fake Comic Vine API on a local port, with Comic Vine's shapes, errors and rate limit.

    Use it as a context manager: the server runs inside the ``with`` block only.

    Args:
        limit: requests admitted per resource (first path segment after ``/api/``) within any
            ``window_s`` seconds; further ones are answered 420 and not served.
        window_s: length of the sliding rate-limit window, in seconds.
        latency_s: sleep before every answer, so concurrent clients really overlap.
        total_results: ``number_of_total_results`` of every resource; ids run 1 to this.
        totals: per-resource overrides of ``total_results`` (singular or plural names).
    """

    def __init__(
        self,
        *,
        limit: int = 200,
        window_s: float = 3600.0,
        latency_s: float = 0.0,
        total_results: int = 1000,
        totals: Mapping[str, int] | None = None,
    ) -> None:
        if limit < 0 or window_s <= 0 or latency_s < 0:
            raise ValueError("limit and latency_s must be >= 0 and window_s > 0")
        counts = {kind.singular: total_results for kind in _KINDS}
        for name, total in (totals or {}).items():
            counts[_kind_named(name).singular] = total
        if min(counts.values()) < 1:
            raise ValueError("every resource needs at least one item (links must resolve)")
        self.limit = limit
        self.window_s = window_s
        self.latency_s = latency_s
        self._catalogue = _Catalogue(counts)
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._rejected = 0
        self._windows: dict[str, deque[float]] = {}
        self._big: dict[tuple[str, int], bytes] = {}
        self._big_gzipped: dict[tuple[str, int], bytes] = {}
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("FakeComicVine is already running")
        server = _Server(self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close every open connection (keep-alive clients included)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/api``: what a Comic Vine client takes as its base URL."""
        if self._server is None:
            raise RuntimeError("FakeComicVine is not running; use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}/api"

    # -- counters --------------------------------------------------------------------------

    @property
    def calls(self) -> Counter[str]:
        """Served requests (a copy), by ``path`` or ``path?query``.

        The query is sorted and has no ``api_key``, so a key identifies what was asked, not who
        asked; a request whose only parameter is ``api_key`` is counted under its bare path.
        420 answers are not here (see :attr:`rejected`); 401 and 404 answers are.
        """
        with self._lock:
            return Counter(self._calls)

    def calls_for(self, path: str) -> int:
        """Served requests for ``path`` (e.g. ``/api/issue/4000-1/``), whatever their query."""
        with self._lock:
            return sum(n for key, n in self._calls.items() if key.partition("?")[0] == path)

    @property
    def total_calls(self) -> int:
        """Served requests of any path (420 answers excluded)."""
        with self._lock:
            return sum(self._calls.values())

    @property
    def rejected(self) -> int:
        """Requests answered 420 because their resource was over the limit."""
        with self._lock:
            return self._rejected

    def reset_counts(self) -> None:
        """Zero :attr:`calls` and :attr:`rejected`; the rate-limit windows are kept."""
        with self._lock:
            self._calls.clear()
            self._rejected = 0

    # -- content ---------------------------------------------------------------------------

    def set_big(self, resource: str, id: int, size_bytes: int) -> None:
        """Make one item's body about ``size_bytes`` of JSON that compresses poorly.

        ``description`` is filled with hex digits of a PRNG seeded by the item, so the body is
        still deterministic but gzip/zlib can at best halve it - large values stay large in a
        cache. Bodies already longer than ``size_bytes`` are left as they are.
        """
        kind = _kind_named(resource)
        if not 1 <= id <= self._catalogue.total(kind):
            raise ValueError(f"{kind.singular} {id} does not exist")
        item = self._catalogue.detail(kind, id)
        item["description"] = ""
        base = _encode(_envelope(item, limit=1, offset=0, total=1))
        pad = max(0, size_bytes - len(base))
        rng = random.Random(f"{kind.singular}:{id}:{size_bytes}")
        item["description"] = rng.randbytes((pad + 1) // 2).hex()[:pad]
        body = _encode(_envelope(item, limit=1, offset=0, total=1))
        with self._lock:
            self._big[(kind.singular, id)] = body
            self._big_gzipped.pop((kind.singular, id), None)

    # -- request handling (server threads) -------------------------------------------------

    def _track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _admit(self, resource: str) -> bool:
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(resource, deque())
            while window and window[0] <= now - self.window_s:
                window.popleft()
            if len(window) >= self.limit:
                self._rejected += 1
                return False
            window.append(now)
            return True

    def _count(self, path: str, pairs: list[tuple[str, str]]) -> None:
        query = urlencode(sorted((k, v) for k, v in pairs if k != "api_key"))
        with self._lock:
            self._calls[f"{path}?{query}" if query else path] += 1

    def _answer(self, target: str) -> _Answer:
        parts = urlsplit(target)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        params = dict(pairs)
        segments = (
            parts.path.removeprefix("/api/").strip("/").split("/")
            if parts.path.startswith("/api/")
            else None
        )
        if not params.get("api_key"):
            self._count(parts.path, pairs)
            answer = _Answer(401, _encode(_error_envelope(100, "Invalid API Key")))
        elif not self._admit(segments[0] if segments else ""):
            answer = _Answer(
                _RATE_LIMITED_STATUS, _encode(_error_envelope(107, "Rate limit exceeded"))
            )
        else:
            self._count(parts.path, pairs)
            answer = self._serve(segments or [], params)
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        return answer

    def _serve(self, segments: list[str], params: Mapping[str, str]) -> _Answer:
        catalogue = self._catalogue
        if len(segments) == 1 and segments[0] in _BY_PLURAL:
            kind = _BY_PLURAL[segments[0]]
            limit = _int_param(params, "limit", _MAX_LIST_LIMIT)
            limit = min(limit, _MAX_LIST_LIMIT) if limit > 0 else _MAX_LIST_LIMIT
            offset = max(0, _int_param(params, "offset", 0))
            return self._page(kind, limit, offset)
        if len(segments) == 1 and segments[0] == "search":
            return self._search(params)
        if len(segments) == 2 and segments[0] in _BY_SINGULAR:
            kind = _BY_SINGULAR[segments[0]]
            match = _ITEM_SEGMENT.fullmatch(segments[1])
            if match and int(match[1]) == kind.type_id:
                item_id = int(match[2])
                if 1 <= item_id <= catalogue.total(kind):
                    return self._item(kind, item_id)
        return _Answer(404, _encode(_error_envelope(101, "Object Not Found")))

    def _item(self, kind: _Kind, item_id: int) -> _Answer:
        key = (kind.singular, item_id)
        with self._lock:
            big = self._big.get(key)
        if big is None:
            item = self._catalogue.detail(kind, item_id)
            return _Answer(200, _encode(_envelope(item, limit=1, offset=0, total=1)))

        def gzipped() -> bytes:
            with self._lock:
                cached = self._big_gzipped.get(key)
            if cached is None:
                cached = gzip.compress(big, compresslevel=_GZIP_LEVEL, mtime=0)
                with self._lock:
                    self._big_gzipped[key] = cached
            return cached

        return _Answer(200, big, gzipped)

    def _page(self, kind: _Kind, limit: int, offset: int, *, search: bool = False) -> _Answer:
        total = self._catalogue.total(kind)
        results = [
            self._catalogue.basic(kind, item_id)
            for item_id in range(offset + 1, min(offset + limit, total) + 1)
        ]
        if search:
            for result in results:
                result["resource_type"] = kind.singular
        return _Answer(200, _encode(_envelope(results, limit=limit, offset=offset, total=total)))

    def _search(self, params: Mapping[str, str]) -> _Answer:
        names = [name.strip() for name in params.get("resources", "").split(",")]
        kind = next((_BY_SINGULAR[name] for name in names if name in _BY_SINGULAR), None)
        limit = _int_param(params, "limit", _MAX_SEARCH_LIMIT)
        limit = min(limit, _MAX_SEARCH_LIMIT) if limit > 0 else _MAX_SEARCH_LIMIT
        offset = (max(1, _int_param(params, "page", 1)) - 1) * limit
        if kind is None:
            return _Answer(200, _encode(_envelope([], limit=limit, offset=offset, total=0)))
        return self._page(kind, limit, offset, search=True)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: FakeComicVine) -> None:
        self.api = api
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name, which can stall on odd resolvers.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients reuse connections to Comic Vine
    server_version = "FakeComicVine/1.0"
    # Headers and body go out in separate writes; with Nagle's algorithm the body would wait
    # for the client's delayed ACK (~40 ms) on every keep-alive request.
    disable_nagle_algorithm = True

    @property
    def api(self) -> FakeComicVine:
        return cast(_Server, self.server).api

    def setup(self) -> None:
        super().setup()
        self.api._track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.api._track(self.connection, open_=False)

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:
            self.close_connection = True  # the peer, or stop(), closed the socket

    def do_GET(self) -> None:
        self._reply(with_body=True)

    def do_HEAD(self) -> None:
        self._reply(with_body=False)

    def _reply(self, *, with_body: bool) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # keep the connection usable for the next request
        answer = self.api._answer(self.path)
        body = answer.body
        gzipped = _accepts_gzip(self.headers.get("Accept-Encoding"))
        if gzipped:
            body = answer.gzipped() if answer.gzipped else gzip.compress(body, _GZIP_LEVEL, mtime=0)
        reason = "Rate Limit Exceeded" if answer.status == _RATE_LIMITED_STATUS else None
        self.send_response(answer.status, reason)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests and demos report what matters through the counters."""
