"""Fault injection below the retry layer: botocore's ``before-send`` event on a store's client.

A handler that returns a response short-circuits the HTTP send, so botocore parses it as if
DynamoDB had answered and its real retry logic runs; one that raises a transport error looks
like a network failure. Every attempt, injected or real, is recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def error_response(url: str, status: int, code: str, message: str = "injected") -> AWSResponse:
    """An AWS JSON error response as DynamoDB sends it."""
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})
    headers: Any = {
        "x-amzn-RequestId": f"injected-{code}",
        "Content-Type": "application/x-amz-json-1.0",
    }
    return AWSResponse(url, status, headers, _Body(body.encode()))


def json_response(url: str, payload: dict[str, Any]) -> AWSResponse:
    """A successful DynamoDB answer with ``payload`` as its body."""
    headers: Any = {"x-amzn-RequestId": "injected-ok", "Content-Type": "application/x-amz-json-1.0"}
    return AWSResponse(url, 200, headers, _Body(json.dumps(payload).encode()))


Fault = Callable[[Any], AWSResponse | None]


@dataclass
class Injector:
    """Records every request sent and answers with ``faults`` in turn (None: pass through)."""

    faults: list[Fault | None] = field(default_factory=list)
    default: Fault | None = None
    sent: list[str] = field(default_factory=list)

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        self.sent.append(request.headers.get("X-Amz-Target", b"").decode().split(".")[-1])
        fault = self.faults.pop(0) if self.faults else self.default
        return fault(request) if fault is not None else None


def throttle(request: Any) -> AWSResponse:
    return error_response(request.url, 400, "ThrottlingException", "Rate of requests exceeds")


def server_error(request: Any) -> AWSResponse:
    return error_response(request.url, 500, "InternalServerError")


@pytest.fixture
def inject() -> Iterator[Callable[[Any], Injector]]:
    """``inject(store)`` attaches an :class:`Injector` to the store's botocore client."""
    attached: list[tuple[Any, Injector]] = []

    def attach(store: Any) -> Injector:
        client = store._model(store.item_model)._get_connection().connection.client
        injector = Injector()
        client.meta.events.register("before-send.dynamodb", injector)
        attached.append((client, injector))
        return injector

    yield attach
    for client, injector in attached:
        client.meta.events.unregister("before-send.dynamodb", injector)
