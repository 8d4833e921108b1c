"""Shared fixtures: one real DynamoDB Local per test session, a fresh table per test.

DynamoDB Local is the ``dynamodb_local`` fixture of the project's own pytest plugin,
:mod:`comic_vine_dynamodb_store.testing` (``DYNAMODB_ENDPOINT``, else Docker, else the jar;
``--dynamodb-provider`` picks one), never a mock: the suite tests with what users test with.
Tests that use it are marked ``dynamodb`` automatically, so ``pytest -m dynamodb`` counts what
ran against it.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any

import pytest
from hypothesis import settings

from comic_vine_dynamodb_store.local import (
    ENDPOINT_ENV,
    IMAGE_ENV,
    LocalDynamoDB,
    docker_available,
    start_local_dynamodb,
)
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

_PLUGIN = "comic_vine_dynamodb_store.testing"


def _plugin_autoloads() -> bool:
    """True when pytest loads the plugin itself: its ``pytest11`` entry point is installed
    and plugin autoloading is on. Loading it a second time would be an error."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(point.value == _PLUGIN for point in entry_points(group="pytest11"))


# An installed package (``pip install -e .``) brings the plugin; a checkout run without that
# entry point, or with autoloading off, still gets it.
pytest_plugins = [] if _plugin_autoloads() else [_PLUGIN]

REGION = "us-east-1"
_DYNAMODB_FIXTURES = {
    "dynamodb_local",
    "endpoint",
    "table_name",
    "make_table_name",
    "store_table",
    "store_options",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _DYNAMODB_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.dynamodb)


@pytest.fixture(scope="session")
def endpoint(dynamodb_local: LocalDynamoDB) -> str:
    """The session's DynamoDB Local endpoint URL."""
    return dynamodb_local.endpoint


def docker_unavailable_reason() -> str | None:
    """Why DynamoDB Local cannot run under testcontainers here, or None if it can: an engine
    must answer, and the image (``DYNAMODB_LOCAL_IMAGE``) must be in it, since no registry is
    reachable (``make docker-image`` builds one)."""
    image = os.environ.get(IMAGE_ENV)
    if not image:
        return (
            f"{IMAGE_ENV} is not set: `make test` sets it to the image `make docker-image` builds"
        )
    if not docker_available():
        return "no Docker engine answers (as root with apt, `make docker-image` starts one)"
    try:
        import docker

        docker.from_env().images.get(image)
    except Exception as exc:
        return f"the Docker engine has no image {image} ({type(exc).__name__})"
    return None


@pytest.fixture(scope="session")
def docker_dynamodb_local() -> Iterator[LocalDynamoDB]:
    """A second DynamoDB Local for the session, always under testcontainers (skipped, with
    the reason, where Docker or the image is missing)."""
    reason = docker_unavailable_reason()
    if reason is not None:
        pytest.skip(f"DynamoDB Local under testcontainers: {reason}")
    saved = os.environ.pop(ENDPOINT_ENV, None)
    try:
        db = start_local_dynamodb(use_docker=True)
    finally:
        if saved is not None:
            os.environ[ENDPOINT_ENV] = saved
    with db:
        assert db.kind == "testcontainers"
        yield db


@pytest.fixture
def docker_table_name(docker_dynamodb_local: LocalDynamoDB) -> Iterator[str]:
    """A fresh table on the testcontainers DynamoDB Local, deleted after the test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    create_table(name, endpoint=docker_dynamodb_local.endpoint, region=REGION)
    yield name
    delete_table(name, endpoint=docker_dynamodb_local.endpoint, region=REGION, missing_ok=True)


DYNAMODB_TARGETS = [
    pytest.param("dynamodb", marks=pytest.mark.dynamodb),
    pytest.param("dynamodb-docker", marks=[pytest.mark.dynamodb, pytest.mark.docker]),
]
"""The DynamoDB params of a contract fixture: the session's DynamoDB Local, and the one under
testcontainers (which skips, saying why, where Docker is missing)."""


def dynamodb_target(request: pytest.FixtureRequest) -> tuple[str, str]:
    """``(table_name, endpoint)`` of a fresh table on the DynamoDB Local ``request.param``
    names (see :data:`DYNAMODB_TARGETS`)."""
    if request.param == "dynamodb-docker":
        db: LocalDynamoDB = request.getfixturevalue("docker_dynamodb_local")
        return request.getfixturevalue("docker_table_name"), db.endpoint
    return request.getfixturevalue("table_name"), request.getfixturevalue("endpoint")


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
