"""Shared fixtures: one real DynamoDB Local per test session, a fresh table per test.

DynamoDB Local comes from :mod:`comic_vine_dynamodb_store.local` (``DYNAMODB_ENDPOINT``, else
Docker, else the jar), never from a mock. Tests that use it are marked ``dynamodb``
automatically, so ``pytest -m dynamodb`` counts what ran against it.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

from comic_vine_dynamodb_store.local import LocalDynamoDB, start_local_dynamodb
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore
from comic_vine_dynamodb_store.table import create_table, delete_table
from tests.support import FakeClock

settings.register_profile("default", deadline=None)
settings.load_profile("default")

# DynamoDB Local accepts any credentials; fixed dummy ones keep tests away from real AWS
# accounts and from slow instance-metadata lookups.
os.environ["AWS_ACCESS_KEY_ID"] = "local"
os.environ["AWS_SECRET_ACCESS_KEY"] = "local"
os.environ.pop("AWS_SESSION_TOKEN", None)
os.environ.pop("AWS_PROFILE", None)
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

REGION = "us-east-1"
_DYNAMODB_FIXTURES = {"dynamodb_local", "endpoint", "table_name", "make_table_name"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _DYNAMODB_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.dynamodb)


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[LocalDynamoDB]:
    """A running DynamoDB Local for the whole session."""
    with start_local_dynamodb() as local:
        yield local


@pytest.fixture(scope="session")
def endpoint(dynamodb_local: LocalDynamoDB) -> str:
    """The session's DynamoDB Local endpoint URL."""
    return dynamodb_local.endpoint


@pytest.fixture
def make_table_name(endpoint: str) -> Iterator[Callable[[], str]]:
    """Hands out unused table names; whatever tables they name are deleted afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append(f"test-{uuid.uuid4().hex[:12]}")
        return names[-1]

    yield make
    for name in names:
        delete_table(name, endpoint=endpoint, region=REGION, missing_ok=True)


@pytest.fixture
def table_name(endpoint: str, make_table_name: Callable[[], str]) -> str:
    """A fresh table with the stores' schema, deleted after the test."""
    name = make_table_name()
    create_table(name, endpoint=endpoint, region=REGION)
    return name


@pytest.fixture
def clock() -> FakeClock:
    """A clock the test moves by hand, shared by the stores it makes."""
    return FakeClock()


@pytest.fixture
def make_dynamodb_store(
    endpoint: str, table_name: str, clock: FakeClock
) -> Iterator[Callable[..., Any]]:
    """``make(StoreClass, **options)``: a store on the test's table and clock, with no cleanup
    thread unless asked; every store made is closed afterwards."""
    stores: list[Any] = []

    def make(store_class: type[Any], **options: Any) -> Any:
        settings: dict[str, Any] = {
            "table_name": table_name,
            "endpoint": endpoint,
            "region": REGION,
            "cleanup_interval_ms": 0,
            "clock": clock,
            **options,
        }
        stores.append(store_class(**settings))
        return stores[-1]

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def make_cache_store(
    make_dynamodb_store: Callable[..., Any],
) -> Callable[..., DynamoDBCacheStore[Any]]:
    """Cache stores on the test's table and clock (see ``make_dynamodb_store``)."""
    return functools.partial(make_dynamodb_store, DynamoDBCacheStore)
