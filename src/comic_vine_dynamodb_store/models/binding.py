"""Binding the entities to a table at run time.

PynamoDB reads a model's table, region, endpoint, retries and timeouts from its ``Meta`` class,
once per class. The entity classes therefore carry no ``Meta``; a :class:`TableBinding` makes a
subclass of an entity with its own ``Meta`` (and so its own connection), cached per binding, so
any number of stores in one process can use different tables or endpoints side by side::

    binding = TableBinding.from_options(StoreOptions(table_name="a", endpoint=url))
    Cache = binding.model(CacheItem)        # a CacheItem subclass bound to table "a"
    Cache.get_live(*Cache.key_of("", "k"))
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TypeVar, cast

import botocore.session

from comic_vine_dynamodb_store.config import StoreOptions
from comic_vine_dynamodb_store.models.base import GSI1, StoreItem
from comic_vine_dynamodb_store.resilience.transport import StoreConnection

__all__ = ["TableBinding", "attempt_timeouts_s"]

M = TypeVar("M", bound=StoreItem)

_CONNECT_TIMEOUT_CAP_S = 5.0


def attempt_timeouts_s(timeout_ms: int) -> tuple[float, float]:
    """``(connect, read)`` socket timeouts of one attempt of an operation bounded by
    ``timeout_ms``: a quarter (at most 5 s) to connect and half to read.

    One attempt thus lasts at most three quarters of the budget, and the pipeline starts a
    retry only while a whole attempt still fits (see ``OperationPipeline``), so an operation
    ends within ``timeout_ms`` however its attempts fail, a black hole included.
    """
    timeout_s = timeout_ms / 1000
    return min(timeout_s / 4, _CONNECT_TIMEOUT_CAP_S), timeout_s / 2


@dataclass(frozen=True, slots=True)
class TableBinding:
    """Where and how the models talk to DynamoDB: hashable, so bound classes are shared."""

    table_name: str
    region: str
    endpoint: str | None = None
    max_retries: int = 3
    retry_delay_ms: int = 100
    connect_timeout_s: float = _CONNECT_TIMEOUT_CAP_S
    read_timeout_s: float = 30.0
    session: botocore.session.Session | None = None

    @classmethod
    def from_options(cls, options: StoreOptions) -> TableBinding:
        """The binding a store's options describe.

        Each attempt's socket timeouts come from ``circuit_breaker.timeout_ms`` (see
        :func:`attempt_timeouts_s`), so a hung request is cancelled rather than waited for.
        """
        connect_s, read_s = attempt_timeouts_s(options.circuit_breaker.timeout_ms)
        return cls(
            table_name=options.table_name,
            region=options.resolved_region,
            endpoint=options.endpoint,
            max_retries=options.max_retries,
            retry_delay_ms=options.retry_delay_ms,
            session=options.client,
            connect_timeout_s=connect_s,
            read_timeout_s=read_s,
        )

    def model(self, entity: type[M]) -> type[M]:
        """``entity`` bound to this table (the same class for equal bindings while in use)."""
        return cast("type[M]", _bind(entity, self))


# Bound classes live as long as a store (or caller) holds them, and no longer: each carries a
# botocore client, so a process that goes through many tables must not keep them all.
_bound: weakref.WeakValueDictionary[tuple[type[StoreItem], TableBinding], type[StoreItem]] = (
    weakref.WeakValueDictionary()
)
_bound_lock = threading.Lock()


def _bind(entity: type[StoreItem], binding: TableBinding) -> type[StoreItem]:
    with _bound_lock:
        bound = _bound.get((entity, binding))
        if bound is None:
            bound = _bind_new(entity, binding)
            _bound[(entity, binding)] = bound
        return bound


def _bind_new(entity: type[StoreItem], binding: TableBinding) -> type[StoreItem]:
    meta = type(
        "Meta",
        (),
        {
            "table_name": binding.table_name,
            "region": binding.region,
            "host": binding.endpoint,
            "max_retry_attempts": binding.max_retries,
            "connect_timeout_seconds": binding.connect_timeout_s,
            "read_timeout_seconds": binding.read_timeout_s,
            "billing_mode": "PAY_PER_REQUEST",
        },
    )
    # A fresh GSI1 instance in the namespace binds the index to the new class, so index
    # queries go through this binding's connection, not the unbound base.
    namespace = {"Meta": meta, "gsi1": GSI1(), "__module__": entity.__module__}
    bound = cast(
        "type[StoreItem]", type(f"{entity.__name__}@{binding.table_name}", (entity,), namespace)
    )
    # PynamoDB builds the table connection (no I/O); its botocore side is swapped for ours,
    # which carries the store's retries and request meter.
    table_connection = bound._get_connection()
    connection = StoreConnection(
        region=binding.region,
        host=binding.endpoint,
        connect_timeout_seconds=binding.connect_timeout_s,
        read_timeout_seconds=binding.read_timeout_s,
        max_retries=binding.max_retries,
        retry_delay_ms=binding.retry_delay_ms,
        session=binding.session,
    )
    connection.add_meta_table(table_connection.get_meta_table())
    table_connection.connection = connection
    return bound
