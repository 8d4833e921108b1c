"""API client libraries put in front of the shared stores in one call.

:func:`~comic_vine_dynamodb_store.integrations.simyan.protect` moves a simyan ``Comicvine``
onto a :class:`~comic_vine_dynamodb_store.client.GuardedSession` (an optional dependency:
``pip install 'comic-vine-dynamodb-store[simyan]'``). It is imported on first use, so this
package imports without simyan; without it, ``protect`` raises an ``ImportError`` naming the
extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from comic_vine_dynamodb_store.integrations.simyan import protect

__all__ = ["protect"]


def __getattr__(name: str) -> Any:
    if name == "protect":
        # Imported here so that the package works without simyan installed.
        from comic_vine_dynamodb_store.integrations.simyan import protect  # noqa: PLC0415

        return protect
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
