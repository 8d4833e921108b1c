"""``GuardedTransport``: an ``httpx`` transport whose requests go through the client flow.

A transport sees every request an ``httpx.Client`` sends, redirect hops included, after the
client has merged params, auth, cookies and headers. Use it as ``httpx.Client(transport=
GuardedTransport(cache=..., ...))``; ``extensions={"priority": "user"}`` on a request overrides
the default limiter priority, and ``response.extensions["from_cache"]`` says whether the
response was served without a request of its own.
"""

from __future__ import annotations

from typing import Any, Unpack

import httpx

from comic_vine_dynamodb_store.client.flow import (
    FlowOptions,
    FlowRequest,
    GuardedFlow,
    StoredResponse,
    UpstreamResponse,
)

__all__ = ["GuardedTransport", "stored_to_httpx_response"]


def stored_to_httpx_response(stored: StoredResponse, request: httpx.Request) -> httpx.Response:
    """An ``httpx.Response`` equal to the stored one, answering ``request``."""
    return httpx.Response(
        stored.status,
        headers=list(stored.headers),
        content=stored.body,
        request=request,
        extensions={
            "from_cache": True,
            "reason_phrase": stored.reason.encode("ascii", "replace"),
            "http_version": b"HTTP/1.1",
        },
    )


class _Upstream:
    """The inner transport's call for one request, and the response the client must get.

    Reading a response inside the transport would leave the client a consumed stream (no
    ``elapsed``, no streaming): once the flow reads a body to store it, ``latest`` becomes a
    fresh response over the same undecoded bytes, which the client reads as usual.
    """

    def __init__(self, transport: httpx.BaseTransport, request: httpx.Request) -> None:
        self._transport = transport
        self._request = request
        self.latest: httpx.Response | None = None

    def __call__(self, _: FlowRequest) -> UpstreamResponse[httpx.Response]:
        response = self._transport.handle_request(self._request)
        self.latest = response
        return UpstreamResponse(
            native=response,
            status=response.status_code,
            reason=response.reason_phrase,
            headers=response.headers.multi_items(),
            url=str(self._request.url),
            read_body=self._read_body,
            close=response.close,
        )

    def _read_body(self) -> bytes:
        response = self.latest
        assert response is not None
        encoded = b"".join(response.iter_raw())
        self.latest = httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(encoded),
            extensions=dict(response.extensions),
        )
        # A throwaway response undoes Content-Encoding exactly as the client will.
        return httpx.Response(
            response.status_code, headers=response.headers, content=encoded
        ).read()


class GuardedTransport(httpx.BaseTransport):
    """An ``httpx`` transport with the shared cache, dedupe and rate limit of
    :class:`~comic_vine_dynamodb_store.client.flow.GuardedFlow` (same keywords), in front of
    ``transport`` (default ``httpx.HTTPTransport()``).

    Closing it closes the inner transport, not the stores: they belong to the caller.
    """

    def __init__(
        self, transport: httpx.BaseTransport | None = None, **options: Unpack[FlowOptions]
    ) -> None:
        self.transport = transport if transport is not None else httpx.HTTPTransport()
        self.flow = GuardedFlow(**options)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Serve ``request`` from the stores or through the inner transport."""
        upstream = _Upstream(self.transport, request)
        priority: Any = request.extensions.get("priority")
        result = self.flow.send(
            FlowRequest(method=request.method, url=str(request.url)), upstream, priority=priority
        )
        if result.stored is not None:
            return stored_to_httpx_response(result.stored, request)
        response = upstream.latest
        assert response is not None
        response.extensions["from_cache"] = False
        return response

    def close(self) -> None:
        """Close the inner transport."""
        self.transport.close()
