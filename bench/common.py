"""What the benches share: DynamoDB Local and a fresh table, the command line basics, timing
store calls against raw botocore calls in alternating rounds, and plain-text tables.

The benches run as scripts (``python bench/bench_cache.py``) and import this module as
``common``, from the folder each of them lives in.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import botocore.config
import botocore.session

from comic_vine_dynamodb_store.config import StoreOptions
from comic_vine_dynamodb_store.errors import LocalDynamoDBError
from comic_vine_dynamodb_store.local import LocalDynamoDB, start_local_dynamodb
from comic_vine_dynamodb_store.models.binding import TableBinding
from comic_vine_dynamodb_store.table import create_table, delete_table

REGION = "us-east-1"

Call = Callable[[], object]


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- DynamoDB Local


def use_dummy_credentials() -> None:
    """Dummy credentials unless some are set: DynamoDB Local accepts any, and these keep
    botocore off instance metadata."""
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        os.environ["AWS_ACCESS_KEY_ID"] = "local"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "local"
        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def start_dynamodb(use_docker: bool | None) -> LocalDynamoDB:
    """DynamoDB Local as the library provides it; without a preference, the jar if Docker
    cannot run its image (say, no registry to pull it from)."""
    try:
        return start_local_dynamodb(use_docker=use_docker)
    except LocalDynamoDBError as exc:
        if use_docker is not None:
            raise
        progress(f"Docker could not provide DynamoDB Local ({exc}); trying the jar")
        return start_local_dynamodb(use_docker=False)


@contextlib.contextmanager
def local_dynamodb(use_docker: bool | None) -> Iterator[LocalDynamoDB]:
    """DynamoDB Local for the block (see :func:`start_dynamodb`), closed after it."""
    db = start_dynamodb(use_docker)
    try:
        progress(f"DynamoDB Local ({db.kind}) at {db.endpoint}")
        yield db
    finally:
        db.close()


@contextlib.contextmanager
def fresh_table(prefix: str, endpoint: str) -> Iterator[str]:
    """A new table ``<prefix>-<random>`` with the stores' schema, deleted after the block."""
    table = f"{prefix}-{uuid.uuid4().hex[:12]}"
    create_table(table, region=REGION, endpoint=endpoint)
    try:
        yield table
    finally:
        delete_table(table, region=REGION, endpoint=endpoint, missing_ok=True)


def raw_client(endpoint: str, options: StoreOptions) -> Any:
    """A plain botocore DynamoDB client with the endpoint, region, timeouts and retry mode of
    a store with ``options``."""
    binding = TableBinding.from_options(options)
    return botocore.session.get_session().create_client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=endpoint,
        config=botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": options.max_retries + 1},
            connect_timeout=binding.connect_timeout_s,
            read_timeout=binding.read_timeout_s,
        ),
    )


class _SendCount(Protocol):
    requests_sent: int


@contextlib.contextmanager
def counting_sends(client: Any, cost: _SendCount) -> Iterator[None]:
    """Count the HTTP requests ``client`` sends inside the block (retries included)."""

    def on_send(**_: Any) -> None:
        cost.requests_sent += 1

    client.meta.events.register_first("before-send.dynamodb", on_send, unique_id="bench-count")
    try:
        yield
    finally:
        client.meta.events.unregister("before-send.dynamodb", unique_id="bench-count")


# --------------------------------------------------------------------------- command line


def parser_for(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first line of the bench's docstring."""
    return argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)


def add_timing_args(
    parser: argparse.ArgumentParser, *, seconds_help: str, rounds_help: str
) -> None:
    """``--seconds`` (default 10) and ``--rounds`` (default 10)."""
    parser.add_argument("--seconds", type=float, default=10.0, help=seconds_help)
    parser.add_argument("--rounds", type=int, default=10, help=rounds_help)


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """``--json`` and ``--[no-]docker``."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument(
        "--docker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run DynamoDB Local in Docker (--docker) or as the jar (--no-docker); "
        "default: Docker if it can, else the jar (DYNAMODB_ENDPOINT overrides both)",
    )


def warmup_seconds(seconds: float) -> float:
    """The warm-up before timed rounds lasting ``seconds`` in all."""
    return max(0.2, min(1.0, seconds / 10))


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True, slots=True)
class Sample:
    """One side of one round: calls per second of its own wall time, and this process's CPU
    time per call."""

    ops_s: float
    cpu_us: float


@dataclass(slots=True)
class _Clock:
    calls: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def sample(self) -> Sample:
        return Sample(ops_s=self.calls / self.wall_s, cpu_us=self.cpu_s / self.calls * 1e6)


def alternating_round(store: Call, raw: Call, seconds: float) -> tuple[Sample, Sample]:
    """Alternate one store call and one raw call for about ``seconds``, timing each call.

    Each side is charged only for its own calls, so a slow spell on the machine (other
    processes, the JVM collecting garbage) lands on both sides alike instead of on
    whichever side happened to be running.
    """
    clocks = (_Clock(), _Clock())
    deadline = time.perf_counter() + seconds
    while True:
        for call, clock in zip((store, raw), clocks, strict=True):
            cpu = time.process_time()
            wall = time.perf_counter()
            call()
            end = time.perf_counter()
            clock.cpu_s += time.process_time() - cpu
            clock.wall_s += end - wall
            clock.calls += 1
        if end >= deadline:
            return clocks[0].sample(), clocks[1].sample()


@dataclass(slots=True)
class Rounds:
    """The timed rounds of both sides, in the order they ran."""

    store: list[Sample] = field(default_factory=list)
    raw: list[Sample] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Medians:
    """Both sides' rounds summed up: median ops/s and CPU per call, and their ratios."""

    store_ops_s: float
    raw_ops_s: float
    ratio: float
    paired_ratio: float
    store_cpu_us_per_call: float
    raw_cpu_us_per_call: float
    store_rounds_ops_s: list[float]
    raw_rounds_ops_s: list[float]


def medians(rounds: Rounds) -> Medians:
    """A side's ops/s is the median of its rounds; the ratio is store/raw of those medians,
    the paired ratio the median of the per-round ratios."""
    store_ops = statistics.median(s.ops_s for s in rounds.store)
    raw_ops = statistics.median(s.ops_s for s in rounds.raw)
    return Medians(
        store_ops_s=store_ops,
        raw_ops_s=raw_ops,
        ratio=store_ops / raw_ops,
        paired_ratio=statistics.median(
            s.ops_s / r.ops_s for s, r in zip(rounds.store, rounds.raw, strict=True)
        ),
        store_cpu_us_per_call=statistics.median(s.cpu_us for s in rounds.store),
        raw_cpu_us_per_call=statistics.median(s.cpu_us for s in rounds.raw),
        store_rounds_ops_s=[round(s.ops_s, 1) for s in rounds.store],
        raw_rounds_ops_s=[round(s.ops_s, 1) for s in rounds.raw],
    )


class RawAdmission(Protocol):
    """A raw botocore admission: one call, with the failed conditions and refusals it met."""

    conflicts: int
    refusals: int

    def __call__(self) -> object: ...


@dataclass(slots=True)
class LimiterThroughput:
    """A limiter's ``acquire`` against the raw request it stands for, side by side."""

    store_ops_s: float
    raw_ops_s: float
    ratio: float
    paired_ratio: float
    store_cpu_us_per_call: float
    raw_cpu_us_per_call: float
    store_refusals: int
    raw_conflicts: int
    raw_refusals: int
    store_rounds_ops_s: list[float]
    raw_rounds_ops_s: list[float]
    met: bool


def limiter_throughput(
    acquire: Callable[[str], bool],
    make_raw: Callable[[str], RawAdmission],
    *,
    rounds: int,
    round_s: float,
    warmup_s: float,
    target_ratio: float,
) -> LimiterThroughput:
    """Alternate ``acquire`` and the raw admission on a fresh resource per round (named
    ``throughput-<round>``; round 0 is the warm-up). The store's first call creates the item
    before the round starts, so both sides time the steady state only."""
    samples = Rounds()
    refused = conflicts = raw_refused = 0
    for round_ in range(-1, rounds):  # round -1 is the warm-up
        resource = f"throughput-{round_ + 1}"
        acquire(resource)  # create the item: not the steady state
        raw = make_raw(resource)
        refusals = [0]

        def store_call(r: str = resource, refusals: list[int] = refusals) -> object:
            admitted = acquire(r)
            refusals[0] += not admitted
            return admitted

        store_sample, raw_sample = alternating_round(
            store_call, raw, warmup_s if round_ < 0 else round_s
        )
        if round_ >= 0:
            samples.store.append(store_sample)
            samples.raw.append(raw_sample)
            refused += refusals[0]
            conflicts += raw.conflicts
            raw_refused += raw.refusals
    timing = medians(samples)
    return LimiterThroughput(
        store_ops_s=timing.store_ops_s,
        raw_ops_s=timing.raw_ops_s,
        ratio=timing.ratio,
        paired_ratio=timing.paired_ratio,
        store_cpu_us_per_call=timing.store_cpu_us_per_call,
        raw_cpu_us_per_call=timing.raw_cpu_us_per_call,
        store_refusals=refused,
        raw_conflicts=conflicts,
        raw_refusals=raw_refused,
        store_rounds_ops_s=timing.store_rounds_ops_s,
        raw_rounds_ops_s=timing.raw_rounds_ops_s,
        met=timing.ratio >= target_ratio and refused == 0 and raw_refused == 0,
    )


# --------------------------------------------------------------------------- output


def table_lines(
    header: tuple[str, ...], rows: Sequence[tuple[str, ...]], *, left: int = 1
) -> list[str]:
    """A plain-text table: the first ``left`` columns aligned left, the others right."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return " | ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(header), "-+-".join("-" * w for w in widths), *(line(row) for row in rows)]
