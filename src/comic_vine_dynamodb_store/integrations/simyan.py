"""simyan on the shared stores: :func:`protect` puts a ``Comicvine`` in front of them.

::

    from simyan.comicvine import Comicvine
    from comic_vine_dynamodb_store.integrations.simyan import protect

    comicvine = protect(Comicvine(api_key=KEY), cache=cache, dedupe=dedupe, rate_limit=limiter)
    comicvine.get_issue(14582)        # cache -> dedupe -> rate limit -> Comic Vine

Every simyan method (``get_*``, ``list_*``, ``search_*``, each page of a list) then goes
through the shared cache, de-duplication and rate limit of
:class:`~comic_vine_dynamodb_store.client.GuardedSession`, whichever process or machine calls
it, and simyan validates the bodies served from the stores with its own models, as it does
live ones.

What simyan did on its own machine, and what takes its place:

* **Cache.** simyan's SQLite cache (``cache_path``, ``cache_expiry``) is closed and no longer
  read or written (``Comicvine()`` still creates its empty file); responses are cached in
  ``cache`` for ``cache_ttl_seconds`` (simyan's own expiry was 14 days). ``api_key`` is never
  part of a key and never stored, whatever ``ignored_parameters`` says.
* **Rate limit.** simyan's SQLite limiter (``ratelimit_path``: 1 request per second and 200
  per hour) is closed too: the shared ``rate_limit`` store is now what keeps Comic Vine's
  limits, for every process at once. The flow counts a request against the path segment
  after ``/api/`` (``issue`` for ``get_issue``, ``issues`` for ``list_issues``, ``search`` for
  every search), as Comic Vine does. Comic Vine allows 200 requests per resource per hour;
  :data:`COMIC_VINE_RATE_LIMIT` is that limit counted over an hour and a minute
  (``RateLimitConfig(limit=200, window_ms=3_660_000)``)::

      DynamoDBRateLimitStore(table_name=..., default_config=COMIC_VINE_RATE_LIMIT)

  The minute is a margin: the limiter counts a request when it admits it, Comic Vine when
  the request arrives, and the time in between (the limiter's round trip to DynamoDB, the
  request's trip to Comic Vine) varies. With the bare hour
  (``RateLimitConfig(limit=200, window_ms=3_600_000)``), a request admitted just as an old
  one leaves the limiter's window can reach Comic Vine while that old one, sent slowly, is
  still in Comic Vine's hour: a 420.

  simyan's extra pace of one request per second is not reproduced: the flow counts each
  request against one resource of one limiter, so a second limit on the same requests would
  need a second store. To spread bursts, use a shorter window with a proportional limit:
  ``RateLimitConfig(limit=50, window_ms=915_000)`` never admits more than 200 in an hour and
  a minute (four such windows) and at most 50 in any quarter of an hour.
* **Timeout.** simyan's ``timeout`` still goes with every request. simyan's limiter waited at
  most twice that timeout for room; ``max_wait_ms`` defaults to the same (40 s for simyan's
  default 20 s).
* **Headers and parameters.** The new session starts with the old one's headers
  (``User-Agent``, ``Accept``), query parameters (``api_key``, ``format``), auth, proxies,
  TLS settings, cookies and hooks. Adapters mounted on the old session are not carried over
  (closing it closes them).

What a simyan caller sees:

* a 404 is simyan's ``ServiceError``, a 401 its ``AuthenticationError``, a 420 from the API its
  ``RateLimitError``, a slow API its ``ServiceError`` ("took too long"), all as before (error
  answers are never cached);
* a request the shared limiter does not admit within ``max_wait_ms`` (or a limiter store that
  cannot answer) raises :class:`ComicvineRateLimitedError` before anything is sent. It is
  both simyan's ``RateLimitError`` (so ``except ServiceError`` still catches every failure of
  a simyan call) and this library's
  :class:`~comic_vine_dynamodb_store.errors.RateLimitedError`, with ``resource`` and
  ``wait_ms`` (how far the next admission was). Without the translation the flow's error,
  which is no ``requests`` exception, would pass simyan's handlers untouched;
* a cache or dedupe store that fails never fails the call (the request goes to Comic Vine).

Call :func:`protect` before sharing the ``Comicvine`` between threads; the protected one may
then be shared (the flow keeps no per-call state of its own). It relies on simyan 4's
``Comicvine._session`` and ``Comicvine._timeout`` (the ``[simyan]`` extra pins
``simyan>=4.2,<5``). This module imports simyan: without it, importing the module raises an
``ImportError`` naming the ``[simyan]`` extra.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from typing import Any, TypedDict, Unpack

import requests

from comic_vine_dynamodb_store.client.flow import FlowOptions
from comic_vine_dynamodb_store.client.session import GuardedSession
from comic_vine_dynamodb_store.clock import Clock
from comic_vine_dynamodb_store.config import RateLimitConfig
from comic_vine_dynamodb_store.errors import RateLimitedError
from comic_vine_dynamodb_store.stores.contracts import (
    AdaptiveRateLimitStore,
    CacheStore,
    DedupeStore,
    Priority,
    RateLimitStore,
)

try:
    from simyan.comicvine import Comicvine  # type: ignore[import-untyped]
    from simyan.errors import RateLimitError  # type: ignore[import-untyped]
except ModuleNotFoundError as exc:
    if (exc.name or "").partition(".")[0] != "simyan":
        raise
    raise ImportError(
        "comic_vine_dynamodb_store.integrations.simyan needs simyan: "
        "pip install 'comic-vine-dynamodb-store[simyan]'"
    ) from exc

__all__ = [
    "COMIC_VINE_RATE_LIMIT",
    "ComicvineRateLimitedError",
    "SimyanFlowOptions",
    "protect",
]

COMIC_VINE_RATE_LIMIT = RateLimitConfig(limit=200, window_ms=3_660_000)
"""Comic Vine's limit, 200 requests per resource per hour, counted over an hour and a minute
(a margin for the time between admission and arrival; see the module documentation). Give it
to the shared rate-limit store as its ``default_config``."""

_API_KEY = "api_key"
_SIMYAN_WAIT_FACTOR = 2
"""simyan's own limiter gave up after ``timeout * 2`` seconds (its ``max_delay``)."""


class ComicvineRateLimitedError(RateLimitedError, RateLimitError):  # type: ignore[misc]
    """The shared limiter did not admit a simyan request within ``max_wait_ms``; nothing was
    sent. Both simyan's ``RateLimitError`` and this library's ``RateLimitedError``."""


class SimyanFlowOptions(TypedDict, total=False):
    """The :class:`~comic_vine_dynamodb_store.client.GuardedFlow` keywords :func:`protect`
    passes on as they are (the others are its own arguments)."""

    resource_for: Callable[[str], str]
    max_wait_ms: int
    ignored_parameters: Iterable[str]
    sleep: Callable[[float], None]
    clock: Clock


class _ComicvineSession(GuardedSession):
    """A ``GuardedSession`` whose limiter refusals reach simyan's caller as simyan errors."""

    def send(
        self,
        request: requests.PreparedRequest,
        *,
        priority: Priority | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        try:
            return super().send(request, priority=priority, **kwargs)
        except ComicvineRateLimitedError:
            raise  # a redirect hop's refusal, already translated by its own send
        except RateLimitedError as exc:
            raise ComicvineRateLimitedError(
                exc.message, resource=exc.resource, wait_ms=exc.wait_ms
            ) from exc


def _simyan_max_wait_ms(comicvine: Any) -> int | None:
    """Twice simyan's timeout in ms (its limiter's longest wait), or None if it has none."""
    timeout = getattr(comicvine, "_timeout", None)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        return None
    if not (math.isfinite(timeout) and timeout > 0):
        return None
    return math.ceil(timeout * _SIMYAN_WAIT_FACTOR * 1000)


def _ignoring_api_key(parameters: Iterable[str]) -> tuple[str, ...]:
    names = (parameters,) if isinstance(parameters, str) else tuple(parameters)
    return names if _API_KEY in names else (*names, _API_KEY)


def _carry_over(old: requests.Session, new: requests.Session) -> None:
    """What the new session takes over from simyan's: everything that shapes a request."""
    new.headers.clear()
    new.headers.update(old.headers)
    new.params = copy.copy(old.params)
    new.auth = old.auth
    new.proxies = dict(old.proxies)
    new.verify = old.verify
    new.cert = old.cert
    new.trust_env = old.trust_env
    new.max_redirects = old.max_redirects
    new.stream = old.stream
    new.cookies.update(old.cookies)
    new.hooks = {event: list(hooks) for event, hooks in old.hooks.items()}


def protect(
    comicvine: Comicvine,
    *,
    cache: CacheStore[Any] | None = None,
    dedupe: DedupeStore[Any] | None = None,
    rate_limit: RateLimitStore | AdaptiveRateLimitStore | None = None,
    priority: Priority = "user",
    cache_ttl_seconds: float = 3600,
    **flow_options: Unpack[SimyanFlowOptions],
) -> Comicvine:
    """Put ``comicvine`` on a ``GuardedSession`` over the given stores; returns the same object.

    ``cache``, ``dedupe`` and ``rate_limit`` are the shared stores (None turns that
    protection off); they belong to the caller, who closes them. ``priority`` is what an
    adaptive limiter admits simyan's requests as: ``"user"`` by default, as simyan calls
    usually answer someone waiting; pass ``"background"`` for a crawler. ``cache_ttl_seconds``
    is how long a response stays cached. ``flow_options`` go to the flow as they are
    (``max_wait_ms`` defaults to twice simyan's timeout, and ``ignored_parameters`` always
    includes ``api_key``). simyan's own session, with its SQLite cache and limiter, is closed.
    See the module documentation for what changes for simyan's callers.
    """
    if not isinstance(comicvine, Comicvine):
        raise TypeError(f"protect needs a simyan Comicvine, got {type(comicvine).__name__}")
    old = getattr(comicvine, "_session", None)
    if not isinstance(old, requests.Session):
        raise TypeError(
            "this Comicvine keeps no requests.Session in _session; protect supports simyan 4"
        )
    options: FlowOptions = {
        "cache": cache,
        "dedupe": dedupe,
        "rate_limit": rate_limit,
        "priority": priority,
        "cache_ttl_seconds": cache_ttl_seconds,
        **flow_options,
    }
    if "max_wait_ms" not in options:
        simyan_wait = _simyan_max_wait_ms(comicvine)
        if simyan_wait is not None:
            options["max_wait_ms"] = simyan_wait
    options["ignored_parameters"] = _ignoring_api_key(
        options.get("ignored_parameters", (_API_KEY,))
    )
    session = _ComicvineSession(**options)
    _carry_over(old, session)
    comicvine._session = session
    old.close()
    return comicvine
