"""The testcontainers provider of ``comic_vine_dynamodb_store.local``, against a real engine.

The image is ``DYNAMODB_LOCAL_IMAGE`` (``make test`` builds one locally; no registry is
reachable here); every test skips, saying why, where no engine or image is available.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import botocore.session
import pytest

from comic_vine_dynamodb_store.local import ENDPOINT_ENV, IMAGE_ENV, start_local_dynamodb
from tests.conftest import docker_unavailable_reason

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    """The Docker engine (docker SDK client), or a skip with the reason."""
    reason = docker_unavailable_reason()
    if reason is not None:
        pytest.skip(f"DynamoDB Local under testcontainers: {reason}")
    import docker

    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(autouse=True)
def no_borrowed_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENDPOINT_ENV, raising=False)


def ours(engine: Any) -> list[Any]:
    """Containers of the image under test, running or not."""
    image = os.environ[IMAGE_ENV]
    return [c for c in engine.containers.list(all=True) if image in c.image.tags]


def test_a_container_on_the_host_network_answers_and_is_removed_on_close(engine: Any) -> None:
    before = {c.id for c in ours(engine)}
    with start_local_dynamodb(use_docker=True) as db:
        assert db.kind == "testcontainers"
        url = urlsplit(db.endpoint)
        assert url.hostname in {"127.0.0.1", "localhost"}
        client: Any = botocore.session.get_session().create_client(
            "dynamodb",
            region_name="us-east-1",
            endpoint_url=db.endpoint,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        assert client.list_tables()["TableNames"] == []
        [container] = [c for c in ours(engine) if c.id not in before]
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"
        assert str(url.port) in container.attrs["Config"]["Cmd"]
    assert {c.id for c in ours(engine)} == before


def test_interpreter_exit_removes_a_container_nobody_closed(engine: Any) -> None:
    before = {c.id for c in ours(engine)}
    script = textwrap.dedent(
        """
        from comic_vine_dynamodb_store.local import start_local_dynamodb
        db = start_local_dynamodb(use_docker=True)
        print(db.kind, db.endpoint, flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TESTCONTAINERS_RYUK_DISABLED": "true"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("testcontainers http://")
    assert {c.id for c in ours(engine)} == before
