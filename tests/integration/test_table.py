"""Table tooling against DynamoDB Local: create, verify, the original's CLI-made table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pynamodb.connection import Connection

from comic_vine_dynamodb_store.errors import DynamoDBStoreError, TableNotFoundError
from comic_vine_dynamodb_store.table import (
    TableMismatch,
    create_table,
    delete_table,
    table_exists,
    verify_table,
)

REGION = "us-east-1"

KEY_ATTRIBUTES = [
    {"AttributeName": "PK", "AttributeType": "S"},
    {"AttributeName": "SK", "AttributeType": "S"},
]
INDEX_ATTRIBUTES = [
    {"AttributeName": "GSI1PK", "AttributeType": "S"},
    {"AttributeName": "GSI1SK", "AttributeType": "S"},
]
KEY_SCHEMA = [
    {"AttributeName": "PK", "KeyType": "HASH"},
    {"AttributeName": "SK", "KeyType": "RANGE"},
]


def gsi1(projection: str = "ALL") -> dict[str, Any]:
    return {
        "IndexName": "GSI1",
        "KeySchema": [
            {"AttributeName": "GSI1PK", "KeyType": "HASH"},
            {"AttributeName": "GSI1SK", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": projection},
    }


def raw_client(endpoint: str) -> Any:
    return Connection(region=REGION, host=endpoint).client


def create_raw(endpoint: str, name: str, *, ttl: bool = True, **spec: Any) -> None:
    """Create a table the way a user would by hand (the original README's AWS CLI calls)."""
    client = raw_client(endpoint)
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **spec)
    if ttl:
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "TTL"}
        )


def test_create_then_verify_round_trips_to_no_mismatch(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    name = make_table_name()
    assert not table_exists(name, endpoint=endpoint, region=REGION)
    assert create_table(name, endpoint=endpoint, region=REGION) is True
    assert table_exists(name, endpoint=endpoint, region=REGION)
    assert verify_table(name, endpoint=endpoint, region=REGION) == []
    description = raw_client(endpoint).describe_table(TableName=name)["Table"]
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert description["KeySchema"] == KEY_SCHEMA
    assert [i["IndexName"] for i in description["GlobalSecondaryIndexes"]] == ["GSI1"]
    assert sorted(a["AttributeName"] for a in description["AttributeDefinitions"]) == [
        "GSI1PK",
        "GSI1SK",
        "PK",
        "SK",
    ]


def test_create_refuses_an_existing_table_unless_told(endpoint: str, table_name: str) -> None:
    with pytest.raises(DynamoDBStoreError, match="already exists"):
        create_table(table_name, endpoint=endpoint, region=REGION)
    assert create_table(table_name, endpoint=endpoint, region=REGION, exist_ok=True) is False


def test_a_table_made_with_the_originals_cli_commands_verifies_clean(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    name = make_table_name()
    create_raw(
        endpoint,
        name,
        AttributeDefinitions=KEY_ATTRIBUTES + INDEX_ATTRIBUTES,
        KeySchema=KEY_SCHEMA,
        GlobalSecondaryIndexes=[gsi1()],
    )
    assert verify_table(name, endpoint=endpoint, region=REGION) == []


def test_missing_gsi_and_disabled_ttl_are_reported(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    name = make_table_name()
    create_raw(endpoint, name, ttl=False, AttributeDefinitions=KEY_ATTRIBUTES, KeySchema=KEY_SCHEMA)
    problems = verify_table(name, endpoint=endpoint, region=REGION)
    assert [p.what for p in problems] == ["global secondary index GSI1", "time to live"]
    assert all(isinstance(p, TableMismatch) for p in problems)
    assert "expected enabled on TTL" in str(problems[1])


def test_wrong_key_types_and_projection_are_reported(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    name = make_table_name()
    create_raw(
        endpoint,
        name,
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "N"},
            {"AttributeName": "SK", "AttributeType": "S"},
            *INDEX_ATTRIBUTES,
        ],
        KeySchema=KEY_SCHEMA,
        GlobalSecondaryIndexes=[gsi1("KEYS_ONLY")],
    )
    problems = verify_table(name, endpoint=endpoint, region=REGION)
    assert {(p.what, p.actual) for p in problems} == {
        ("GSI1 projection", "KEYS_ONLY"),
        ("attribute PK type", "N"),
    }


def test_a_table_without_a_sort_key_is_reported(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    name = make_table_name()
    create_raw(
        endpoint,
        name,
        AttributeDefinitions=[KEY_ATTRIBUTES[0], *INDEX_ATTRIBUTES],
        KeySchema=[KEY_SCHEMA[0]],
        GlobalSecondaryIndexes=[gsi1()],
    )
    problems = verify_table(name, endpoint=endpoint, region=REGION)
    assert [(p.what, p.actual) for p in problems] == [("table key schema", "PK HASH")]


def test_missing_tables_raise_table_not_found(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    name = make_table_name()
    with pytest.raises(TableNotFoundError, match=name):
        verify_table(name, endpoint=endpoint, region=REGION)
    with pytest.raises(TableNotFoundError):
        delete_table(name, endpoint=endpoint, region=REGION)
    assert delete_table(name, endpoint=endpoint, region=REGION, missing_ok=True) is False


def test_delete_table_removes_it(endpoint: str, table_name: str) -> None:
    assert delete_table(table_name, endpoint=endpoint, region=REGION) is True
    assert not table_exists(table_name, endpoint=endpoint, region=REGION)
