"""Creating and checking the table. Stores never create it themselves; these do, on request.

``create_table`` makes exactly the schema of the TypeScript original's README (``PK``/``SK``
strings, ``GSI1`` on ``GSI1PK``/``GSI1SK`` with projection ALL, on-demand billing, TTL on
``TTL``). ``verify_table`` lists how an existing table differs from it; a table made with the
original's AWS CLI commands or CloudFormation template has no mismatches. Billing mode is not
checked: provisioned capacity is a legitimate choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException, TableDoesNotExist

from comic_vine_dynamodb_store.config import DEFAULT_TABLE_NAME, StoreOptions
from comic_vine_dynamodb_store.errors import DynamoDBStoreError, TableNotFoundError
from comic_vine_dynamodb_store.models.base import StoreItem
from comic_vine_dynamodb_store.models.binding import TableBinding

__all__ = ["TableMismatch", "create_table", "delete_table", "table_exists", "verify_table"]

_INDEX_NAME = "GSI1"
_TTL_ATTRIBUTE = "TTL"
_EXPECTED_KEYS = {"PK": "HASH", "SK": "RANGE"}
_EXPECTED_INDEX_KEYS = {"GSI1PK": "HASH", "GSI1SK": "RANGE"}


@dataclass(frozen=True, slots=True)
class TableMismatch:
    """One way a table differs from the schema the stores need."""

    what: str
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.what}: expected {self.expected}, found {self.actual}"


def _binding(table_name: str, region: str | None, endpoint: str | None) -> TableBinding:
    return TableBinding.from_options(
        StoreOptions(table_name=table_name, region=region, endpoint=endpoint)
    )


def _connection(binding: TableBinding) -> Connection:
    return Connection(region=binding.region, host=binding.endpoint)


def table_exists(
    table_name: str = DEFAULT_TABLE_NAME,
    *,
    region: str | None = None,
    endpoint: str | None = None,
) -> bool:
    """True when the table exists (in any state)."""
    binding = _binding(table_name, region, endpoint)
    return bool(binding.model(StoreItem).exists())


def create_table(
    table_name: str = DEFAULT_TABLE_NAME,
    *,
    region: str | None = None,
    endpoint: str | None = None,
    exist_ok: bool = False,
    wait: bool = True,
) -> bool:
    """Create the table with the stores' schema and enable TTL on ``TTL``.

    Returns True when it created the table, False when it existed and ``exist_ok`` is set
    (the existing table is not checked: use :func:`verify_table`).
    """
    binding = _binding(table_name, region, endpoint)
    model = binding.model(StoreItem)
    if model.exists():
        if exist_ok:
            return False
        raise DynamoDBStoreError(
            f"table {table_name!r} already exists", operation="CreateTable", table=table_name
        )
    try:
        # wait=True also makes PynamoDB enable TTL once the table is ACTIVE.
        model.create_table(wait=wait, billing_mode="PAY_PER_REQUEST")
        if not wait:
            model.update_ttl(ignore_update_ttl_errors=False)
    except PynamoDBException as exc:
        raise DynamoDBStoreError(
            f"could not create table {table_name!r}: {exc.msg}",
            operation="CreateTable",
            table=table_name,
        ) from exc
    return True


def delete_table(
    table_name: str = DEFAULT_TABLE_NAME,
    *,
    region: str | None = None,
    endpoint: str | None = None,
    missing_ok: bool = False,
) -> bool:
    """Delete the table; returns False if it was absent and ``missing_ok`` is set."""
    binding = _binding(table_name, region, endpoint)
    model = binding.model(StoreItem)
    if not model.exists():
        if missing_ok:
            return False
        raise TableNotFoundError(
            f"table {table_name!r} does not exist", operation="DeleteTable", table=table_name
        )
    model.delete_table()
    return True


def _key_mismatches(
    where: str, schema: list[dict[str, str]], expected: dict[str, str]
) -> list[TableMismatch]:
    actual = {key["AttributeName"]: key["KeyType"] for key in schema}
    if actual == expected:
        return []
    return [
        TableMismatch(
            f"{where} key schema",
            ", ".join(f"{name} {kind}" for name, kind in expected.items()),
            ", ".join(f"{name} {kind}" for name, kind in actual.items()) or "none",
        )
    ]


def verify_table(
    table_name: str = DEFAULT_TABLE_NAME,
    *,
    region: str | None = None,
    endpoint: str | None = None,
) -> list[TableMismatch]:
    """List every way the table differs from the stores' schema; empty means usable.

    Raises :class:`TableNotFoundError` when the table does not exist.
    """
    binding = _binding(table_name, region, endpoint)
    connection = _connection(binding)
    try:
        description: dict[str, Any] = connection.describe_table(table_name)
        client: Any = connection.client
        ttl = client.describe_time_to_live(TableName=table_name)
    except TableDoesNotExist as exc:
        raise TableNotFoundError(
            f"table {table_name!r} does not exist", operation="DescribeTable", table=table_name
        ) from exc
    types = {
        attribute["AttributeName"]: attribute["AttributeType"]
        for attribute in description.get("AttributeDefinitions", [])
    }
    problems = _key_mismatches("table", description.get("KeySchema", []), _EXPECTED_KEYS)
    indexes = {index["IndexName"]: index for index in description.get("GlobalSecondaryIndexes", [])}
    index = indexes.get(_INDEX_NAME)
    if index is None:
        problems.append(
            TableMismatch("global secondary index GSI1", "present", ", ".join(indexes) or "none")
        )
    else:
        problems += _key_mismatches("GSI1", index.get("KeySchema", []), _EXPECTED_INDEX_KEYS)
        projection = index.get("Projection", {}).get("ProjectionType", "none")
        if projection != "ALL":
            problems.append(TableMismatch("GSI1 projection", "ALL", projection))
    expected_names = list(_EXPECTED_KEYS) + (list(_EXPECTED_INDEX_KEYS) if index else [])
    problems += [
        TableMismatch(f"attribute {name} type", "S (string)", types[name])
        for name in expected_names
        if name in types and types[name] != "S"
    ]
    ttl_description = ttl.get("TimeToLiveDescription", {})
    ttl_status = ttl_description.get("TimeToLiveStatus", "DISABLED")
    ttl_attribute = ttl_description.get("AttributeName")
    if ttl_status not in ("ENABLED", "ENABLING"):
        problems.append(TableMismatch("time to live", f"enabled on {_TTL_ATTRIBUTE}", ttl_status))
    elif ttl_attribute != _TTL_ATTRIBUTE:
        problems.append(TableMismatch("time to live attribute", _TTL_ATTRIBUTE, str(ttl_attribute)))
    return problems
