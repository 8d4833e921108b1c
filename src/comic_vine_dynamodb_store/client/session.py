"""``GuardedSession``: a ``requests.Session`` whose requests go through the client flow.

The session overrides :meth:`requests.Session.send`, the one method every request goes
through: ``get``/``post``/``request`` (after params, auth, cookies and headers are merged into
the prepared request), a prepared request given to ``session.send`` directly, and each hop of
a redirect (so every request that reaches the API is admitted by the limiter, once). Hooks
run on stored responses as on live ones. A response served without a request of its own is a
real :class:`requests.Response` built from the stored one, with ``from_cache`` True; a live
response is the one ``requests`` made, with ``from_cache`` False.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, Unpack

import requests
from requests.hooks import dispatch_hook
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3 import HTTPHeaderDict, HTTPResponse

from comic_vine_dynamodb_store.client.flow import (
    FlowOptions,
    FlowRequest,
    GuardedFlow,
    StoredResponse,
    UpstreamResponse,
)
from comic_vine_dynamodb_store.stores.contracts import Priority

__all__ = ["GuardedSession", "stored_to_requests_response"]

_dispatch_hook: Callable[..., Any] = dispatch_hook
"""``requests``' own hook runner (untyped in its stubs)."""

_priority: ContextVar[Priority | None] = ContextVar("guarded_session_priority", default=None)
"""The priority given to ``get``/``request`` & co., read by ``send`` (which ``requests`` calls
without it); a context variable, so threads and redirect hops each see their own call's."""


@contextlib.contextmanager
def _using(priority: Priority | None) -> Iterator[None]:
    if priority is None:
        yield
        return
    token = _priority.set(priority)
    try:
        yield
    finally:
        _priority.reset(token)


def stored_to_requests_response(
    stored: StoredResponse, request: requests.PreparedRequest
) -> requests.Response:
    """A :class:`requests.Response` equal to the stored one, as ``requests`` would build it.

    The body is already read (``content``, ``text``, ``json()``, ``iter_content`` work) and
    ``raw`` is a urllib3 response over the same bytes, for code that reads it; ``url`` is the
    stored URL (ignored parameters removed), ``request`` the request it answers.
    """
    raw_headers = HTTPHeaderDict()
    for name, value in stored.headers:
        raw_headers.add(name, value)
    response = requests.Response()
    response.status_code = stored.status
    response.reason = stored.reason
    response.headers = CaseInsensitiveDict(raw_headers.items())
    response.url = stored.url
    response.encoding = get_encoding_from_headers(response.headers)
    response.request = request
    response.elapsed = timedelta(0)
    response.raw = HTTPResponse(
        body=io.BytesIO(stored.body),
        headers=raw_headers,
        status=stored.status,
        reason=stored.reason,
        preload_content=False,
        decode_content=False,
        request_url=stored.url,
    )
    response._content = stored.body
    response._content_consumed = True  # type: ignore[attr-defined]
    return response


def _mark_live(response: requests.Response, **_: Any) -> None:
    response.from_cache = False  # type: ignore[attr-defined]


class GuardedSession(requests.Session):
    """A ``requests.Session`` with the shared cache, dedupe and rate limit of
    :class:`~comic_vine_dynamodb_store.client.flow.GuardedFlow` (same keywords).

    ``priority="user"`` on any request method (``get``, ``request``, ``send``...) overrides
    the session's default limiter priority for that call. The stores belong to the caller:
    closing the session does not close them.
    """

    def __init__(self, **options: Unpack[FlowOptions]) -> None:
        super().__init__()
        self.flow = GuardedFlow(**options)

    def send(
        self,
        request: requests.PreparedRequest,
        *,
        priority: Priority | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send ``request`` through the flow; ``kwargs`` are ``requests.Session.send``'s."""
        chosen = priority if priority is not None else _priority.get()
        base_send = super().send
        # A copy whose first response hook marks the live response, so that the caller's
        # hooks, which requests runs before send returns, see ``from_cache`` too.
        sent = request.copy()
        hooks = [hook for hook in request.hooks.get("response", []) if hook is not _mark_live]
        sent.hooks = {**request.hooks, "response": [_mark_live, *hooks]}

        def upstream(_: FlowRequest) -> UpstreamResponse[requests.Response]:
            response = base_send(sent, **kwargs)
            return UpstreamResponse(
                native=response,
                status=response.status_code,
                reason=response.reason or "",
                headers=list(response.headers.items()),
                url=response.url,
                read_body=lambda: response.content,
                close=response.close,
            )

        flow_request = FlowRequest(method=request.method or "GET", url=request.url or "")
        result = self.flow.send(flow_request, upstream, priority=chosen)
        if result.native is not None:
            return result.native
        assert result.stored is not None
        response = stored_to_requests_response(result.stored, request)
        response.from_cache = True  # type: ignore[attr-defined]
        kwargs.pop("allow_redirects", None)
        hooked: requests.Response = _dispatch_hook("response", request.hooks, response, **kwargs)
        return hooked

    def request(
        self,
        method: str | bytes,
        url: str | bytes,
        *args: Any,
        priority: Priority | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """``requests.Session.request``, with an optional limiter ``priority``."""
        with _using(priority):
            return super().request(method, url, *args, **kwargs)

    def get(
        self, url: str | bytes, *, priority: Priority | None = None, **kwargs: Any
    ) -> requests.Response:
        """``requests.Session.get``, with an optional limiter ``priority``."""
        with _using(priority):
            return super().get(url, **kwargs)

    def head(
        self, url: str | bytes, *, priority: Priority | None = None, **kwargs: Any
    ) -> requests.Response:
        """``requests.Session.head``, with an optional limiter ``priority``."""
        with _using(priority):
            return super().head(url, **kwargs)

    def options(
        self, url: str | bytes, *, priority: Priority | None = None, **kwargs: Any
    ) -> requests.Response:
        """``requests.Session.options``, with an optional limiter ``priority``."""
        with _using(priority):
            return super().options(url, **kwargs)

    def post(
        self, url: str | bytes, *args: Any, priority: Priority | None = None, **kwargs: Any
    ) -> requests.Response:
        """``requests.Session.post``, with an optional limiter ``priority``."""
        with _using(priority):
            return super().post(url, *args, **kwargs)

    def put(
        self, url: str | bytes, *args: Any, priority: Priority | None = None, **kwargs: Any
    ) -> requests.Response:
        """``requests.Session.put``, with an optional limiter ``priority``."""
        with _using(priority):
            return super().put(url, *args, **kwargs)

    def patch(
        self, url: str | bytes, *args: Any, priority: Priority | None = None, **kwargs: Any
    ) -> requests.Response:
        """``requests.Session.patch``, with an optional limiter ``priority``."""
        with _using(priority):
            return super().patch(url, *args, **kwargs)

    def delete(
        self, url: str | bytes, *, priority: Priority | None = None, **kwargs: Any
    ) -> requests.Response:
        """``requests.Session.delete``, with an optional limiter ``priority``."""
        with _using(priority):
            return super().delete(url, **kwargs)
