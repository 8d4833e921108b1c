"""The ``comic-vine-store`` console script, run as an operator runs it: the installed script in
a subprocess, against DynamoDB Local, on fresh tables.

The IAM policy is checked against the wire twice: every store operation runs on clients whose
``before-send`` records the DynamoDB action and the table or index it targets, and the CLI's own
commands run through a recording proxy in front of DynamoDB Local. The policy must allow all
of it and nothing else.
"""

from __future__ import annotations

import base64
import fnmatch
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import botocore.session
import pytest
from pynamodb.connection import Connection

from comic_vine_dynamodb_store import (
    DynamoDBAdaptiveRateLimitStore,
    DynamoDBCacheStore,
    DynamoDBDedupeStore,
    DynamoDBRateLimitStore,
)
from comic_vine_dynamodb_store.clock import system_clock_ms
from comic_vine_dynamodb_store.keys import Entity, partition_key
from comic_vine_dynamodb_store.local import ENDPOINT_ENV
from comic_vine_dynamodb_store.table import create_table, verify_table
from tests.support import FakeClock

REGION = "us-east-1"
ACCOUNT = "123456789012"
CLI = Path(sys.executable).parent / "comic-vine-store"
REPO = Path(__file__).resolve().parents[2]
HOURS_AGO_MS = 3 * 3_600_000
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# The original README's CloudFormation template (its Resources block), byte for byte.
ORIGINAL_TEMPLATE = """\
Resources:
  ComicVineStoreTable:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: comic-vine-store
      AttributeDefinitions:
        - AttributeName: PK
          AttributeType: S
        - AttributeName: SK
          AttributeType: S
        - AttributeName: GSI1PK
          AttributeType: S
        - AttributeName: GSI1SK
          AttributeType: S
      KeySchema:
        - AttributeName: PK
          KeyType: HASH
        - AttributeName: SK
          KeyType: RANGE
      GlobalSecondaryIndexes:
        - IndexName: GSI1
          KeySchema:
            - AttributeName: GSI1PK
              KeyType: HASH
            - AttributeName: GSI1SK
              KeyType: RANGE
          Projection:
            ProjectionType: ALL
      BillingMode: PAY_PER_REQUEST
      TimeToLiveSpecification:
        AttributeName: TTL
        Enabled: true
"""


# --------------------------------------------------------------------------- running the CLI


def cli_env(**changes: str | None) -> dict[str, str]:
    """The test environment (dummy credentials), with no endpoint or region from outside."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in (ENDPOINT_ENV, "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_REGION")
    }
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        env=env if env is not None else cli_env(),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def on(endpoint: str, table: str) -> list[str]:
    return ["--endpoint", endpoint, "--region", REGION, "--table", table]


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def raw_client(endpoint: str) -> Any:
    return Connection(region=REGION, host=endpoint).client


# --------------------------------------------------------------------------- store contents


def store_options(endpoint: str, table: str, **extra: Any) -> dict[str, Any]:
    return {
        "table_name": table,
        "endpoint": endpoint,
        "region": REGION,
        "cleanup_interval_ms": 0,
        **extra,
    }


def past_clock() -> int:
    return system_clock_ms() - HOURS_AGO_MS


def unreaped() -> botocore.session.Session:
    """A session whose PutItems carry no ``TTL``: DynamoDB Local's reaper deletes expired
    items within seconds, DynamoDB's up to days later; these stay, as DynamoDB's would."""
    session = botocore.session.Session()

    def drop_ttl(**event: Any) -> None:
        event["params"].get("Item", {}).pop("TTL", None)

    session.register("before-parameter-build.dynamodb.PutItem", drop_ttl)
    return session


def seed(endpoint: str, table: str, *, key_prefix: str = "") -> None:
    """Live and expired items in every store: an expired item was written hours ago, in one
    PutItem each (so none of them has a TTL for DynamoDB Local to act on)."""
    for clock in (system_clock_ms, past_clock):
        live = clock is system_clock_ms
        options = store_options(endpoint, table, key_prefix=key_prefix, clock=clock)
        if not live:
            options["client"] = unreaped()
        with DynamoDBCacheStore[Any](**options) as cache:
            for key in ("issue:1", "issue:2") if live else ("issue:old",):
                cache.set(key, {"key": key}, ttl_seconds=3600 if live else 60)
        with DynamoDBDedupeStore[Any](**options) as dedupe:
            if live:
                dedupe.register_or_join("pending")
                done = dedupe.register_or_join("done")
                assert dedupe.complete("done", {"ok": True}, job_id=done.job_id)
                broken = dedupe.register_or_join("broken")
                assert dedupe.fail("broken", "boom", job_id=broken.job_id)
            else:
                assert dedupe.register_or_join("stale").is_owner  # its lease ran out long ago
        with DynamoDBRateLimitStore(**options) as limits:
            for _ in range(3 if live else 1):
                assert limits.acquire("issues" if live else "volumes")
        with DynamoDBAdaptiveRateLimitStore(**options) as adaptive:
            for _ in range(2 if live else 1):
                assert adaptive.acquire("issues" if live else "volumes", priority="user")


SEEDED_STATS = {
    "cache": {"total_items": 2, "expired_items": 1},
    "dedupe": {
        "total_jobs": 3,
        "pending_jobs": 1,
        "completed_jobs": 1,
        "failed_jobs": 1,
        "expired_jobs": 1,
    },
    "rate_limit": {"total_resources": 2, "active_resources": 1, "total_requests": 3},
    "adaptive": {"total_resources": 2, "active_resources": 1, "total_requests": 2},
}


def stats_json(endpoint: str, table: str, *extra: str) -> dict[str, Any]:
    result = run_cli("stats", "--json", *on(endpoint, table), *extra)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def assert_stats(actual: dict[str, Any], expected: dict[str, dict[str, int]]) -> None:
    for kind, values in expected.items():
        for name, value in values.items():
            assert actual[kind][name] == value, (kind, name, actual[kind])


@pytest.fixture
def seeded_table(endpoint: str, make_table_name: Callable[[], str]) -> str:
    name = make_table_name()
    create_table(name, endpoint=endpoint, region=REGION)
    seed(endpoint, name)
    return name


# --------------------------------------------------------------------------- basics


def test_the_console_script_lists_its_commands_and_version() -> None:
    assert CLI.is_file()
    result = run_cli("--help")
    assert result.returncode == 0
    for command in (
        "create-table",
        "verify-table",
        "stats",
        "cleanup",
        "clear",
        "local",
        "demo",
        "bench",
        "print",
    ):
        assert command in result.stdout
    from comic_vine_dynamodb_store import __version__

    version = run_cli("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"comic-vine-store {__version__}"


def test_unknown_arguments_are_a_usage_error() -> None:
    result = run_cli("stats", "--no-such-flag")
    assert result.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--endpoint", "localhost:8000"], "endpoint"),
        (["--table", "x"], "table_name"),
        (["--key-prefix", "no spaces"], "key_prefix"),
    ],
)
def test_bad_options_are_one_line_usage_errors(flags: list[str], field: str) -> None:
    result = run_cli("stats", "--region", REGION, *flags)
    assert result.returncode == 2
    assert_one_line_error(result, "invalid option", field)


# --------------------------------------------------------------------------- the table


def test_create_table_creates_then_accepts_the_existing_table(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    name = make_table_name()
    created = run_cli("create-table", *on(endpoint, name))
    assert created.returncode == 0, created.stderr
    assert f"created table {name}" in created.stdout
    assert verify_table(name, endpoint=endpoint, region=REGION) == []
    description = raw_client(endpoint).describe_table(TableName=name)["Table"]
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"

    again = run_cli("create-table", *on(endpoint, name))
    assert again.returncode == 0, again.stderr
    assert f"table {name} already exists" in again.stdout
    assert "matches the schema" in again.stdout

    verified = run_cli("verify-table", *on(endpoint, name))
    assert verified.returncode == 0
    assert f"table {name} at {endpoint} matches" in verified.stdout
    assert verified.stderr == ""


def test_verify_table_lists_each_mismatch_on_its_own_line(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    name = make_table_name()
    # A table of another design: a numeric "id" key, no sort key, no GSI1, no TTL.
    raw_client(endpoint).create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    mismatches = [str(m) for m in verify_table(name, endpoint=endpoint, region=REGION)]
    assert len(mismatches) == 3  # key schema, GSI1, TTL

    for command in ("verify-table", "create-table"):
        result = run_cli(command, *on(endpoint, name))
        assert result.returncode == 1, result.stdout
        lines = result.stdout.splitlines()
        assert "does not match the schema" in lines[0]
        assert "(3 mismatches)" in lines[0]
        assert [line.strip() for line in lines[1:]] == mismatches
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["verify-table"],
        ["stats"],
        ["cleanup"],
        ["clear", "--yes"],
        ["clear", "--store", "all", "-y"],
    ],
)
def test_a_missing_table_is_one_line_error(
    endpoint: str, make_table_name: Callable[[], str], command: list[str]
) -> None:
    name = make_table_name()
    result = run_cli(*command, *on(endpoint, name))
    assert result.returncode == 1
    line = assert_one_line_error(result, f"table '{name}' does not exist", endpoint)
    assert f"create-table --table {name}" in line


@pytest.mark.parametrize(
    "command", [["create-table"], ["verify-table"], ["stats"], ["cleanup"], ["clear", "--yes"]]
)
def test_an_unreachable_endpoint_is_one_line_error(command: list[str]) -> None:
    nowhere = f"http://127.0.0.1:{closed_port()}"
    result = run_cli(*command, *on(nowhere, "comic-vine-store"), timeout=60)
    assert result.returncode == 1
    assert_one_line_error(result, f"could not reach DynamoDB at {nowhere}")


@pytest.mark.parametrize("command", [["create-table"], ["verify-table"], ["stats"]])
def test_missing_credentials_are_one_line_error(
    endpoint: str, tmp_path: Path, command: list[str]
) -> None:
    env = cli_env(
        AWS_ACCESS_KEY_ID=None,
        AWS_SECRET_ACCESS_KEY=None,
        AWS_SESSION_TOKEN=None,
        AWS_PROFILE=None,
        AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=None,
        AWS_CONTAINER_CREDENTIALS_FULL_URI=None,
        AWS_WEB_IDENTITY_TOKEN_FILE=None,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
    )
    result = run_cli(*command, *on(endpoint, "comic-vine-store"), env=env)
    assert result.returncode == 1
    assert_one_line_error(result, "no usable AWS credentials", "AWS_ACCESS_KEY_ID")


def test_region_and_endpoint_come_from_flags_then_the_environment(
    endpoint: str, make_table_name: Callable[[], str], tmp_path: Path
) -> None:
    """The region shows in the hint for a missing table; DynamoDB Local shares one database
    across regions, so the hint is where it can be seen."""
    missing = make_table_name()
    config = tmp_path / "config"
    config.write_text("[profile far]\nregion = ap-south-1\n", encoding="utf-8")
    cases = [
        (cli_env(AWS_REGION="eu-west-1", AWS_DEFAULT_REGION="us-west-2"), [], "eu-west-1"),
        (cli_env(AWS_DEFAULT_REGION="us-west-2"), [], "us-west-2"),
        (cli_env(AWS_DEFAULT_REGION="us-west-2"), ["--region", "eu-north-1"], "eu-north-1"),
        (
            cli_env(AWS_DEFAULT_REGION=None, AWS_CONFIG_FILE=str(config)),
            ["--profile", "far"],
            "ap-south-1",
        ),
        (cli_env(AWS_DEFAULT_REGION=None, AWS_CONFIG_FILE=str(config)), [], "us-east-1"),
    ]
    for env, flags, region in cases:
        result = run_cli(
            "verify-table", "--endpoint", endpoint, "--table", missing, *flags, env=env
        )
        assert_one_line_error(result, "does not exist", f"--region {region} --endpoint {endpoint}")

    present = make_table_name()
    create_table(present, endpoint=endpoint, region=REGION)
    from_env = run_cli(
        "verify-table", "--table", present, env=cli_env(AWS_ENDPOINT_URL_DYNAMODB=endpoint)
    )
    assert from_env.returncode == 0, from_env.stderr
    assert f"at {endpoint} matches" in from_env.stdout


# --------------------------------------------------------------------------- stats, cleanup, clear


def test_stats_counts_every_store(endpoint: str, seeded_table: str) -> None:
    document = stats_json(endpoint, seeded_table)
    assert document["table"] == seeded_table
    assert_stats(document, SEEDED_STATS)
    assert document["cache"]["estimated_size_bytes"] > 0
    with DynamoDBCacheStore[Any](**store_options(endpoint, seeded_table)) as cache:
        assert document["cache"]["estimated_size_bytes"] == cache.get_stats().estimated_size_bytes

    table = run_cli("stats", *on(endpoint, seeded_table))
    assert table.returncode == 0
    rows = {
        tuple(cell.strip() for cell in line.split("│")[1:-1])
        for line in table.stdout.splitlines()
        if line.count("│") >= 3
    }
    assert ("cache", "live items", "2") in rows
    assert ("", "expired items", "1") in rows
    assert ("dedupe", "live jobs", "3") in rows
    assert ("rate-limit", "resources", "2") in rows
    assert ("", "requests in window", "3") in rows
    assert ("adaptive", "resources", "2") in rows


def test_stats_keep_to_the_chosen_stores_and_key_prefix(endpoint: str, seeded_table: str) -> None:
    only_cache = stats_json(endpoint, seeded_table, "--store", "cache")
    assert set(only_cache) == {"table", "key_prefix", "cache"}
    assert only_cache["cache"]["total_items"] == 2
    seed(endpoint, seeded_table, key_prefix="other-app")
    other = stats_json(endpoint, seeded_table, "--key-prefix", "other-app")
    assert other["key_prefix"] == "other-app"
    assert_stats(other, SEEDED_STATS)
    assert_stats(stats_json(endpoint, seeded_table), SEEDED_STATS)  # unprefixed: unchanged


def test_cleanup_removes_only_expired_items(endpoint: str, seeded_table: str) -> None:
    result = run_cli("cleanup", *on(endpoint, seeded_table))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "cache: 1 expired item(s) removed",
        "dedupe: 1 expired item(s) removed",
        "rate-limit: 1 expired item(s) removed",
        "adaptive: 1 expired item(s) removed",
    ]
    after = stats_json(endpoint, seeded_table)
    assert_stats(
        after,
        {
            "cache": {"total_items": 2, "expired_items": 0},
            "dedupe": {"total_jobs": 3, "expired_jobs": 0},
            "rate_limit": {"total_resources": 1, "total_requests": 3},
            "adaptive": {"total_resources": 1, "total_requests": 2},
        },
    )
    again = run_cli("cleanup", "--json", "--store", "cache", *on(endpoint, seeded_table))
    assert json.loads(again.stdout) == {"cache": 0}


def test_clear_asks_first_and_removes_only_the_chosen_store(
    endpoint: str, seeded_table: str
) -> None:
    for answer in ("n\n", ""):  # no, and no answer at all (end of input)
        declined = run_cli("clear", *on(endpoint, seeded_table), stdin=answer)
        assert declined.returncode == 1
        assert "Remove every cache item from table" in declined.stderr
        assert declined.stderr.strip().endswith("nothing removed")
        assert declined.stdout == ""
        assert_stats(stats_json(endpoint, seeded_table), SEEDED_STATS)

    agreed = run_cli("clear", *on(endpoint, seeded_table), stdin="y\n")
    assert agreed.returncode == 0, agreed.stderr
    assert agreed.stdout.splitlines() == ["cache: 3 item(s) removed"]
    after = stats_json(endpoint, seeded_table)
    assert after["cache"] == {"total_items": 0, "expired_items": 0, "estimated_size_bytes": 0}
    assert_stats(after, {k: v for k, v in SEEDED_STATS.items() if k != "cache"})


def test_clear_all_empties_every_store_of_its_key_prefix_only(
    endpoint: str, seeded_table: str
) -> None:
    seed(endpoint, seeded_table, key_prefix="other-app")
    with DynamoDBCacheStore[Any](**store_options(endpoint, seeded_table)) as cache:
        cache.set("big", base64.b64encode(os.urandom(900_000)).decode(), 3600)  # chunked
    big = partition_key(Entity.CACHE, "", "big")

    def items_under_big() -> int:
        found = raw_client(endpoint).query(
            TableName=seeded_table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": big}},
            ConsistentRead=True,
        )
        return int(found["Count"])

    assert items_under_big() > 2  # a head and its chunks
    result = run_cli("clear", "--store", "all", "--yes", "--json", *on(endpoint, seeded_table))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"cache": 4, "dedupe": 4, "rate_limit": 2, "adaptive": 2}
    emptied = stats_json(endpoint, seeded_table)
    for kind in SEEDED_STATS:
        assert set(emptied[kind].values()) == {0}, kind
    assert items_under_big() == 0  # the chunks went with their value
    assert_stats(stats_json(endpoint, seeded_table, "--key-prefix", "other-app"), SEEDED_STATS)


def test_the_progress_bar_is_drawn_on_a_terminal_only(endpoint: str, seeded_table: str) -> None:
    """stderr on a pseudo-terminal gets the bar; redirected, it gets nothing but errors."""
    master, terminal = os.openpty()
    command = [str(CLI), "clear", "--store", "all", "--yes", *on(endpoint, seeded_table)]
    drawn: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not chunk:
                return
            drawn.append(chunk)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    try:
        process = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            env=cli_env(),
            timeout=120,
            check=False,
        )
    finally:
        os.close(terminal)
        reader.join(timeout=10)
        os.close(master)
    assert process.returncode == 0
    screen = ANSI.sub("", b"".join(drawn).decode("utf-8", "replace"))
    assert "clearing cache" in screen
    assert "49/49" in screen  # the cache's clear, then 16 GSI1 shards for each other store
    assert process.stdout.splitlines()[0] == "cache: 3 item(s) removed"

    redirected = run_cli("clear", "--store", "all", "--yes", *on(endpoint, seeded_table))
    assert redirected.returncode == 0
    assert redirected.stderr == ""


# --------------------------------------------------------------------------- print


def test_print_cloudformation_is_the_original_template(tmp_path: Path) -> None:
    result = run_cli("print", "cloudformation")
    assert result.returncode == 0
    text = result.stdout
    assert text.startswith('AWSTemplateFormatVersion: "2010-09-09"\n')
    start = text.index("Resources:\n")
    assert text[start:].startswith(ORIGINAL_TEMPLATE)
    assert "Outputs:\n" in text[start + len(ORIGINAL_TEMPLATE) :]

    named = run_cli("print", "cloudformation", "--table", "my.table-1")
    assert "      TableName: my.table-1\n" in named.stdout
    assert_one_line_error(run_cli("print", "cloudformation", "--table", "no"), "table_name")


def test_the_cloudformation_properties_make_a_table_that_verifies(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    name = make_table_name()
    result = run_cli("print", "cloudformation", "--format", "json", "--table", name)
    assert result.returncode == 0
    template = json.loads(result.stdout)
    (resource,) = template["Resources"].values()
    assert resource["Type"] == "AWS::DynamoDB::Table"
    properties = dict(resource["Properties"])
    ttl = properties.pop("TimeToLiveSpecification")
    client = raw_client(endpoint)
    client.create_table(**properties)  # the same fields CloudFormation passes on
    client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    verified = run_cli("verify-table", *on(endpoint, name))
    assert verified.returncode == 0, verified.stdout
    assert "matches the schema" in verified.stdout


def test_print_iam_policy_fills_in_table_region_and_account() -> None:
    result = run_cli(
        "print", "iam-policy", "--table", "shop", "--region", "eu-west-1", "--account", ACCOUNT
    )
    assert result.returncode == 0
    policy = json.loads(result.stdout)
    assert policy["Version"] == "2012-10-17"
    resources = [statement["Resource"] for statement in policy["Statement"]]
    assert resources == [
        f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/shop",
        f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/shop/index/*",
    ]
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert "dynamodb:Scan" not in actions
    assert "dynamodb:DescribeTable" not in actions  # no store describes the table

    placeholders = json.loads(run_cli("print", "iam-policy").stdout)
    assert placeholders["Statement"][0]["Resource"] == (
        "arn:aws:dynamodb:REGION:ACCOUNT_ID:table/comic-vine-store"
    )
    admin = json.loads(run_cli("print", "iam-policy", "--admin").stdout)
    assert len(admin["Statement"]) == 3
    assert "dynamodb:CreateTable" in admin["Statement"][2]["Action"]


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [(["--account", "12345"], "12-digit"), (["--region", "Mars"], "region name")],
)
def test_print_iam_policy_refuses_malformed_ids(flags: list[str], fragment: str) -> None:
    result = run_cli("print", "iam-policy", *flags)
    assert result.returncode == 2
    assert_one_line_error(result, fragment)
    assert result.stdout == ""


# --------------------------------------------------------------------------- the policy on the wire

Sent = tuple[str, str]
"""A request as IAM sees it: the action and the ARN of the table or index it targets."""


def sent(target: str, body: bytes) -> set[Sent]:
    """What one DynamoDB request asks IAM for (BatchWriteItem names its tables in its body)."""
    action = "dynamodb:" + target.rsplit(".", 1)[-1]
    payload: dict[str, Any] = json.loads(body or b"{}")
    tables = [payload["TableName"]] if "TableName" in payload else list(payload["RequestItems"])
    index = f"/index/{payload['IndexName']}" if payload.get("IndexName") else ""
    return {(action, f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{t}{index}") for t in tables}


def policy_of(table: str, *flags: str) -> set[Sent]:
    result = run_cli(
        "print", "iam-policy", "--table", table, "--region", REGION, "--account", ACCOUNT, *flags
    )
    assert result.returncode == 0
    policy = json.loads(result.stdout)
    grants: set[Sent] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            grants |= {(action, resource) for action in statement["Action"]}
    return grants


def denied_by(grants: set[Sent], requests: set[Sent]) -> set[Sent]:
    """The requests no grant allows (IAM matches resources with ``*`` wildcards)."""
    return {
        (action, arn)
        for action, arn in requests
        if not any(a == action and fnmatch.fnmatchcase(arn, r) for a, r in grants)
    }


def assert_policy_is_exactly(grants: set[Sent], requests: set[Sent]) -> None:
    """Every request is granted, and every grant is used by some request."""
    denied = denied_by(grants, requests)
    unused = {
        (action, resource)
        for action, resource in grants
        if not any(a == action and fnmatch.fnmatchcase(arn, resource) for a, arn in requests)
    }
    assert denied == set(), "requests the policy would deny"
    assert unused == set(), "grants nothing uses"


def test_the_policy_is_exactly_what_the_stores_send(endpoint: str, table_name: str) -> None:
    requests: set[Sent] = set()

    def record(**event: Any) -> None:
        request = event["request"]
        target = request.headers["X-Amz-Target"]
        target = target.decode() if isinstance(target, bytes) else target
        requests.update(sent(target, request.body))

    session = botocore.session.Session()
    session.register("before-send.dynamodb", record)
    clock = FakeClock()
    options = store_options(endpoint, table_name, client=session, clock=clock)
    exercise_cache(options, clock)
    exercise_dedupe(options, clock)
    exercise_rate_limit(options, clock)
    exercise_adaptive(options, clock)
    assert ("dynamodb:Scan", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table_name}") not in (
        requests
    )
    assert_policy_is_exactly(policy_of(table_name), requests)


def exercise_cache(options: dict[str, Any], clock: FakeClock) -> None:
    """Every public operation of each store, with items that expire so cleanup deletes."""
    with DynamoDBCacheStore[Any](**options) as cache:
        cache.set("small", {"a": 1}, ttl_seconds=60)
        chunked = base64.b64encode(os.urandom(700_000)).decode()
        cache.set("big", chunked, ttl_seconds=600)
        assert cache.get("big") == chunked
        assert cache.get("small") == {"a": 1}
        cache.delete("small")
        cache.delete("big")
        cache.set("soon", 1, ttl_seconds=1)
        cache.set("later", 2, ttl_seconds=600)
        clock.advance(2_000)
        assert cache.get_stats().expired_items == 1
        assert cache.cleanup() == 1
        cache.clear()
        assert cache.get("later") is None
        assert cache.health_check().healthy


def exercise_dedupe(options: dict[str, Any], clock: FakeClock) -> None:
    with DynamoDBDedupeStore[Any](**options, default_ttl_seconds=1, max_wait_time_ms=0) as dedupe:
        owner = dedupe.register_or_join("job")
        assert dedupe.is_in_progress("job")
        assert dedupe.complete("job", {"done": True}, job_id=owner.job_id)
        assert dedupe.wait_for("job") == {"done": True}
        dedupe.register("broken")
        assert dedupe.fail("broken", RuntimeError("boom"))
        assert dedupe.run("run", lambda: 7) == 7
        assert dedupe.get_stats().completed_jobs == 2
        clock.advance(2_000)
        assert dedupe.cleanup() == 3
        assert dedupe.health_check().healthy


def exercise_rate_limit(options: dict[str, Any], clock: FakeClock) -> None:
    with DynamoDBRateLimitStore(**options, default_config={"limit": 2, "window_ms": 1_000}) as rl:
        assert rl.acquire("issues")
        rl.record("issues")
        assert not rl.can_proceed("issues")
        assert rl.get_status("issues").remaining == 0
        assert rl.get_wait_time("issues") > 0
        rl.reset("issues")
        assert rl.acquire("issues")
        assert rl.get_stats().total_requests == 1
        clock.advance(5_000)
        assert rl.cleanup() == 1
        assert rl.health_check().healthy


def exercise_adaptive(options: dict[str, Any], clock: FakeClock) -> None:
    with DynamoDBAdaptiveRateLimitStore(
        **options, default_config={"limit": 10, "window_ms": 1_000}
    ) as adaptive:
        assert adaptive.acquire("issues", priority="user")
        assert adaptive.acquire("issues")
        adaptive.record("issues", priority="user")
        assert adaptive.can_proceed("issues", priority="user")
        assert adaptive.get_status("issues").adaptive is not None
        assert adaptive.get_wait_time("issues", priority="user") == 0
        adaptive.reset("issues")
        assert adaptive.acquire("volumes", priority="user")
        assert adaptive.get_stats().total_resources == 1
        clock.advance(48 * 3_600_000)
        assert adaptive.cleanup() == 1
        assert adaptive.health_check().healthy


class RecordingProxy(ThreadingHTTPServer):
    """DynamoDB Local behind a loopback proxy that notes what each request asks IAM for."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        assert parts.hostname is not None
        assert parts.port is not None
        self.upstream = (parts.hostname, parts.port)
        self.requests: list[Sent] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Forward)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take(self) -> set[Sent]:
        with self.lock:
            taken = set(self.requests)
            self.requests.clear()
        return taken


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects
    disable_nagle_algorithm = True  # headers and body go in two writes: no delayed-ACK stall
    _HOP: ClassVar[set[str]] = {"host", "connection", "content-length", "transfer-encoding"}

    def do_POST(self) -> None:
        proxy = self.server
        assert isinstance(proxy, RecordingProxy)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with proxy.lock:
            proxy.requests.extend(sent(self.headers.get("X-Amz-Target", ""), body))
        upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in self._HOP}
            upstream.request("POST", self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            answer = [(k, v) for k, v in response.getheaders() if k.lower() not in self._HOP]
        finally:
            upstream.close()
        self.send_response_only(response.status)
        for name, value in answer:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def proxy(endpoint: str) -> Iterator[RecordingProxy]:
    server = RecordingProxy(endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_commands_send_only_what_the_policy_allows(
    proxy: RecordingProxy, endpoint: str, make_table_name: Callable[[], str]
) -> None:
    name = make_table_name()
    through_proxy = on(proxy.url, name)

    for command in (["create-table"], ["create-table"], ["verify-table"]):
        assert run_cli(*command, *through_proxy).returncode == 0
    table_admin = proxy.take()
    admin_only = policy_of(name, "--admin") - policy_of(name)
    assert_policy_is_exactly(admin_only, table_admin)

    seed(endpoint, name)
    store_work: set[Sent] = set()
    for command in (
        ["stats"],
        ["cleanup"],
        ["clear", "--store", "all", "--yes"],
        ["stats", "--store", "cache"],
    ):
        result = run_cli(*command, *through_proxy)
        assert result.returncode == 0, result.stderr
        store_work |= proxy.take()
    assert {action for action, _ in store_work} == {
        "dynamodb:Query",  # GSI1, for stats, cleanup and clear
        "dynamodb:DeleteItem",  # cleanup
        "dynamodb:BatchWriteItem",  # clear
    }
    assert all(
        arn.endswith("/index/GSI1") for action, arn in store_work if action.endswith("Query")
    )
    # The policy without --admin grants all of it (its other grants serve the stores: see above).
    assert denied_by(policy_of(name), store_work) == set()


# --------------------------------------------------------------------------- local


@pytest.mark.parametrize(
    ("sig", "create"), [(signal.SIGTERM, False), (signal.SIGINT, True)], ids=["sigterm", "sigint"]
)
@pytest.mark.dynamodb
def test_local_prints_its_endpoint_and_stops_on_a_signal(
    tmp_path: Path, sig: signal.Signals, create: bool
) -> None:
    flags = ["--create-table", "--table", "demo-table"] if create else []
    stderr = tmp_path / "stderr"
    with (
        stderr.open("w") as err,
        subprocess.Popen(
            [str(CLI), "local", "--no-docker", "--region", REGION, *flags],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=cli_env(),
        ) as process,
    ):
        try:
            assert process.stdout is not None
            endpoint = process.stdout.readline().strip()
            assert endpoint.startswith("http://127.0.0.1:"), stderr.read_text()
            tables = raw_client(endpoint).list_tables()["TableNames"]
            assert tables == (["demo-table"] if create else [])
            process.send_signal(sig)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    port = urllib.parse.urlsplit(endpoint).port
    assert port is not None
    assert refuses_connections(port)
    log = stderr.read_text()
    assert f"DynamoDB Local (jar) at {endpoint}" in log
    assert log.strip().endswith("DynamoDB Local stopped")
    assert "Traceback" not in log


# --------------------------------------------------------------------------- bench


def bench_names(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line.split("\t")[0] for line in result.stdout.splitlines()]


def test_bench_finds_the_repository_scripts_from_anywhere(tmp_path: Path) -> None:
    expected = ["cache", "dedupe", "rate-limit", "adaptive", "client", "observability"]
    if (REPO / "bench" / "run_all.py").is_file():
        expected.insert(0, "all")
    assert bench_names(run_cli("bench", "--list", cwd=REPO)) == expected
    assert bench_names(run_cli("bench", "--list", cwd=REPO / "src")) == expected
    from_elsewhere = run_cli("bench", "--list", cwd=tmp_path)
    assert bench_names(from_elsewhere) == expected  # through the checkout of the package
    paths = [Path(line.split("\t")[1]) for line in from_elsewhere.stdout.splitlines()]
    assert {path.parent for path in paths} == {REPO / "bench"}


def test_bench_without_scripts_says_so_and_exits_2(tmp_path: Path) -> None:
    result = run_cli("bench", "--dir", str(tmp_path))
    assert result.returncode == 2
    assert_one_line_error(result, "no bench_*.py scripts", str(tmp_path))
    unknown = run_cli("bench", "--only", "nope", cwd=REPO)
    assert unknown.returncode == 2
    assert_one_line_error(unknown, "no such benchmark: nope")


def test_bench_passes_arguments_and_endpoint_and_stops_at_a_failure(tmp_path: Path) -> None:
    (tmp_path / "bench_echo.py").write_text(
        "import json, os, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'endpoint': os.environ.get("
        f"{ENDPOINT_ENV!r}), 'cwd': os.getcwd()}}))\n",
        encoding="utf-8",
    )
    (tmp_path / "bench_fail.py").write_text("raise SystemExit(3)\n", encoding="utf-8")
    (tmp_path / "bench_zzz.py").write_text("print('never reached')\n", encoding="utf-8")
    flags = ["bench", "--dir", str(tmp_path), "--endpoint", "http://127.0.0.1:9"]

    echoed = run_cli(*flags, "--only", "echo", "--json", "--seconds", "2")
    assert echoed.returncode == 0, echoed.stderr
    assert json.loads(echoed.stdout) == {
        "argv": ["--json", "--seconds", "2"],
        "endpoint": "http://127.0.0.1:9",
        "cwd": str(tmp_path.parent),
    }
    assert "== bench_echo.py" in echoed.stderr

    every = run_cli(*flags, "--", "--calls", "1")
    assert every.returncode == 3
    assert json.loads(every.stdout.splitlines()[0])["argv"] == ["--calls", "1"]
    assert "never reached" not in every.stdout
    assert every.stderr.strip().splitlines()[-1] == "error: bench_fail.py exited with status 3"


def test_bench_prefers_the_run_all_script_as_make_bench_does(tmp_path: Path) -> None:
    (tmp_path / "run_all.py").write_text("import sys\nprint('all', *sys.argv[1:])\n")
    (tmp_path / "bench_one.py").write_text("print('one')\n")
    assert bench_names(run_cli("bench", "--dir", str(tmp_path), "--list")) == ["all", "one"]
    every = run_cli("bench", "--dir", str(tmp_path), "--quick")
    assert every.returncode == 0, every.stderr
    assert every.stdout == "all --quick\n"
    one = run_cli("bench", "--dir", str(tmp_path), "--only", "one")
    assert one.stdout == "one\n"


def test_bench_runs_a_real_benchmark_on_the_given_endpoint(endpoint: str) -> None:
    result = run_cli(
        "bench", "--only", "dedupe", "--endpoint", endpoint, "--calls", "5", "--json", cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dynamodb_local"] == "env"  # used ours: started nothing
    assert report["calls_per_operation"] == 5
    assert report["target_met"] is True


# --------------------------------------------------------------------------- demo


def test_demo_takes_the_runners_arguments_and_exit_status(endpoint: str) -> None:
    helped = run_cli("demo", "--help")
    assert helped.returncode == 0
    assert helped.stdout.startswith("usage: comic-vine-store demo")
    assert "--workers" in helped.stdout

    refused = run_cli("demo", "--workers", "1")
    assert refused.returncode == 2  # the runner's "cannot run"
    assert "--workers must be at least 2" in refused.stderr

    ran = run_cli("demo", "--workers", "2", "--seconds", "1", "--endpoint", endpoint, "--json")
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert summary["ok"] is True
    assert summary["upstream_420"] == 0
