"""The fault matrix: every store against every way DynamoDB (or the way to it) misbehaves.

Each cell makes a store with short retries and a short operation deadline, injects one fault
while the store's main call runs, and records what the caller met (a typed error, or a
value), how many requests the store's client sent, how long the call took to surface, and
what still holds afterwards (read back through a second, healthy store on the same table):
nothing lost, nothing counted twice beyond the documented bound.

Faults DynamoDB Local never produces (throttling, 5xx, timeouts, bad credentials, partial
batches) are answered on botocore's ``before-send`` event, so botocore's real retry path runs;
faults on the wire (a reset connection, a server that never answers, an answer lost after the
write landed) come from :class:`~tests.faults.proxy.FaultProxy`, a loopback proxy in front of
DynamoDB Local. Nothing here mocks DynamoDB.

The matrix is published as ``docs/fault-matrix.json`` (rendered on the Resilience page). Each
cell compares its row with that file, except ``surfaced_ms``, which is only checked against
the bound (``timeout_ms`` plus one second of slack). With ``FAULT_MATRIX_WRITE=1`` the file is
written instead, once every cell has passed.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from comic_vine_dynamodb_store import (
    DynamoDBAdaptiveRateLimitStore,
    DynamoDBCacheStore,
    DynamoDBDedupeStore,
    DynamoDBRateLimitStore,
)
from comic_vine_dynamodb_store.errors import DynamoDBStoreError, StoreUnavailableError
from comic_vine_dynamodb_store.models import CacheChunk
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.resilience.breaker import BreakerState
from comic_vine_dynamodb_store.stores.contracts import Registration
from tests.faults.conftest import Injector, error_response, json_response, server_error, throttle
from tests.faults.proxy import FaultProxy, Mode
from tests.faults.test_cache_faults import big_text

REGION = "us-east-1"
MATRIX_PATH = Path(__file__).resolve().parents[2] / "docs" / "fault-matrix.json"
WRITE = os.environ.get("FAULT_MATRIX_WRITE") == "1"
REGENERATE = "FAULT_MATRIX_WRITE=1 .venv/bin/pytest tests/faults/test_matrix.py (make fault-matrix)"

TIMEOUT_MS = 1500
MAX_RETRIES = 2
RETRY_DELAY_MS = 5
SLACK_MS = 1000
FAILURE_THRESHOLD = 1  # one failure opens the breaker: whether a fault counts shows at once
SETTINGS: dict[str, Any] = {
    "max_retries": MAX_RETRIES,
    "retry_delay_ms": RETRY_DELAY_MS,
    "circuit_breaker": {"timeout_ms": TIMEOUT_MS, "failure_threshold": FAILURE_THRESHOLD},
}
LIMIT = 10
RATE_CONFIG = {"limit": LIMIT, "window_ms": 60_000}

Row = dict[str, Any]
Make = Callable[..., Any]


# --------------------------------------------------------------------------- the stores


class Subject:
    """One store under test: how to make it, its faulted call, and what must hold after."""

    name: ClassVar[str]
    store_class: ClassVar[type[Any]]
    operation: ClassVar[str]
    request: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}

    def prepare(self, store: Any) -> None:
        """What the store does, healthy, before the fault."""

    def call(self, store: Any) -> Any:
        raise NotImplementedError

    def describe(self, result: Any) -> str:
        return f"returned {result!r}"

    def unchanged(self, observer: Any) -> str:
        """Assert the failed call changed nothing; say what holds."""
        raise NotImplementedError

    def landed(self, observer: Any, result: Any) -> str:
        """Assert what holds after a call whose first write landed and whose answer was lost."""
        raise NotImplementedError

    def exercise(self, store: Any) -> None:
        """Every call of the store that talks to DynamoDB, healthy."""
        raise NotImplementedError


class Cache(Subject):
    name = "cache"
    store_class = DynamoDBCacheStore
    operation = "set"
    request = "PutItem"

    def prepare(self, store: Any) -> None:
        store.set("k", "old", 60)

    def call(self, store: Any) -> Any:
        return store.set("k", "new", 60)

    def unchanged(self, observer: Any) -> str:
        assert observer.get("k") == "old"
        return "nothing written: `k` still reads its old value"

    def landed(self, observer: Any, result: Any) -> str:
        assert observer.get("k") == "new"
        return "the value is readable: `get` returns the new value"

    def exercise(self, store: Any) -> None:
        store.set("k", "v", 60)
        store.get("k")
        store.delete("k")
        value = big_text(1_000_000)  # chunked: BatchWriteItem for the chunks, then the head
        store.set("big", value, 60)
        assert store.get("big") == value
        store.get_stats()
        store.cleanup()
        store.clear()


class Dedupe(Subject):
    name = "dedupe"
    store_class = DynamoDBDedupeStore
    operation = "register_or_join"
    request = "PutItem"

    def call(self, store: Any) -> Any:
        return store.register_or_join("job")

    def describe(self, result: Any) -> str:
        assert isinstance(result, Registration)
        return f"is_owner={result.is_owner}"

    def unchanged(self, observer: Any) -> str:
        assert not observer.is_in_progress("job")
        assert observer.register_or_join("job").is_owner
        return "no job written: the next caller owns the key"

    def landed(self, observer: Any, result: Any) -> str:
        assert result.is_owner
        joined = observer.register_or_join("job")
        assert (joined.is_owner, joined.job_id) == (False, result.job_id)
        return "still the owner: the job in the table is its own, a second caller joins it"

    def exercise(self, store: Any) -> None:
        job = store.register_or_join("a")
        assert store.complete("a", {"v": 1}, job_id=job.job_id)
        assert store.wait_for("a") == {"v": 1}
        store.is_in_progress("a")
        other = store.register_or_join("b")
        assert store.fail("b", "boom", job_id=other.job_id)
        store.get_stats()
        store.cleanup()


class RateLimit(Subject):
    name = "rate_limit"
    store_class: ClassVar[type[Any]] = DynamoDBRateLimitStore
    operation = "acquire"
    request = "UpdateItem"
    options: ClassVar[dict[str, Any]] = {"default_config": RATE_CONFIG}
    args: ClassVar[tuple[str, ...]] = ("issues",)

    def prepare(self, store: Any) -> None:
        assert store.acquire(*self.args)  # the window exists: the next acquire is an update

    def call(self, store: Any) -> Any:
        return store.acquire(*self.args)

    def counted(self, observer: Any) -> int:
        remaining: int = observer.get_status("issues").remaining
        return LIMIT - remaining

    def unchanged(self, observer: Any) -> str:
        counted = self.counted(observer)
        assert counted == 1
        return "nothing counted: the window holds 1, the one admission returned True"

    def landed(self, observer: Any, result: Any) -> str:
        admitted = 1 + (result is True)
        counted = self.counted(observer)
        # At most one extra count per lost answer (one here), never fewer than admitted.
        assert admitted <= counted <= admitted + 1
        over = counted - admitted
        return (
            f"counted {counted} for {admitted} admissions returned True: "
            f"{over} over, within the bound of one per lost answer"
        )

    def exercise(self, store: Any) -> None:
        store.acquire(*self.args)
        store.record(*self.args)
        store.can_proceed(*self.args)
        store.get_status("issues")
        store.get_wait_time(*self.args)
        store.get_stats()
        store.cleanup()
        store.reset("issues")


class Adaptive(RateLimit):
    name = "adaptive_rate_limit"
    store_class: ClassVar[type[Any]] = DynamoDBAdaptiveRateLimitStore
    args = ("issues", "user")


SUBJECTS: tuple[Subject, ...] = (Cache(), Dedupe(), RateLimit(), Adaptive())


# --------------------------------------------------------------------------- the faults


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


THROTTLING_REASONS = [
    {
        "reason": "TableWriteProvisionedThroughputExceeded",
        "resource": "arn:aws:dynamodb:us-east-1:123456789012:table/comic-vine",
    }
]


def provisioned_throughput_exceeded(request: Any) -> AWSResponse:
    """DynamoDB's answer on a provisioned table past its capacity, with the reasons it now
    lists in the body."""
    body = {
        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded.",
        "ThrottlingReasons": THROTTLING_REASONS,
    }
    headers: Any = {
        "x-amzn-RequestId": "injected-ProvisionedThroughputExceededException",
        "Content-Type": "application/x-amz-json-1.0",
    }
    return AWSResponse(request.url, 400, headers, _Body(json.dumps(body).encode()))


def service_unavailable(request: Any) -> AWSResponse:
    return error_response(request.url, 503, "ServiceUnavailable", "Service unavailable")


def read_timeout(request: Any) -> None:
    raise ReadTimeoutError(endpoint_url=request.url)


def unrecognized_client(request: Any) -> AWSResponse:
    return error_response(
        request.url,
        400,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )


def invalid_signature(request: Any) -> AWSResponse:
    return error_response(
        request.url,
        400,
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided.",
    )


@dataclass(frozen=True)
class Fault:
    """One column of the matrix: what is injected, and what the caller must meet.

    ``kind`` says how it is injected: ``inject`` (every request answered by ``respond`` on
    ``before-send``), ``proxy`` (every request meets the proxy's ``mode``), ``commit_then_drop``
    (the next request only), ``missing_table``, ``partial_batch`` or ``transactions``.
    ``outcome`` is the error class the call raises (None: it returns), ``sends`` how many
    requests its client sends, ``cause`` and ``code`` what the error's ``__cause__`` is.
    """

    key: str
    label: str
    how: str
    kind: str
    outcome: str | None = None
    sends: int | None = None
    respond: Callable[[Any], AWSResponse | None] | None = None
    mode: Mode | None = None
    cause: type[BaseException] | None = None
    code: str | None = None
    unavailable: bool = True
    """Whether the failure says DynamoDB is unwell (opens the breaker, may fall back)."""

    def public(self) -> dict[str, str]:
        return {"fault": self.key, "label": self.label, "how": self.how}


RETRIED = MAX_RETRIES + 1
FAULTS: tuple[Fault, ...] = (
    Fault(
        "throttling",
        "Throttling",
        "every request answered 400 `ThrottlingException`",
        "inject",
        "ThrottlingError",
        RETRIED,
        respond=throttle,
        cause=ClientError,
        code="ThrottlingException",
    ),
    Fault(
        "provisioned_throughput_exceeded",
        "Provisioned throughput exceeded",
        "every request answered 400 `ProvisionedThroughputExceededException` with a "
        "`ThrottlingReasons` list",
        "inject",
        "ThrottlingError",
        RETRIED,
        respond=provisioned_throughput_exceeded,
        cause=ClientError,
        code="ProvisionedThroughputExceededException",
    ),
    Fault(
        "internal_server_error",
        "500",
        "every request answered 500 `InternalServerError`",
        "inject",
        "StoreUnavailableError",
        RETRIED,
        respond=server_error,
        cause=ClientError,
        code="InternalServerError",
    ),
    Fault(
        "service_unavailable",
        "503",
        "every request answered 503 `ServiceUnavailable`",
        "inject",
        "StoreUnavailableError",
        RETRIED,
        respond=service_unavailable,
        cause=ClientError,
        code="ServiceUnavailable",
    ),
    Fault(
        "read_timeout",
        "Read timeout",
        "every request fails with botocore's `ReadTimeoutError`",
        "inject",
        "OperationTimeoutError",
        RETRIED,
        respond=read_timeout,
        cause=ReadTimeoutError,
    ),
    Fault(
        "connection_reset",
        "Connection reset",
        "the proxy reads each request, then resets the connection (RST)",
        "proxy",
        "StoreUnavailableError",
        RETRIED,
        mode="reset",
        cause=ConnectionClosedError,
    ),
    Fault(
        "black_hole",
        "Black hole",
        "the proxy reads each request and never answers",
        "proxy",
        "OperationTimeoutError",
        1,
        mode="black_hole",
        cause=ReadTimeoutError,
    ),
    Fault(
        "commit_then_drop",
        "Answer lost after commit",
        "the proxy forwards the first request, DynamoDB applies it, and the proxy drops the "
        "connection instead of relaying the answer; later requests pass",
        "commit_then_drop",
        None,
        2,
        mode="commit_then_drop",
    ),
    Fault(
        "transaction_conflict",
        "TransactionConflict",
        "not injected: the stores never use DynamoDB transactions",
        "transactions",
    ),
    Fault(
        "partial_batch",
        "Partial BatchWriteItem",
        "the first two `BatchWriteItem` answers of `clear()` return half the batch in "
        "`UnprocessedItems` (the other half is written)",
        "partial_batch",
    ),
    Fault(
        "missing_table",
        "Missing table",
        "the store's table does not exist (a real `ResourceNotFoundException`)",
        "missing_table",
        "TableNotFoundError",
        1,
        cause=ClientError,
        code="ResourceNotFoundException",
        unavailable=False,
    ),
    Fault(
        "unrecognized_client",
        "Bad credentials (unknown key)",
        "every request answered 400 `UnrecognizedClientException`",
        "inject",
        "AccessDeniedError",
        1,
        respond=unrecognized_client,
        cause=ClientError,
        code="UnrecognizedClientException",
        unavailable=False,
    ),
    Fault(
        "invalid_signature",
        "Bad credentials (wrong secret)",
        "every request answered 400 `InvalidSignatureException`",
        "inject",
        "AccessDeniedError",
        1,
        respond=invalid_signature,
        cause=ClientError,
        code="InvalidSignatureException",
        unavailable=False,
    ),
)
FAULTS_BY_KEY = {f.key: f for f in FAULTS}
SUBJECTS_BY_NAME = {s.name: s for s in SUBJECTS}
CELLS = [(s.name, f.key) for s in SUBJECTS for f in FAULTS]


# --------------------------------------------------------------------------- the published file


def published_head() -> dict[str, Any]:
    """Everything in the file but the rows: the settings, the stores, the faults."""
    return {
        "settings": {
            "timeout_ms": TIMEOUT_MS,
            "max_retries": MAX_RETRIES,
            "retry_delay_ms": RETRY_DELAY_MS,
            "failure_threshold": FAILURE_THRESHOLD,
            "slack_ms": SLACK_MS,
        },
        "stores": [{"store": s.name, "class": s.store_class.__name__} for s in SUBJECTS],
        "faults": [f.public() for f in FAULTS],
    }


def _without_time(row: Row) -> Row:
    return {k: v for k, v in row.items() if k != "surfaced_ms"}


@dataclass
class Matrix:
    """The rows the cells record; compared with the published file as they come in."""

    committed: dict[str, Any] | None
    rows: dict[tuple[str, str], Row] = field(default_factory=dict)

    def committed_row(self, store: str, fault: str) -> Row:
        if self.committed is None:
            pytest.fail(f"{MATRIX_PATH} is missing: run {REGENERATE}")
        for row in self.committed.get("rows", []):
            if (row.get("store"), row.get("fault")) == (store, fault):
                return dict(row)
        pytest.fail(f"{MATRIX_PATH} has no row for {store} x {fault}: run {REGENERATE}")

    def record(self, row: Row) -> None:
        surfaced = row["surfaced_ms"]
        if surfaced is not None:
            assert surfaced <= TIMEOUT_MS + SLACK_MS, (
                f"{row['store']} {row['operation']} took {surfaced:.0f} ms under "
                f"{row['fault']}, past its timeout_ms of {TIMEOUT_MS} (+{SLACK_MS} ms slack)"
            )
            row["surfaced_ms"] = int(round(surfaced, -1))
        self.rows[(row["store"], row["fault"])] = row
        if not WRITE:
            assert _without_time(row) == _without_time(
                self.committed_row(row["store"], row["fault"])
            ), f"the cell differs from {MATRIX_PATH}; if the change is intended, run {REGENERATE}"

    def write(self) -> None:
        missing = [cell for cell in CELLS if cell not in self.rows]
        if missing:
            pytest.fail(
                f"not writing {MATRIX_PATH}: {len(missing)} cells did not pass or did not run, "
                f"first {missing[0]}"
            )
        document = {**published_head(), "rows": [self.rows[cell] for cell in CELLS]}
        MATRIX_PATH.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def matrix() -> Iterator[Matrix]:
    committed: dict[str, Any] | None = None
    if MATRIX_PATH.exists():
        committed = json.loads(MATRIX_PATH.read_text(encoding="utf-8"))
    collected = Matrix(committed)
    yield collected
    if WRITE:
        collected.write()


@pytest.fixture(scope="module")
def raw_client(endpoint: str) -> Iterator[Any]:
    """A plain botocore client on DynamoDB Local, outside every store (and every injector)."""
    client = botocore.session.Session().create_client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    yield client
    client.close()


# --------------------------------------------------------------------------- running a cell


@dataclass
class Env:
    make_dynamodb_store: Make
    inject: Callable[[Any], Injector]
    endpoint: str
    make_table_name: Callable[[], str]
    raw_client: Any

    def store(self, subject: Subject, **options: Any) -> Any:
        return self.make_dynamodb_store(
            subject.store_class, **{**SETTINGS, **subject.options, **options}
        )

    def observer(self, subject: Subject) -> Any:
        """A healthy store on the same table, to read back what holds."""
        return self.make_dynamodb_store(subject.store_class, **subject.options)


def _breaker(store: Any, fault: Fault) -> str:
    status = store.get_circuit_breaker_status()
    if fault.unavailable:
        assert status.state is BreakerState.OPEN  # FAILURE_THRESHOLD is 1
        return "breaker open"
    assert (status.state, status.failure_count) == (BreakerState.CLOSED, 0)
    return "breaker closed, no failure counted"


@contextmanager
def _fallbacks(store: Any) -> Iterator[list[signals.FallbackEvent]]:
    seen: list[signals.FallbackEvent] = []

    def receiver(_sender: Any, event: signals.FallbackEvent) -> None:
        seen.append(event)

    with signals.store_fallback.connected_to(receiver, sender=store):
        yield seen


def _timed(call: Callable[[], Any]) -> tuple[Any, BaseException | None, float]:
    started = time.perf_counter()
    try:
        result = call()
    except DynamoDBStoreError as error:
        return None, error, (time.perf_counter() - started) * 1000
    return result, None, (time.perf_counter() - started) * 1000


def _check_error(fault: Fault, error: BaseException | None, sent: list[str]) -> str:
    assert error is not None, f"expected {fault.outcome}, the call returned"
    assert type(error).__name__ == fault.outcome, f"{type(error).__name__}: {error}"
    assert len(sent) == fault.sends, sent
    assert isinstance(error, StoreUnavailableError) is fault.unavailable
    assert fault.cause is not None
    cause = error.__cause__
    assert isinstance(cause, fault.cause), repr(cause)
    if fault.code is not None:
        assert isinstance(cause, ClientError)
        assert cause.response["Error"]["Code"] == fault.code
    return type(error).__name__


def _row(
    subject: Subject,
    fault: Fault,
    *,
    outcome: str,
    sends: int | None,
    surfaced_ms: float | None,
    invariant: str,
    operation: str | None = None,
) -> Row:
    return {
        "store": subject.name,
        "fault": fault.key,
        "operation": operation or subject.operation,
        "outcome": outcome,
        "sends": sends,
        "surfaced_ms": surfaced_ms,
        "invariant": invariant,
    }


def run_injected(subject: Subject, fault: Fault, env: Env) -> Row:
    # Configuration errors run with on_unavailable="open": a fallback must not hide them.
    mode = "raise" if fault.unavailable else "open"
    store = env.store(subject, on_unavailable=mode)
    subject.prepare(store)
    injector = env.inject(store)
    injector.default = fault.respond
    with _fallbacks(store) as fallbacks:
        _, error, elapsed = _timed(lambda: subject.call(store))
    assert fallbacks == []
    outcome = _check_error(fault, error, injector.sent)
    assert set(injector.sent) == {subject.request}
    if fault.key == "provisioned_throughput_exceeded":
        # The reasons DynamoDB gave stay readable on the original error.
        assert isinstance(error, DynamoDBStoreError)
        cause = error.__cause__
        assert isinstance(cause, ClientError)
        response: dict[str, Any] = dict(cause.response)
        assert response["ThrottlingReasons"] == THROTTLING_REASONS
    injector.default = None
    held = subject.unchanged(env.observer(subject))
    retried = "retried" if fault.sends == RETRIED else "not retried"
    invariant = f"{held}; {retried}; {_breaker(store, fault)}"
    if not fault.unavailable:
        invariant += "; raised under on_unavailable='open'"
    return _row(
        subject,
        fault,
        outcome=outcome,
        sends=len(injector.sent),
        surfaced_ms=elapsed,
        invariant=invariant,
    )


def run_proxied(subject: Subject, fault: Fault, env: Env) -> Row:
    assert fault.mode is not None
    with FaultProxy(env.endpoint) as proxy:
        store = env.store(subject, endpoint=proxy.endpoint)
        subject.prepare(store)
        injector = env.inject(store)
        once = fault.kind == "commit_then_drop"
        proxy.set_mode(fault.mode, requests=1 if once else None)
        result, error, elapsed = _timed(lambda: subject.call(store))
        sent = list(injector.sent)
        met = proxy.seen[-len(sent) :]
    assert set(sent) == {subject.request}
    assert met == ([fault.mode, "pass"] if once else [fault.mode] * len(sent))
    observer = env.observer(subject)
    if once:
        assert error is None, f"{type(error).__name__}: {error}"
        assert len(sent) == fault.sends, sent
        held = subject.landed(observer, result)
        status = store.get_circuit_breaker_status()
        assert status.state is BreakerState.CLOSED
        return _row(
            subject,
            fault,
            outcome=subject.describe(result),
            sends=len(sent),
            surfaced_ms=elapsed,
            invariant=f"{held}; breaker closed",
        )
    outcome = _check_error(fault, error, sent)
    held = subject.unchanged(observer)
    invariant = f"{held}; {'retried' if len(sent) > 1 else 'no retry past the deadline'}"
    return _row(
        subject,
        fault,
        outcome=outcome,
        sends=len(sent),
        surfaced_ms=elapsed,
        invariant=f"{invariant}; {_breaker(store, fault)}",
    )


def run_missing_table(subject: Subject, fault: Fault, env: Env) -> Row:
    missing = f"{env.make_table_name()}-absent"
    store = env.store(subject, table_name=missing, on_unavailable="open")
    injector = env.inject(store)
    with _fallbacks(store) as fallbacks:
        _, error, elapsed = _timed(lambda: subject.call(store))
    assert fallbacks == []
    outcome = _check_error(fault, error, injector.sent)
    assert getattr(error, "table", None) == missing
    invariant = f"not retried; {_breaker(store, fault)}; raised under on_unavailable='open'"
    return _row(
        subject,
        fault,
        outcome=outcome,
        sends=len(injector.sent),
        surfaced_ms=elapsed,
        invariant=invariant,
    )


@contextmanager
def _watch(store: Any, *entities: type[Any]) -> Iterator[list[str]]:
    """The DynamoDB operations the clients of ``store``'s models send in the block."""
    sent: list[str] = []

    def count(request: Any, **_: Any) -> None:
        sent.append(request.headers.get("X-Amz-Target", b"").decode().split(".")[-1])

    clients = [store._model(e)._get_connection().connection.client for e in entities]
    for client in clients:
        client.meta.events.register("before-send.dynamodb", count)
    try:
        yield sent
    finally:
        for client in clients:
            client.meta.events.unregister("before-send.dynamodb", count)


def run_not_applicable(subject: Subject, fault: Fault, env: Env) -> Row:
    store = env.store(subject)
    entities = (store.item_model, CacheChunk) if subject.name == "cache" else (store.item_model,)
    with _watch(store, *entities) as sent:
        subject.exercise(store)
    names = sorted(set(sent))
    assert not [name for name in names if name.startswith("Transact")], names
    if fault.kind == "transactions":
        invariant = f"no transaction to conflict: its calls send only {', '.join(names)}"
    else:
        assert "BatchWriteItem" not in names
        assert not hasattr(store, "clear")
        invariant = (
            "no batch write to be left unprocessed: it has no `clear()`, and its calls send "
            f"only {', '.join(names)}"
        )
    return _row(
        subject,
        fault,
        outcome="not applicable",
        sends=None,
        surfaced_ms=None,
        invariant=invariant,
        operation="every call",
    )


def run_partial_batch(subject: Subject, fault: Fault, env: Env) -> Row:
    items, partial_answers = 12, 2
    store = env.store(subject, batch_size=5)
    for i in range(items):
        store.set(f"k{i:02d}", i, 60)
    returned: list[Any] = []

    def half_processed(request: Any) -> AWSResponse | None:
        if b"BatchWriteItem" not in request.headers.get("X-Amz-Target", b""):
            return None
        if len([t for t in injector.sent if t == "BatchWriteItem"]) > partial_answers:
            return None
        [(table, writes)] = json.loads(request.body)["RequestItems"].items()
        done, left = writes[: math.ceil(len(writes) / 2)], writes[math.ceil(len(writes) / 2) :]
        env.raw_client.batch_write_item(RequestItems={table: done})  # what DynamoDB processed
        returned.extend(left)
        return json_response(request.url, {"UnprocessedItems": {table: left}})

    injector = env.inject(store)
    injector.default = half_processed
    result, error, elapsed = _timed(store.clear)
    assert error is None, f"{type(error).__name__}: {error}"
    batches = injector.sent.count("BatchWriteItem")
    # 12 deletes in batches of 5: 5 (3 done, 2 back), 2 (1 done, 1 back), 1, then 5 and 2.
    assert (batches, len(returned)) == (5, 3)
    assert set(injector.sent) == {"Query", "BatchWriteItem"}
    observer = env.observer(subject)
    stats = observer.get_stats()
    assert (stats.total_items, stats.expired_items) == (0, 0)
    assert all(observer.get(f"k{i:02d}") is None for i in range(items))
    assert store.get_circuit_breaker_status().state is BreakerState.CLOSED
    invariant = (
        f"none of its items left: all {items} deleted, the {len(returned)} returned "
        f"unprocessed sent again after a backoff ({batches} BatchWriteItem, "
        f"{injector.sent.count('Query')} Query); breaker closed"
    )
    return _row(
        subject,
        fault,
        outcome=f"returned {result!r}",
        sends=len(injector.sent),
        surfaced_ms=elapsed,
        invariant=invariant,
        operation="clear",
    )


RUNNERS: dict[str, Callable[[Subject, Fault, Env], Row]] = {
    "inject": run_injected,
    "proxy": run_proxied,
    "commit_then_drop": run_proxied,
    "missing_table": run_missing_table,
    "transactions": run_not_applicable,
    "partial_batch": run_partial_batch,
}


@pytest.fixture
def env(
    make_dynamodb_store: Make,
    inject: Callable[[Any], Injector],
    endpoint: str,
    make_table_name: Callable[[], str],
    raw_client: Any,
) -> Env:
    return Env(make_dynamodb_store, inject, endpoint, make_table_name, raw_client)


@pytest.mark.parametrize(("store", "fault"), CELLS, ids=[f"{s}-{f}" for s, f in CELLS])
def test_cell(store: str, fault: str, matrix: Matrix, env: Env) -> None:
    subject, column = SUBJECTS_BY_NAME[store], FAULTS_BY_KEY[fault]
    runner: Callable[[Subject, Fault, Env], Row] = RUNNERS[column.kind]
    if column.kind == "partial_batch" and not hasattr(subject.store_class, "clear"):
        runner = run_not_applicable
    matrix.record(runner(subject, column, env))


def test_the_published_settings_stores_and_faults_are_these() -> None:
    if WRITE:
        pytest.skip("writing the matrix: the file is being replaced")
    if not MATRIX_PATH.exists():
        pytest.fail(f"{MATRIX_PATH} is missing: run {REGENERATE}")
    committed = json.loads(MATRIX_PATH.read_text(encoding="utf-8"))
    assert {k: v for k, v in committed.items() if k != "rows"} == published_head()
    assert [(r["store"], r["fault"]) for r in committed["rows"]] == CELLS
