"""The table's CloudFormation template and the least-privilege IAM policy, as printable text.

Both are written from what the code does, so that deploying them gives the stores exactly what
they use. The template is :func:`~comic_vine_dynamodb_store.table.create_table`'s schema (the
TypeScript original's template, unchanged): ``verify_table`` finds no mismatch in a table made
from it. The policy lists the DynamoDB actions the stores send, by resource:

======================  ==============================================================
``GetItem``             cache ``get``; dedupe ``wait_for``/``is_in_progress``; rate-limit
                        and adaptive ``can_proceed``/``get_status``/``get_wait_time``
                        and refreshing a full window; every store's ``health_check``
``PutItem``             cache ``set``; dedupe ``register_or_join``; a resource's first window
``UpdateItem``          dedupe ``complete``/``fail``; rate-limit and adaptive ``acquire``/
                        ``record``
``DeleteItem``          cache ``delete``; ``reset``; ``cleanup`` (one conditional delete each)
``BatchWriteItem``      writing and removing a chunked cache value's chunks; ``clear``
                        (cache, and ``comic-vine-store clear`` for every store)
``Query`` (table)       reading a chunked cache value's chunks
``Query`` (GSI1)        ``get_stats``, ``cleanup``, ``clear``
======================  ==============================================================

Nothing scans, reads in batches or runs transactions, and no store describes the table, so
``Scan``, ``BatchGetItem``, ``Transact*`` and ``DescribeTable`` are left out. Creating and
checking the table (``comic-vine-store create-table`` / ``verify-table``) takes four more
actions, granted apart (``admin=True``) because applications never need them.
``tests/integration/test_cli.py`` records the actions on the wire against DynamoDB Local and
compares them with this policy in both directions.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "ACCOUNT_PLACEHOLDER",
    "INDEX_ACTIONS",
    "REGION_PLACEHOLDER",
    "TABLE_ACTIONS",
    "TABLE_ADMIN_ACTIONS",
    "cloudformation_template",
    "iam_policy",
    "render_json",
    "render_yaml",
]

TABLE_ACTIONS = (
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
)
"""What the stores send to the table itself."""

INDEX_ACTIONS = ("dynamodb:Query",)
"""What the stores send to GSI1 (stats, cleanup, clear)."""

TABLE_ADMIN_ACTIONS = (
    "dynamodb:CreateTable",
    "dynamodb:DescribeTable",
    "dynamodb:DescribeTimeToLive",
    "dynamodb:UpdateTimeToLive",
)
"""What ``create-table`` (CreateTable, DescribeTable until active, UpdateTimeToLive) and
``verify-table`` (DescribeTable, DescribeTimeToLive) send."""

REGION_PLACEHOLDER = "REGION"
ACCOUNT_PLACEHOLDER = "ACCOUNT_ID"

_LOGICAL_ID = "ComicVineStoreTable"


def cloudformation_template(table_name: str) -> dict[str, Any]:
    """An ``AWS::DynamoDB::Table`` with the stores' schema, and its name and ARN as outputs."""
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "comic-vine-dynamodb-store table: cache, dedupe and rate limits",
        "Resources": {
            _LOGICAL_ID: {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "TableName": table_name,
                    "AttributeDefinitions": [
                        {"AttributeName": name, "AttributeType": "S"}
                        for name in ("PK", "SK", "GSI1PK", "GSI1SK")
                    ],
                    "KeySchema": [
                        {"AttributeName": "PK", "KeyType": "HASH"},
                        {"AttributeName": "SK", "KeyType": "RANGE"},
                    ],
                    "GlobalSecondaryIndexes": [
                        {
                            "IndexName": "GSI1",
                            "KeySchema": [
                                {"AttributeName": "GSI1PK", "KeyType": "HASH"},
                                {"AttributeName": "GSI1SK", "KeyType": "RANGE"},
                            ],
                            "Projection": {"ProjectionType": "ALL"},
                        }
                    ],
                    "BillingMode": "PAY_PER_REQUEST",
                    "TimeToLiveSpecification": {"AttributeName": "TTL", "Enabled": True},
                },
            }
        },
        "Outputs": {
            "TableName": {"Value": {"Ref": _LOGICAL_ID}},
            "TableArn": {"Value": {"Fn::GetAtt": [_LOGICAL_ID, "Arn"]}},
        },
    }


def iam_policy(
    table_name: str,
    *,
    region: str = REGION_PLACEHOLDER,
    account: str = ACCOUNT_PLACEHOLDER,
    partition: str = "aws",
    admin: bool = False,
) -> dict[str, Any]:
    """The least-privilege policy for the stores on ``table_name`` (and, with ``admin``, for
    creating and verifying it)."""
    table_arn = f"arn:{partition}:dynamodb:{region}:{account}:table/{table_name}"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ComicVineStoreItems",
            "Effect": "Allow",
            "Action": list(TABLE_ACTIONS),
            "Resource": table_arn,
        },
        {
            "Sid": "ComicVineStoreIndex",
            "Effect": "Allow",
            "Action": list(INDEX_ACTIONS),
            "Resource": f"{table_arn}/index/*",
        },
    ]
    if admin:
        statements.append(
            {
                "Sid": "ComicVineStoreTableAdmin",
                "Effect": "Allow",
                "Action": list(TABLE_ADMIN_ACTIONS),
                "Resource": table_arn,
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def render_json(document: dict[str, Any]) -> str:
    """``document`` as indented JSON with a final newline."""
    return json.dumps(document, indent=2) + "\n"


# Scalars YAML reads back as the same string: no leading indicator, no ": " or " #", no
# word YAML 1.1 turns into a bool or null, nothing that looks like a number or a date.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]*")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS and not text.endswith(":"):
        return text
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def _yaml_lines(value: object, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if isinstance(inner, dict | list) and inner:
                lines.append(f"{pad}{_scalar(key)}:")
                lines += _yaml_lines(inner, indent + 2)
            else:
                lines.append(f"{pad}{_scalar(key)}: {_scalar(inner)}")
    elif isinstance(value, list):
        for inner in value:
            nested = _yaml_lines(inner, indent + 2)
            if isinstance(inner, dict | list) and inner:
                # The first line of the item goes after the dash, the rest stay aligned with it.
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines += nested[1:]
            else:
                lines.append(f"{pad}- {_scalar(inner)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")
    return lines


def render_yaml(document: dict[str, Any]) -> str:
    """``document`` as block-style YAML, laid out as the original README's template."""
    return "\n".join(_yaml_lines(document, 0)) + "\n"
