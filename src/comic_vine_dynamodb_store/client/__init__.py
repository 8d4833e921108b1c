"""HTTP clients guarded by the stores: shared cache, de-duplication and rate limiting.

:class:`GuardedSession` (``requests``) and :class:`GuardedTransport` (``httpx``, an optional
dependency: ``pip install comic-vine-dynamodb-store[httpx]``) are thin adapters over one
transport-free :class:`GuardedFlow`. ``GuardedTransport`` is imported on first use, so this
package imports without httpx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comic_vine_dynamodb_store.client.flow import (
    FlowOptions,
    FlowRequest,
    FlowResponse,
    GuardedFlow,
    StoredResponse,
    UpstreamResponse,
    default_resource_for,
    request_key,
)
from comic_vine_dynamodb_store.client.session import GuardedSession

if TYPE_CHECKING:
    from comic_vine_dynamodb_store.client.transport import GuardedTransport

__all__ = [
    "FlowOptions",
    "FlowRequest",
    "FlowResponse",
    "GuardedFlow",
    "GuardedSession",
    "GuardedTransport",
    "StoredResponse",
    "UpstreamResponse",
    "default_resource_for",
    "request_key",
]


def __getattr__(name: str) -> Any:
    if name == "GuardedTransport":
        try:
            # Imported here so that the package works without httpx installed.
            from comic_vine_dynamodb_store.client.transport import GuardedTransport  # noqa: PLC0415
        except ModuleNotFoundError as exc:
            if exc.name != "httpx":
                raise
            raise ImportError(
                "GuardedTransport needs httpx: pip install 'comic-vine-dynamodb-store[httpx]'"
            ) from exc
        return GuardedTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
