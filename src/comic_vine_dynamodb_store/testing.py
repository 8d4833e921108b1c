"""A pytest plugin for testing code that uses the stores, against a real DynamoDB Local.

Installed with the ``[testing]`` extra and loaded through the ``pytest11`` entry point, so a
project's tests need no conftest glue. Fixtures:

* ``dynamodb_local`` (session): the :class:`~comic_vine_dynamodb_store.local.LocalDynamoDB`
  in use (``.endpoint``, ``.kind``, ``.region``), started on first request only, so a run of
  unit tests that never asks for it starts neither Java nor Docker.
* ``store_table``: the name of a fresh table made with :func:`create_table`, deleted after
  the test.
* ``store_options``: keyword arguments for any DynamoDB store on that table
  (``DynamoDBCacheStore(**store_options)``), with the background cleanup thread off.

Where DynamoDB Local comes from: ``--dynamodb-provider`` (ini ``dynamodb_local_provider``),
``auto`` by default, which is the order of :func:`start_local_dynamodb`: ``DYNAMODB_ENDPOINT``,
then testcontainers when a Docker engine answers, then the jar under Java. ``env``, ``docker``
and ``jar`` insist on one source; ``docker`` and ``jar`` ignore ``DYNAMODB_ENDPOINT``, because
an explicit choice on the command line should beat a variable left in the shell.
``--dynamodb-image`` (ini ``dynamodb_local_image``) overrides ``DYNAMODB_LOCAL_IMAGE``.

Credentials: DynamoDB Local accepts any, but botocore refuses to sign without some and, with
none configured, first spends seconds asking the instance-metadata service. So for the session
the fixture sets dummy ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` only when botocore
finds no credentials locally; credentials the user has (environment, profile, SSO...) are never
replaced, whatever the endpoint, since the same session may also talk to real AWS.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, get_args

import botocore.session
import pytest

from comic_vine_dynamodb_store.errors import LocalDynamoDBError
from comic_vine_dynamodb_store.local import (
    DEFAULT_IMAGE,
    ENDPOINT_ENV,
    IMAGE_ENV,
    LocalDynamoDB,
    docker_available,
    start_local_dynamodb,
)
from comic_vine_dynamodb_store.table import create_table, delete_table

__all__ = ["dynamodb_local", "store_options", "store_table"]

Provider = Literal["auto", "env", "docker", "jar"]
PROVIDERS: tuple[Provider, ...] = get_args(Provider)

_NAME = "comic-vine-dynamodb-store"
_HEADER_PING_TIMEOUT_S = 0.5  # the header must not slow down a run that never uses Docker
_DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
# Providers that ask a network service: the ones that make a credential-less run slow.
_REMOTE_CREDENTIAL_PROVIDERS = ("iam-role", "container-role")


@dataclass
class _State:
    """What this run chose, and what the ``dynamodb_local`` fixture found, for the reports."""

    provider: Provider
    image: str | None
    started: str | None = None
    failed: str | None = None


_STATE = pytest.StashKey[_State]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(_NAME, "DynamoDB Local for tests (comic-vine-dynamodb-store)")
    group.addoption(
        "--dynamodb-provider",
        dest="dynamodb_provider",
        choices=PROVIDERS,
        default=None,
        help=(
            "where the dynamodb_local fixture gets DynamoDB Local: auto (DYNAMODB_ENDPOINT, "
            "else Docker, else the jar), env, docker or jar. Default: the ini "
            "dynamodb_local_provider, else auto."
        ),
    )
    group.addoption(
        "--dynamodb-image",
        dest="dynamodb_image",
        default=None,
        metavar="IMAGE",
        help=f"image run by the docker provider (default: ${IMAGE_ENV}, else {DEFAULT_IMAGE}).",
    )
    parser.addini(
        "dynamodb_local_provider",
        "default of --dynamodb-provider: auto, env, docker or jar",
        default="auto",
    )
    parser.addini("dynamodb_local_image", "default of --dynamodb-image", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dynamodb: uses DynamoDB Local")
    provider = (
        config.getoption("dynamodb_provider")
        or str(config.getini("dynamodb_local_provider")).strip()
    )
    if provider not in PROVIDERS:
        raise pytest.UsageError(
            f"dynamodb_local_provider = {provider!r}: expected one of {', '.join(PROVIDERS)}"
        )
    image = config.getoption("dynamodb_image") or str(config.getini("dynamodb_local_image"))
    config.stash[_STATE] = _State(provider=provider, image=image.strip() or None)


def pytest_report_header(config: pytest.Config) -> str:
    """Say which DynamoDB Local the tests will use, found without starting anything."""
    state = config.stash[_STATE]
    endpoint = _env_endpoint()
    if state.provider == "env" or (state.provider == "auto" and endpoint):
        where = f"at {endpoint} ({ENDPOINT_ENV})" if endpoint else f"but {ENDPOINT_ENV} is unset"
        plan = f"env {where}"
    elif state.provider == "docker":
        plan = f"testcontainers (image {_image(state)}), started on first use"
    elif state.provider == "auto" and docker_available(_HEADER_PING_TIMEOUT_S):
        # start_local_dynamodb runs the jar if the container cannot start (say, offline).
        plan = f"testcontainers (image {_image(state)}) else jar, started on first use"
    else:
        plan = "jar (Java), started on first use"
    return f"{_NAME}: DynamoDB Local via {plan} [--dynamodb-provider={state.provider}]"


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Name the DynamoDB Local actually used; the header could only say what would be."""
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    if state.started is not None:
        terminalreporter.write_line(f"{_NAME}: DynamoDB Local via {state.started}")
    elif state.failed is not None:
        reason = state.failed.splitlines()[0]
        terminalreporter.write_line(f"{_NAME}: DynamoDB Local did not start: {reason}")


@pytest.fixture(scope="session")
def dynamodb_local(pytestconfig: pytest.Config) -> Iterator[LocalDynamoDB]:
    """The session's DynamoDB Local, started on first use and stopped at the end."""
    state = pytestconfig.stash[_STATE]
    with pytest.MonkeyPatch.context() as env:
        if not _has_local_credentials():
            for name, value in _DUMMY_CREDENTIALS.items():
                env.setenv(name, value)
        began = time.monotonic()
        try:
            local = _start(state)
        except LocalDynamoDBError as exc:
            state.failed = str(exc)
        if state.failed is not None:  # failed outside the except: no chained traceback
            pytest.fail(
                f"DynamoDB Local ({state.provider}) could not start: {state.failed}", pytrace=False
            )
        if local.kind == "env":
            state.started = f"env at {local.endpoint} ({ENDPOINT_ENV}; started nothing)"
        else:
            took = time.monotonic() - began
            state.started = f"{local.kind} at {local.endpoint} (started in {took:.1f} s)"
        with local:
            yield local


@pytest.fixture
def store_table(dynamodb_local: LocalDynamoDB) -> Iterator[str]:
    """A fresh table with the stores' schema, unique to the test and deleted after it."""
    name = f"pytest-{uuid.uuid4().hex[:16]}"
    region, endpoint = dynamodb_local.region, dynamodb_local.endpoint
    create_table(name, region=region, endpoint=endpoint)
    yield name
    delete_table(name, region=region, endpoint=endpoint, missing_ok=True)


@pytest.fixture
def store_options(dynamodb_local: LocalDynamoDB, store_table: str) -> dict[str, Any]:
    """Keyword arguments for any DynamoDB store on ``store_table``; a new dict per test.

    ``cleanup_interval_ms=0``: no background cleanup thread outliving the test. Add or
    override options with ``{**store_options, "key_prefix": "app"}``.
    """
    return {
        "table_name": store_table,
        "endpoint": dynamodb_local.endpoint,
        "region": dynamodb_local.region,
        "cleanup_interval_ms": 0,
    }


def _start(state: _State) -> LocalDynamoDB:
    """Start (or borrow) DynamoDB Local as ``state`` asks; environment changes last the start."""
    if state.provider == "env" and not _env_endpoint():
        raise LocalDynamoDBError(
            f"the env provider needs {ENDPOINT_ENV} set to the URL of a running DynamoDB "
            "(such as http://localhost:8000); or choose auto, docker or jar "
            "(--dynamodb-provider, ini dynamodb_local_provider)"
        )
    with pytest.MonkeyPatch.context() as env:
        if state.image:
            env.setenv(IMAGE_ENV, state.image)
        if state.provider in ("docker", "jar"):
            env.delenv(ENDPOINT_ENV, raising=False)
        use_docker = {"docker": True, "jar": False}.get(state.provider)
        return start_local_dynamodb(use_docker=use_docker)


def _env_endpoint() -> str:
    return os.environ.get(ENDPOINT_ENV, "").strip()


def _image(state: _State) -> str:
    return state.image or os.environ.get(IMAGE_ENV, "").strip() or DEFAULT_IMAGE


def _has_local_credentials() -> bool:
    """True if botocore finds credentials without asking a network service.

    A misconfigured source (say ``AWS_PROFILE`` naming no profile) counts as credentials: the
    user chose it, and botocore's own error explains it better than dummy keys would hide it.
    """
    resolver: Any = botocore.session.Session().get_component("credential_provider")
    for name in _REMOTE_CREDENTIAL_PROVIDERS:
        resolver.remove(name)
    try:
        return resolver.load_credentials() is not None
    except Exception:
        return True
