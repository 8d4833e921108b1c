"""One multi-process race on DynamoDB Local started under testcontainers, besides the jar the
rest of the suite uses: the limiter's exactness does not depend on how DynamoDB Local runs.
Skipped, saying why, where no Docker engine or image is available."""

from __future__ import annotations

import uuid

from comic_vine_dynamodb_store.local import LocalDynamoDB
from comic_vine_dynamodb_store.table import create_table, delete_table
from tests.concurrency.test_rate_limit_processes import two_resources_each_get_their_own_limit

REGION = "us-east-1"


def test_processes_race_on_dynamodb_local_under_testcontainers(
    docker_dynamodb_local: LocalDynamoDB,
) -> None:
    assert docker_dynamodb_local.kind == "testcontainers"
    endpoint = docker_dynamodb_local.endpoint
    table = f"test-{uuid.uuid4().hex[:12]}"
    create_table(table, endpoint=endpoint, region=REGION)
    try:
        two_resources_each_get_their_own_limit(endpoint, table)
    finally:
        delete_table(table, endpoint=endpoint, region=REGION, missing_ok=True)
