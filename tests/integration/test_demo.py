"""The demo end to end: ``python -m comic_vine_dynamodb_store.demo`` in a subprocess.

Every run uses the session's DynamoDB Local (``--endpoint``) and a fresh ``--table``, so it
starts no JVM of its own; short runs (a few seconds) keep the module under a minute. The demo
checks its invariants itself (no 420, no URL fetched twice, every body right); these tests
check that it reports them truthfully: a clean run says so and exits 0, and a run with a
protection turned off (the hidden ``--disable``) breaks the invariant it guards and exits 1.
Ctrl-C (SIGINT to the process group, as a terminal sends it) stops every process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from comic_vine_dynamodb_store.demo import runner
from comic_vine_dynamodb_store.table import create_table, table_exists

REGION = "us-east-1"
DEMO = [sys.executable, "-m", "comic_vine_dynamodb_store.demo"]
RUN_TIMEOUT_S = 180.0
"""Generous: a 5 s run takes about 15 s, workers' start included, on two busy cores."""
GROUP_EXIT_S = 10.0
REQUIRED_KEYS = {
    "logical_requests",
    "cache_hits",
    "dedupe_joins",
    "upstream_calls",
    "upstream_420",
    "duplicate_upstream_fetches",
    "admitted",
    "refused",
    "p50_ms",
    "p99_ms",
    "dynamodb_requests",
    "consumed_capacity",
}
PRIORITIES = {"user", "background"}


def demo_command(endpoint: str, table: str, *flags: str) -> list[str]:
    return [*DEMO, "--endpoint", endpoint, "--table", table, *flags]


def run_demo(endpoint: str, table: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        demo_command(endpoint, table, *flags),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def parse_summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """stdout is exactly one JSON object (``json.loads`` rejects anything around it)."""
    summary = json.loads(result.stdout)
    assert isinstance(summary, dict), result.stdout
    return summary


def assert_clean_stderr(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Warning" not in result.stderr, result.stderr


def test_a_json_run_keeps_every_invariant_and_reports_every_key(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    table = make_table_name()
    result = run_demo(endpoint, table, "--seconds", "5", "--json")
    assert result.returncode == runner.EXIT_OK, result.stderr
    assert_clean_stderr(result)
    summary = parse_summary(result)
    assert summary.keys() >= REQUIRED_KEYS

    # The invariants.
    assert summary["upstream_420"] == 0
    assert summary["duplicate_upstream_fetches"] == 0
    assert summary["wrong_bodies"] == 0
    assert summary["errors"] == 0
    assert summary["ok"] is True
    assert summary["broken"] == []
    assert summary["interrupted"] is False

    # Every logical request is accounted for exactly once.
    by = summary["by_priority"]
    assert set(summary["admitted"]) == set(summary["refused"]) == set(by) == PRIORITIES
    upstream_answers = sum(by[p]["upstream"] for p in PRIORITIES)
    assert summary["logical_requests"] == (
        summary["cache_hits"]
        + summary["dedupe_joins"]
        + upstream_answers
        + sum(summary["rate_limited"].values())
    )
    assert summary["logical_requests"] == sum(by[p]["logical_requests"] for p in PRIORITIES)
    assert all(by[p]["logical_requests"] > 0 for p in PRIORITIES)

    # The stores did their jobs: hits, joins, and the API served every admitted request,
    # each URL once, within its limit (a 5 s run is shorter than the API's window).
    assert summary["cache_hits"] > 0
    assert summary["dedupe_joins"] > 0
    api = summary["api"]
    assert summary["upstream_calls"] == sum(summary["admitted"].values()) == api["served"]
    assert api["distinct_urls"] == api["served"]
    assert set(api["by_resource"]) == {"issue", "issues"}
    assert summary["run_s"] < runner.API_WINDOW_S
    assert all(n <= runner.API_LIMIT for n in api["by_resource"].values())

    # Latency and DynamoDB costs: every logical request reads the cache at least once.
    assert 0 < summary["p50_ms"] <= summary["p99_ms"]
    assert summary["dynamodb_requests"] >= summary["logical_requests"]
    assert summary["dynamodb_requests"] == sum(
        store["requests"] for store in summary["dynamodb_by_store"].values()
    )
    assert set(summary["dynamodb_by_store"]) == {"cache", "dedupe", "adaptive_rate_limit"}
    assert summary["consumed_capacity"] > 0

    # The demo made the table on a DynamoDB Local, so it deleted it.
    assert summary["dynamodb"]["table_created"] is True
    assert summary["dynamodb"]["table_deleted"] is True
    assert not table_exists(table, endpoint=endpoint, region=REGION)


def test_a_run_without_json_prints_the_summary_table_and_keeps_a_table_it_did_not_make(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    table = make_table_name()
    create_table(table, endpoint=endpoint, region=REGION)
    result = run_demo(endpoint, table, "--seconds", "2", "--workers", "2")
    assert result.returncode == runner.EXIT_OK, result.stderr
    assert_clean_stderr(result)
    for row in (
        "logical requests",
        "cache hits",
        "dedupe joins",
        "upstream calls (admitted)",
        "p99 latency (ms)",
        "DynamoDB requests per request",
        "upstream 420s",
        "URLs fetched upstream twice",
    ):
        assert row in result.stdout, result.stdout
    assert "ok     the API never answered 420" in result.stdout
    assert "BROKEN" not in result.stdout
    assert not result.stdout.lstrip().startswith("{")
    assert f"table {table} exists and verifies: reused" in result.stderr
    assert table_exists(table, endpoint=endpoint, region=REGION)


def test_without_the_limiter_the_api_answers_420_and_the_demo_fails(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    flags = ("--seconds", "5", "--json", "--disable", "limiter")
    result = run_demo(endpoint, make_table_name(), *flags)
    assert result.returncode == runner.EXIT_BROKEN, result.stderr
    summary = parse_summary(result)
    assert summary["upstream_420"] > 0
    assert "upstream_420" in summary["broken"]
    assert summary["ok"] is False
    # Nothing refused: there was no limiter; the API did the refusing.
    assert sum(summary["refused"].values()) == 0
    assert summary["upstream_calls"] == summary["api"]["served"] + summary["upstream_420"]


def test_without_the_cache_urls_reach_the_api_twice_and_the_demo_fails(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    flags = ("--seconds", "5", "--workers", "2", "--json", "--disable", "cache")
    result = run_demo(endpoint, make_table_name(), *flags)
    assert result.returncode == runner.EXIT_BROKEN, result.stderr
    summary = parse_summary(result)
    assert summary["duplicate_upstream_fetches"] > 0
    assert summary["broken"] == ["duplicate_upstream_fetches"]
    assert summary["cache_hits"] == 0
    assert summary["upstream_420"] == 0  # the limiter still holds


def _group_members(pgid: int) -> list[int]:
    """Processes still in process group ``pgid`` (Linux ``/proc``)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def test_ctrl_c_stops_every_process_reports_what_ran_and_deletes_the_table(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    table = make_table_name()
    process = subprocess.Popen(
        demo_command(endpoint, table, "--seconds", "60", "--workers", "2", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        assert process.stderr is not None
        seen = []
        for line in process.stderr:
            seen.append(line)
            if "running for" in line:
                break
        else:
            raise AssertionError(f"the demo never started running:\n{''.join(seen)}")
        time.sleep(2)
        interrupted_at = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == runner.EXIT_INTERRUPTED, stderr
    assert time.monotonic() - interrupted_at < 30
    assert "Traceback" not in stderr, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] is True
    assert summary["logical_requests"] > 0
    assert summary["run_s"] < 30
    assert summary["upstream_420"] == 0
    assert summary["dynamodb"]["table_deleted"] is True
    assert not table_exists(table, endpoint=endpoint, region=REGION)
    deadline = time.monotonic() + GROUP_EXIT_S
    while _group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_members(process.pid) == []
