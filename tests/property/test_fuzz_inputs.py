"""Bad input everywhere: every public method of every store, fuzzed (hypothesis).

The four DynamoDB stores (on DynamoDB Local) and their four in-memory twins get keys, values,
TTLs, rate-limit configs, priorities and constructor options drawn from three kinds of cases:

* **valid**: the call succeeds with the right answer (a value set is read back, a key past
  DynamoDB's key limit still round-trips, a limit admits exactly ``limit`` requests);
* **invalid**: the call raises the library's typed error for that argument (a
  :class:`DynamoDBStoreError`; ``ConfigurationError``, ``InvalidKeyError`` and
  ``ItemTooLargeError`` are ``ValueError`` too), or exactly the builtin its docstring names
  (``TypeError``/``ValueError`` for a value JSON cannot hold or a TTL that is not a
  non-negative number); never anything else: no ``OverflowError``, ``KeyError``, botocore,
  PynamoDB or pydantic error;
* **edge** (a TTL of millennia, a window longer than a ``datetime`` reaches, a limit with more
  digits than a DynamoDB number holds, a value near the size limit): refused with the typed
  error, or accepted, and then it must work.

A call that raises sent no request to DynamoDB (a botocore ``before-send`` hook counts the
requests of every client a store uses) and changed nothing in the table (a consistent scan
before and after). The in-memory twin answers every call like its DynamoDB store: the same
value, or an exception of the same type.

Each DynamoDB example uses stores of its own, with a ``key_prefix`` of its own, on the
module's one table, which is emptied after each example. Every test counts the examples it
ran, per store and method; the last test of the module reports and checks the counts.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
import re
import string
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

import botocore.session
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from comic_vine_dynamodb_store import (
    AdaptiveRateLimitStoreOptions,
    CacheStats,
    CacheStoreOptions,
    ConfigurationError,
    DedupeStats,
    DedupeStoreOptions,
    DynamoDBAdaptiveRateLimitStore,
    DynamoDBCacheStore,
    DynamoDBDedupeStore,
    DynamoDBRateLimitStore,
    DynamoDBStoreError,
    HealthCheckResult,
    InMemoryAdaptiveRateLimitStore,
    InMemoryCacheStore,
    InMemoryDedupeStore,
    InMemoryRateLimitStore,
    InvalidKeyError,
    ItemTooLargeError,
    RateLimitConfig,
    RateLimitStats,
    RateLimitStatus,
    RateLimitStoreOptions,
    Registration,
    StoreClosedError,
    TableNotFoundError,
)
from comic_vine_dynamodb_store.keys import MAX_PARTITION_KEY_BYTES
from comic_vine_dynamodb_store.models import CacheChunk
from comic_vine_dynamodb_store.table import create_table, delete_table
from tests.support import FakeClock

REGION = "us-east-1"

MEMORY_EXAMPLES = 80
"""Examples per in-memory store method that takes arguments."""
DYNAMODB_EXAMPLES = 20
"""Examples per DynamoDB store method that takes arguments (each is a few round trips)."""
EDGE_EXAMPLES = 8
"""Examples per edge case (each a few round trips)."""
CONSTRUCTOR_EXAMPLES = 150
"""Constructions of in-memory stores (DynamoDB stores: half as many)."""

CACHE_MAX_VALUE_BYTES = 2048
"""The cache stores under test refuse values above this, so values near it are cheap."""

DEFAULT_LIMIT = {"limit": 3, "window_ms": 60_000}
"""The rate-limit stores' default config: small enough to fill in a few calls."""

RUNS: Counter[str] = Counter()
"""Examples run per test (``test:<label>``) and calls made per ``Store.method``."""

Errors: TypeAlias = tuple[type[BaseException], ...]
T = TypeVar("T")

JOB_ID = re.compile(r"[0-9a-f]{32}")
"""A dedupe job id (each store draws its own)."""


# --------------------------------------------------------------------------- arguments


def safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except (ValueError, RecursionError):  # a 5000-digit int, a list 3000 deep
        return f"<{type(value).__name__} without a repr>"


@dataclass(frozen=True)
class Arg:
    """A drawn argument and what the store may do with it.

    ``errors`` empty: valid, the call must accept it. Otherwise the call must raise one of
    ``errors`` (a ``DynamoDBStoreError`` class: that class or a subclass; a builtin: exactly
    that type), unless ``edge``: then it may also accept it (and must then work).
    """

    value: Any
    errors: Errors = ()
    edge: bool = False

    @property
    def invalid(self) -> bool:
        return bool(self.errors) and not self.edge

    def __repr__(self) -> str:
        text = safe_repr(self.value)
        if len(text) > 120:
            text = f"{text[:100]}...<{len(text)} chars>"
        kind = "edge" if self.edge else "invalid" if self.errors else "valid"
        names = ",".join(error.__name__ for error in self.errors)
        return f"Arg({text}, {kind}{':' + names if names else ''})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """How hypothesis shows a failing example: as ``repr`` (its own printer recurses
        into a list 3000 deep)."""
        printer.text(repr(self))


def valid(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Arg]:
    return strategy.map(Arg)


def invalid(
    strategy: st.SearchStrategy[Any], *errors: type[BaseException]
) -> st.SearchStrategy[Arg]:
    return strategy.map(lambda value: Arg(value, errors))


def edge(strategy: st.SearchStrategy[Any], *errors: type[BaseException]) -> st.SearchStrategy[Arg]:
    return strategy.map(lambda value: Arg(value, errors, edge=True))


def mostly(
    usual: st.SearchStrategy[Arg], *unusual: st.SearchStrategy[Arg]
) -> st.SearchStrategy[Arg]:
    """``usual`` about three times in four, else one of ``unusual``: most calls then get past
    every argument check, to the part that talks to DynamoDB. (``one_of(usual, usual, ...)``
    would not do: hypothesis merges equal branches.)"""
    others = st.one_of(*unusual)
    return st.sampled_from((True, True, True, False)).flatmap(
        lambda common: usual if common else others
    )


def matches(error: BaseException, allowed: Errors) -> bool:
    """``error`` is one of ``allowed``: a library error by class, a builtin by exact type
    (a ``UnicodeEncodeError`` or pydantic's ``ValidationError`` is not a plain ``ValueError``)."""
    return any(
        isinstance(error, kind) if issubclass(kind, DynamoDBStoreError) else type(error) is kind
        for kind in allowed
    )


# Keys and resource names.

lone_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
valid_keys = st.one_of(
    st.text(min_size=1, max_size=24),
    st.sampled_from(["k", "\x00", "a\x00b", "CACHE##=a", "#", "~", "!health", "ключ 🔑", " "]),
    # Past DynamoDB's 2048-byte key limit (bytes, not characters): stored hashed.
    st.builds(
        lambda unit, count: unit * count,
        st.sampled_from(["k", "é", "🔑", "\x00"]),
        st.integers(min_value=500, max_value=2600),
    ),
)
keys = mostly(
    valid(valid_keys),
    invalid(st.just(""), InvalidKeyError),
    invalid(
        st.builds(
            lambda head, bad, tail: head + bad + tail,
            st.text(max_size=4),
            lone_surrogates,
            st.text(max_size=4),
        ),
        InvalidKeyError,
    ),
    invalid(
        st.one_of(
            st.integers(),
            st.binary(max_size=4),
            st.none(),
            st.floats(allow_nan=False),
            st.booleans(),
            st.lists(st.text(max_size=3), max_size=2),
        ),
        InvalidKeyError,
    ),
)

# Values.

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
type_error_leaves = st.one_of(
    st.sets(st.integers(), max_size=2),
    st.tuples(st.integers()),
    st.binary(max_size=3),
    st.just(object()),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
    st.complex_numbers(allow_nan=False, allow_infinity=False),
    st.dates(),
)
value_error_leaves = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.builds(lambda head, bad: head + bad, st.text(max_size=3), lone_surrogates),
    st.just(10**5000),  # more digits than int-to-str conversion allows
)


def poisoned(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One bad leaf, alone or deep inside otherwise valid JSON."""
    return st.one_of(
        leaves,
        st.tuples(json_values, leaves).map(lambda pair: [pair[0], pair[1]]),
        st.tuples(json_values, leaves).map(lambda pair: {"ok": pair[0], "bad": {"x": pair[1]}}),
    )


@functools.lru_cache(maxsize=64)
def noise(seed: int, size: int) -> str:
    """``size`` characters that compress poorly (about 6 bits each)."""
    rng = random.Random(seed)
    return "".join(rng.choices(string.ascii_letters + string.digits, k=size))


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


values = mostly(
    valid(json_values),
    invalid(poisoned(type_error_leaves), TypeError),
    invalid(poisoned(value_error_leaves), ValueError),
    # Around the cache stores' max_value_bytes, after compression.
    edge(st.builds(noise, st.integers(0, 2**16), st.integers(1500, 4000)), ItemTooLargeError),
    # Around the depth the JSON encoder gives up at.
    edge(st.integers(min_value=400, max_value=3000).map(nested), ValueError),
)

# TTLs, in seconds.

ttls = mostly(
    st.one_of(
        valid(st.integers(min_value=0, max_value=10**6)),
        valid(st.floats(min_value=0, max_value=1e6)),
        valid(st.booleans()),
    ),
    invalid(st.integers(max_value=-1), ValueError),
    invalid(st.floats(max_value=-1e-9, allow_nan=False), ValueError),
    invalid(st.just(math.nan), ValueError),
    invalid(st.sampled_from(["60", None, [60], b"60"]), TypeError),
)
FAR_TTLS = {
    # Past anything a cache means, and past what a datetime or a DynamoDB number holds:
    # "never expires" in effect, or refused as out of range; never another error.
    "infinite": edge(st.just(math.inf), ValueError),
    "float past year 9999": edge(st.floats(min_value=3e11, max_value=1e300), ValueError),
    "int past year 9999": edge(st.integers(min_value=3 * 10**11, max_value=10**40), ValueError),
}


def live(ttl: Any) -> bool:
    """Whether a value set with ``ttl`` (accepted) is still live at the instant it was set."""
    return bool(ttl == 0 or round(ttl * 1000) > 0)


# Rate-limit configs and priorities.

small_configs: st.SearchStrategy[dict[str, int]] = st.builds(
    dict,
    limit=st.integers(min_value=0, max_value=6),
    window_ms=st.integers(min_value=1, max_value=10**9),
)
configs = mostly(
    valid(
        st.fixed_dictionaries(
            {},
            optional={
                "limit": st.integers(min_value=0, max_value=6),
                "window_ms": st.integers(min_value=1, max_value=10**9),
            },
        )
    ),
    invalid(
        st.one_of(
            st.builds(dict, limit=st.integers(max_value=-1)),
            st.builds(dict, window_ms=st.integers(max_value=0)),
            st.builds(dict, limit=st.sampled_from(["5", 1.0, True, None, [5]])),
            st.builds(dict, window_ms=st.sampled_from(["60000", 1.5, False, None])),
            st.just({"limit": 5, "windowMs": 1000}),
            st.sampled_from([None, 5, "limit=5", [("limit", 1)], b"{}"]),
        ),
        ConfigurationError,
    ),
    valid(small_configs.map(lambda config: RateLimitConfig(**config))),
)
HUGE_CONFIGS = {
    "window past year 9999": edge(
        st.builds(dict, window_ms=st.integers(min_value=3 * 10**14, max_value=10**30)),
        ConfigurationError,
    ),
    "limit over 38 digits": edge(
        st.builds(dict, limit=st.integers(min_value=10**38 + 1, max_value=10**40)),
        ConfigurationError,
    ),
}
"""Windows past what a datetime reaches; limits with more digits than a DynamoDB number."""

priorities = mostly(
    valid(st.sampled_from(["user", "background"])),
    invalid(
        st.sampled_from(["USER", "", " user", "bg", None, 1, b"user", ["user"]]),
        ConfigurationError,
    ),
)

sometimes = st.sampled_from((False, False, False, False, True))
"""True in about one example in five: whether the store is closed before the call."""


# --------------------------------------------------------------------------- the table


def canonical(items: Sequence[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(item, sort_keys=True, default=repr) for item in items)


@dataclass
class Table:
    """The module's table, the clock of its stores, and every request they send."""

    endpoint: str
    name: str
    raw: Any
    clock: FakeClock = field(default_factory=FakeClock)
    sent: list[str] = field(default_factory=list)
    namespaces: Iterator[int] = field(default_factory=itertools.count)
    clients: list[Any] = field(default_factory=list)

    def count_send(self, request: Any, **_: Any) -> None:
        self.sent.append(request.headers.get("X-Amz-Target", b"").decode().split(".")[-1])

    def watch(self, store: Any) -> Any:
        """Count every request of ``store`` (each of its bound models has a client)."""
        for client in self.clients_of(store):
            client.meta.events.register(
                "before-send.dynamodb", self.count_send, unique_id="fuzz-sent"
            )
            if all(client is not known for known in self.clients):
                self.clients.append(client)
        return store

    @staticmethod
    def clients_of(store: Any) -> list[Any]:
        """The botocore clients of ``store`` (building them, as its first request would)."""
        models = [store.item_model]
        if isinstance(store, DynamoDBCacheStore):
            models.append(CacheChunk)
        return [store._model(model)._get_connection().connection.client for model in models]

    def options(self, **options: Any) -> dict[str, Any]:
        """Options of a store on this table, with a namespace no other store uses."""
        return {
            "table_name": self.name,
            "endpoint": self.endpoint,
            "region": REGION,
            "key_prefix": f"fuzz{next(self.namespaces)}",
            "cleanup_interval_ms": 0,
            "max_retries": 0,
            "monitoring": {"logging": {"enabled": False}},
            **options,
        }

    def store(self, store_class: type[Any], **options: Any) -> Any:
        """A store on this table, in a namespace of its own (no other example's items)."""
        return self.watch(store_class(clock=self.clock, **self.options(**options)))

    def items(self) -> list[str]:
        """Every item of the table, as a consistent scan sees it."""
        return canonical(list(self._scan()))

    def wipe(self) -> None:
        """Delete every item (what an example wrote)."""
        for item in list(self._scan(ProjectionExpression="PK, SK")):
            self.raw.delete_item(TableName=self.name, Key={"PK": item["PK"], "SK": item["SK"]})

    def _scan(self, **options: Any) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"TableName": self.name, "ConsistentRead": True, **options}
        while True:
            page = self.raw.scan(**kwargs)
            yield from page["Items"]
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def close(self) -> None:
        for client in self.clients:
            client.meta.events.unregister("before-send.dynamodb", unique_id="fuzz-sent")


@pytest.fixture(scope="module")
def table(endpoint: str) -> Iterator[Table]:
    """One table for the module (stores in namespaces of their own), deleted afterwards."""
    name = f"fuzz-{uuid.uuid4().hex[:12]}"
    create_table(name, endpoint=endpoint, region=REGION)
    raw = botocore.session.get_session().create_client(
        "dynamodb", region_name=REGION, endpoint_url=endpoint
    )
    shared = Table(endpoint, name, raw)
    try:
        yield shared
    finally:
        shared.close()
        raw.close()
        delete_table(name, endpoint=endpoint, region=REGION, missing_ok=True)


# --------------------------------------------------------------------------- calls


@dataclass
class Outcome:
    """A call's result, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def summary(value: Any) -> Any:
    """What of a result must agree between a store and its twin (ids and clocks differ)."""
    if isinstance(value, str) and JOB_ID.fullmatch(value):
        return "<job id>"
    if isinstance(value, Registration):
        return ("Registration", value.is_owner)
    if isinstance(value, RateLimitStatus):
        return ("RateLimitStatus", value.remaining, value.limit, value.adaptive)
    if isinstance(value, HealthCheckResult):
        return ("HealthCheckResult", value.healthy)
    if isinstance(value, CacheStats | DedupeStats | RateLimitStats | RateLimitConfig):
        return value
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return safe_repr(value)


def exact(value: Any) -> str:
    """A form that tells ``1`` from ``1.0`` from ``True`` (``==`` does not)."""
    return json.dumps(value, allow_nan=False)


SENDING = frozenset(
    (
        *("get", "set", "delete", "clear", "cleanup", "get_stats", "health_check"),
        *("register_or_join", "register", "complete", "fail", "is_in_progress", "wait_for", "run"),
        *("record", "can_proceed", "get_status", "get_wait_time", "reset"),
    )
)
"""Methods of the DynamoDB stores that send at least one request whenever they succeed."""


class Caller:
    """Calls a store's methods, checking each call against what its arguments allow.

    With a :class:`Table`, a call that raises must have sent nothing and changed nothing in
    it. ``transcript`` is what the store's twin must answer alike.
    """

    def __init__(self, store: Any, label: str, table: Table | None = None) -> None:
        self.store = store
        self.label = label
        self.table = table
        self.closed = False
        self.transcript: list[tuple[str, str, Any]] = []

    def close(self) -> None:
        RUNS[f"{self.label}.close"] += 1
        self.store.close()
        self.closed = True

    def call(
        self,
        method: str,
        *args: Arg,
        closes: bool = True,
        passes: Errors = (),
        twin: bool = True,
    ) -> Outcome:
        """Call ``method`` with ``args``. ``closes``: a closed store refuses it with
        ``StoreClosedError``; ``passes``: exceptions the call may raise besides those its
        arguments allow (a callback's own, say); ``twin``: the twin has the method too."""
        RUNS[f"{self.label}.{method}"] += 1
        invalid_errors = tuple(error for arg in args if arg.invalid for error in arg.errors)
        edge_errors = tuple(error for arg in args if arg.edge for error in arg.errors)
        closed = self.closed and closes
        watched = self.table is not None and bool(invalid_errors or edge_errors or closed)
        sent_before = len(self.table.sent) if self.table is not None else 0
        items_before = self.table.items() if self.table is not None and watched else None
        try:
            outcome = Outcome(value=getattr(self.store, method)(*(arg.value for arg in args)))
        except Exception as exc:
            outcome = Outcome(error=exc)
        self._check(
            method,
            args,
            outcome,
            invalid_errors=invalid_errors,
            edge_errors=edge_errors,
            closed=closed,
            passes=passes,
        )
        error = outcome.error
        if error is None and self.table is not None and not self.closed and method in SENDING:
            # The counting hook sees this store's requests (else "sent nothing" proves nothing).
            assert len(self.table.sent) > sent_before, f"{self.label}.{method}: no request seen"
        if error is not None and self.table is not None and not matches(error, passes):
            where = f"{self.label}.{method}{args!r}"
            sent = self.table.sent[sent_before:]
            assert sent == [], f"{where} raised {error!r} after sending {sent}"
            if items_before is not None:
                assert self.table.items() == items_before, f"{where} raised {error!r}, wrote"
        if twin:
            self.transcript.append(
                (method, "ok", summary(outcome.value))
                if error is None
                else (method, "raised", type(error).__name__)
            )
        return outcome

    def _check(
        self,
        method: str,
        args: Sequence[Arg],
        outcome: Outcome,
        *,
        invalid_errors: Errors,
        edge_errors: Errors,
        closed: bool,
        passes: Errors,
    ) -> None:
        where = f"{self.label}.{method}{tuple(args)!r}{' on a closed store' if closed else ''}"
        error = outcome.error
        if error is not None and matches(error, passes):
            return
        if invalid_errors or closed:
            allowed = invalid_errors + edge_errors + ((StoreClosedError,) if closed else ())
            assert error is not None, f"{where} returned {outcome.value!r}, expected {allowed}"
            assert matches(error, allowed), f"{where} raised {error!r}; expected one of {allowed}"
        elif error is not None:
            assert edge_errors, f"{where} raised {error!r} for valid arguments"
            assert matches(error, edge_errors), f"{where} raised {error!r}, not {edge_errors}"

    def must(self, method: str, *args: Any) -> Any:
        """A call that must succeed (valid arguments, open store): its value."""
        outcome = self.call(method, *(Arg(arg) for arg in args))
        assert outcome.ok, f"{self.label}.{method}{args!r} raised {outcome.error!r}"
        return outcome.value


def agree(store: Caller, twin: Caller) -> None:
    """The twin answered every call like the DynamoDB store."""
    lines = [
        f"  {'same' if a == b else 'DIFF'} dynamodb={a!r}\n         memory  ={b!r}"
        for a, b in itertools.zip_longest(store.transcript, twin.transcript)
    ]
    assert twin.transcript == store.transcript, (
        "the in-memory twin and the DynamoDB store disagree:\n" + "\n".join(lines)
    )


def run_examples(
    label: str,
    minimum: int,
    max_examples: int,
    body: Callable[[T], None],
    plans: st.SearchStrategy[T],
    *,
    shrink: bool = True,
) -> None:
    """Run ``body`` over ``plans`` with hypothesis, then check that enough examples ran.

    ``shrink=False`` for examples that talk to DynamoDB: a failure is reported as found
    (plans are small already) instead of costing hundreds of round trips to minimise.
    """
    runs = f"test:{label}"
    phases = tuple(Phase) if shrink else (Phase.explicit, Phase.reuse, Phase.generate)

    def examples(plan: T) -> None:
        RUNS[runs] += 1
        body(plan)

    # Every test runs this one function: the label keeps their saved examples apart (what
    # hypothesis' pytest plugin does for parametrized tests).
    examples.__dict__["_hypothesis_internal_add_digest"] = label.encode()
    test = settings(
        max_examples=max_examples,
        phases=phases,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )(given(plans)(examples))
    before = RUNS[runs]
    test()
    assert RUNS[runs] - before >= minimum, f"{label}: only {RUNS[runs] - before} examples ran"


STORE_WIDE = ("clear", "cleanup", "get_stats", "health_check")
"""Methods without arguments: a plan for one varies only in whether the store is closed."""


def fuzz(
    label: str, op: str, body: Callable[[T], None], plans: st.SearchStrategy[T], *, memory: bool
) -> None:
    """``run_examples`` for one method: up to ``MEMORY_EXAMPLES`` or ``DYNAMODB_EXAMPLES``
    examples for a method with arguments; the two plans there are (store open, store closed)
    for one without."""
    if op in STORE_WIDE:
        run_examples(f"{label}.{op}", 2, 10, body, plans)
    elif memory:
        run_examples(f"{label}.{op}", MEMORY_EXAMPLES // 2, MEMORY_EXAMPLES, body, plans)
    else:
        run_examples(
            f"{label}.{op}", DYNAMODB_EXAMPLES // 2, DYNAMODB_EXAMPLES, body, plans, shrink=False
        )


def store_wide(caller: Caller, op: str, expected: Any) -> None:
    """A method without arguments: ``expected`` on an empty namespace (health: healthy)."""
    outcome = caller.call(op, closes=op != "health_check")
    if op == "health_check":
        assert outcome.value.healthy is not caller.closed
    elif outcome.ok:
        assert outcome.value == expected, f"{caller.label}.{op}() = {outcome.value!r}"


def breaker_controls(caller: Caller) -> None:
    """The DynamoDB stores' breaker controls take no input and work, open or closed."""
    status = caller.call("get_circuit_breaker_status", closes=False, twin=False).value
    assert status.state.value == "closed"
    assert caller.call("reset_circuit_breaker", closes=False, twin=False).value is None


def against_twin(
    table: Table, make: Callable[[], tuple[Caller, Caller]], scenario: Callable[[Caller], None]
) -> None:
    """``scenario`` on a DynamoDB store, then on its in-memory twin; they must agree."""
    store, twin = make()
    try:
        scenario(store)
        scenario(twin)
        agree(store, twin)
        breaker_controls(store)
    finally:
        store.store.close()
        table.wipe()


# --------------------------------------------------------------------------- cache


@dataclass(frozen=True)
class CachePlan:
    op: str
    key: Arg
    value: Arg
    ttl: Arg
    closed: bool


def cache_set(caller: Caller, plan: CachePlan) -> None:
    if not caller.call("set", plan.key, plan.value, plan.ttl).ok:
        return
    kept = live(plan.ttl.value)
    got = caller.must("get", plan.key.value)
    expected = plan.value.value if kept else None
    assert exact(got) == exact(expected), f"{plan!r} read back {got!r}"
    stats = caller.must("get_stats")
    assert (stats.total_items, stats.expired_items) == ((1, 0) if kept else (0, 1))
    if len(plan.key.value.encode()) > MAX_PARTITION_KEY_BYTES // 2:
        # Long keys (hashed past the key limit) stay apart from their neighbours.
        sibling = plan.key.value + "!"
        assert caller.must("set", sibling, "sibling", 0) is None
        assert caller.must("get", sibling) == "sibling"
        assert exact(caller.must("get", plan.key.value)) == exact(expected)
        assert caller.must("delete", sibling) is None
    assert caller.must("delete", plan.key.value) is None
    assert caller.must("get", plan.key.value) is None


def cache_scenario(caller: Caller, plan: CachePlan) -> None:
    if plan.closed:
        caller.close()
    if plan.op == "set":
        cache_set(caller, plan)
    elif plan.op in ("get", "delete"):
        if caller.call(plan.op, plan.key).ok:
            assert caller.must("get", plan.key.value) is None
    else:
        expected = {"clear": None, "cleanup": 0, "get_stats": CacheStats(0, 0, 0)}
        store_wide(caller, plan.op, expected.get(plan.op))


CACHE_OPS = ("get", "set", "delete", "clear", "cleanup", "get_stats", "health_check")


def cache_plans(op: str) -> st.SearchStrategy[CachePlan]:
    if op in STORE_WIDE:
        unused = st.just(Arg(None))
        return st.builds(CachePlan, st.just(op), unused, unused, unused, st.booleans())
    return st.builds(CachePlan, op=st.just(op), key=keys, value=values, ttl=ttls, closed=sometimes)


def memory_cache(clock: FakeClock) -> InMemoryCacheStore[Any]:
    return InMemoryCacheStore(max_value_bytes=CACHE_MAX_VALUE_BYTES, clock=clock)


def cache_pair(table: Table) -> tuple[Caller, Caller]:
    store = table.store(DynamoDBCacheStore, max_value_bytes=CACHE_MAX_VALUE_BYTES)
    return (
        Caller(store, "DynamoDBCacheStore", table),
        Caller(memory_cache(table.clock), "InMemoryCacheStore"),
    )


@pytest.mark.parametrize("op", CACHE_OPS)
def test_memory_cache_methods_refuse_bad_input_with_typed_errors(op: str) -> None:
    clock = FakeClock()

    def body(plan: CachePlan) -> None:
        cache_scenario(Caller(memory_cache(clock), "InMemoryCacheStore"), plan)

    fuzz("InMemoryCacheStore", op, body, cache_plans(op), memory=True)


@pytest.mark.parametrize("op", CACHE_OPS)
def test_dynamodb_cache_methods_refuse_bad_input_before_any_request(op: str, table: Table) -> None:
    def body(plan: CachePlan) -> None:
        against_twin(table, lambda: cache_pair(table), lambda caller: cache_scenario(caller, plan))

    fuzz("DynamoDBCacheStore", op, body, cache_plans(op), memory=False)


@pytest.mark.parametrize("ttl", FAR_TTLS)
def test_cache_ttls_beyond_any_date_are_refused_with_value_error_or_kept(
    ttl: str, table: Table
) -> None:
    """A TTL of millennia, or infinite, means "never expires" in effect or is refused with a
    ``ValueError``, alike in both cache stores; never an ``OverflowError`` or ``OSError``
    from date arithmetic."""

    def body(plan: CachePlan) -> None:
        against_twin(table, lambda: cache_pair(table), lambda caller: cache_scenario(caller, plan))

    plans = st.builds(
        CachePlan,
        op=st.just("set"),
        key=valid(valid_keys),
        value=valid(json_values),
        ttl=FAR_TTLS[ttl],
        closed=st.just(False),
    )
    run_examples(f"TTL {ttl}", 1, EDGE_EXAMPLES, body, plans, shrink=False)


# --------------------------------------------------------------------------- dedupe


class JobFailedError(Exception):
    """What a job given to ``run`` raises."""


OWN_JOB = "<the registered job's id>"
"""Stands for the id ``register_or_join`` returned, once there is one."""


@dataclass(frozen=True)
class DedupePlan:
    op: str
    key: Arg
    value: Arg
    failure: Arg
    job_id: Arg
    job: Arg | None
    """What ``run``'s job does: None raises :class:`JobFailedError`, an Arg is its result."""
    registered: bool
    """A job for ``key`` is registered (pending) before the call."""
    closed: bool


@dataclass
class DedupeState:
    plan: DedupePlan
    job_id: Arg
    own: Registration | None

    @property
    def registered(self) -> bool:
        return self.own is not None

    @property
    def ours(self) -> bool:
        """``job_id`` names the registered job (None names whichever is pending)."""
        return self.own is not None and self.job_id.value in (None, self.own.job_id)


def pending_is(caller: Caller, key: Arg, expected: bool) -> None:
    if not caller.closed and not key.errors:
        assert caller.must("is_in_progress", key.value) is expected


def dedupe_register(caller: Caller, state: DedupeState) -> None:
    plan = state.plan
    outcome = caller.call(plan.op, plan.key)
    if not outcome.ok:
        return
    registration = outcome.value if plan.op == "register_or_join" else None
    job = outcome.value if registration is None else registration.job_id
    assert isinstance(job, str)
    assert len(job) == 32
    if registration is not None:
        assert registration.is_owner is not state.registered
    if state.own is not None:
        assert job == state.own.job_id
    pending_is(caller, plan.key, True)


def dedupe_finish(caller: Caller, state: DedupeState) -> None:
    plan = state.plan
    if plan.op == "complete":
        outcome = caller.call("complete", plan.key, plan.value, state.job_id)
    else:
        outcome = caller.call("fail", plan.key, plan.failure, state.job_id)
    if not outcome.ok:
        pending_is(caller, plan.key, state.registered)
        return
    assert outcome.value is state.ours
    pending_is(caller, plan.key, state.registered and not outcome.value)
    if outcome.value and not caller.closed:
        published = caller.must("wait_for", plan.key.value)
        expected = plan.value.value if plan.op == "complete" else None
        assert exact(published) == exact(expected)


def dedupe_run(caller: Caller, state: DedupeState) -> None:
    plan, calls = state.plan, []

    def job() -> Any:
        calls.append(1)
        if plan.job is None:
            raise JobFailedError("the job failed")
        return plan.job.value

    outcome = caller.call("run", plan.key, Arg(job), passes=(JobFailedError,))
    if plan.key.errors or caller.closed or state.registered:
        assert calls == [], "run ran a job it had to refuse, or join"
    if outcome.ok and state.registered:
        assert outcome.value is None  # joined the pending job, and waited no time
    elif outcome.ok:
        assert plan.job is not None
        assert calls == [1]
        assert outcome.value is plan.job.value  # the owner gets its own result, as it is
        published = caller.must("wait_for", plan.key.value)
        # A result that cannot be published (not JSON, too large) fails the job instead.
        if plan.job.errors:
            assert published is None or exact(published) == exact(plan.job.value)
        else:
            assert exact(published) == exact(plan.job.value)
    pending_is(caller, plan.key, state.registered)


def dedupe_read(caller: Caller, state: DedupeState) -> None:
    outcome = caller.call(state.plan.op, state.plan.key)
    if outcome.ok:
        expected = state.registered if state.plan.op == "is_in_progress" else None
        assert outcome.value is expected


def dedupe_scenario(caller: Caller, plan: DedupePlan) -> None:
    own = None
    if plan.registered and not plan.key.errors:
        own = caller.must("register_or_join", plan.key.value)
        assert own.is_owner
    if plan.closed:
        caller.close()
    job_id = plan.job_id
    if job_id.value == OWN_JOB:
        job_id = Arg(own.job_id if own is not None else uuid.uuid4().hex)
    state = DedupeState(plan, job_id, own)
    if plan.op in ("register_or_join", "register"):
        dedupe_register(caller, state)
    elif plan.op in ("complete", "fail"):
        dedupe_finish(caller, state)
    elif plan.op == "run":
        dedupe_run(caller, state)
    elif plan.op in ("is_in_progress", "wait_for"):
        dedupe_read(caller, state)
    else:
        pending = int(state.registered)
        expected = {"cleanup": 0, "get_stats": DedupeStats(pending, pending, 0, 0, 0)}
        store_wide(caller, plan.op, expected.get(plan.op))


dedupe_values = st.one_of(
    values,
    # Around the item limit a job's result must fit in, after compression.
    edge(
        st.sampled_from([200_000, 600_000]).map(lambda size: noise(size, size)), ItemTooLargeError
    ),
)
DEDUPE_OPS = (
    "register_or_join",
    "register",
    "complete",
    "fail",
    "is_in_progress",
    "wait_for",
    "run",
    "get_stats",
    "cleanup",
    "health_check",
)


def dedupe_plans(op: str) -> st.SearchStrategy[DedupePlan]:
    if op in STORE_WIDE:
        key, unused = st.just(Arg("k")), st.just(Arg(None))
        return st.builds(
            DedupePlan,
            st.just(op),
            key,
            unused,
            unused,
            unused,
            st.none(),
            st.booleans(),
            st.booleans(),
        )
    return st.builds(
        DedupePlan,
        op=st.just(op),
        key=keys,
        value=dedupe_values,
        failure=st.one_of(
            valid(st.text(max_size=30)),
            valid(st.builds(RuntimeError, st.text(max_size=10))),
            valid(st.just("x" * 5000)),
            edge(st.sampled_from([None, 1, b"boom"]), TypeError),
        ),
        job_id=valid(st.sampled_from([None, OWN_JOB, OWN_JOB, "0" * 32, ""])),
        job=st.one_of(st.none(), dedupe_values),
        registered=st.booleans(),
        closed=sometimes,
    )


def memory_dedupe(clock: FakeClock) -> InMemoryDedupeStore[Any]:
    return InMemoryDedupeStore(max_wait_time_ms=0, clock=clock)


def dedupe_pair(table: Table) -> tuple[Caller, Caller]:
    store = table.store(DynamoDBDedupeStore, max_wait_time_ms=0)
    return (
        Caller(store, "DynamoDBDedupeStore", table),
        Caller(memory_dedupe(table.clock), "InMemoryDedupeStore"),
    )


@pytest.mark.parametrize("op", DEDUPE_OPS)
def test_memory_dedupe_methods_refuse_bad_input_with_typed_errors(op: str) -> None:
    clock = FakeClock()

    def body(plan: DedupePlan) -> None:
        dedupe_scenario(Caller(memory_dedupe(clock), "InMemoryDedupeStore"), plan)

    fuzz("InMemoryDedupeStore", op, body, dedupe_plans(op), memory=True)


@pytest.mark.parametrize("op", DEDUPE_OPS)
def test_dynamodb_dedupe_methods_refuse_bad_input_before_any_request(op: str, table: Table) -> None:
    def body(plan: DedupePlan) -> None:
        against_twin(
            table, lambda: dedupe_pair(table), lambda caller: dedupe_scenario(caller, plan)
        )

    fuzz("DynamoDBDedupeStore", op, body, dedupe_plans(op), memory=False)


@pytest.mark.parametrize("job_id", [1, 0.5, b"job", ["job"]], ids=repr)
def test_dedupe_job_ids_that_are_not_str_get_the_same_answer_from_both_stores(
    job_id: Any, table: Table
) -> None:
    """``complete``/``fail`` given a job id that is not a str: both stores refuse it with an
    ``InvalidKeyError`` (as a key that is not a str) before any request."""

    def body(plan: DedupePlan) -> None:
        against_twin(
            table, lambda: dedupe_pair(table), lambda caller: dedupe_scenario(caller, plan)
        )

    plans = st.builds(
        DedupePlan,
        op=st.sampled_from(["complete", "fail"]),
        key=valid(valid_keys),
        value=valid(json_values),
        failure=valid(st.text(max_size=5)),
        job_id=st.just(Arg(job_id, (InvalidKeyError,), edge=True)),
        job=st.none(),
        registered=st.just(True),
        closed=st.just(False),
    )
    run_examples(f"job id {job_id!r}", 2, 4, body, plans, shrink=False)


# --------------------------------------------------------------------------- rate limits


@dataclass(frozen=True)
class RatePlan:
    op: str
    resource: Arg
    config: Arg | None
    """Set for ``resource`` first (None: the default config stays)."""
    times: int
    priority: Arg | None
    """None: a plain rate-limit store; else an adaptive one, asked with this priority."""
    closed: bool


@dataclass
class RateState:
    plan: RatePlan
    config: RateLimitConfig
    default: RateLimitConfig
    counted: int | None = 0
    """Admissions the window holds after the call (None: not known exactly)."""

    @property
    def by_priority(self) -> tuple[Arg, ...]:
        return () if self.plan.priority is None else (self.plan.priority,)

    @property
    def exact(self) -> bool:
        """Users are admitted whenever the window has room; background work only within its
        share, which the split decides."""
        priority = self.plan.priority
        return priority is None or priority.value == "user"


def as_config(config: Any) -> RateLimitConfig:
    return config if isinstance(config, RateLimitConfig) else RateLimitConfig(**config)


def rate_count(caller: Caller, state: RateState) -> None:
    plan, limit = state.plan, state.config.limit
    answers = [caller.call(plan.op, plan.resource, *state.by_priority) for _ in range(plan.times)]
    if not all(answer.ok for answer in answers):
        state.counted = None
        return
    if plan.op == "record":
        assert all(answer.value is None for answer in answers)
        state.counted = plan.times
    elif state.exact:
        assert [answer.value for answer in answers] == [n < limit for n in range(plan.times)]
        state.counted = min(plan.times, limit)
    else:
        assert all(isinstance(answer.value, bool) for answer in answers)
        state.counted = None


def rate_ask(caller: Caller, state: RateState) -> None:
    plan, limit = state.plan, state.config.limit
    outcome = caller.call(plan.op, plan.resource, *state.by_priority)
    if not outcome.ok:
        return
    if plan.op == "can_proceed":
        assert isinstance(outcome.value, bool)
        if state.exact:
            assert outcome.value is (limit > 0)
    else:
        assert isinstance(outcome.value, int)
        assert outcome.value >= 0
        if state.exact:
            assert (outcome.value == 0) is (limit > 0)


def rate_config(caller: Caller, state: RateState) -> None:
    # Not a DynamoDB operation: an unusable resource name has the default config, or is
    # refused as unusable.
    resource = state.plan.resource
    outcome = caller.call(
        "get_resource_config",
        Arg(resource.value),
        closes=False,
        passes=(InvalidKeyError, TypeError),
    )
    if outcome.ok:
        assert outcome.value == (state.default if resource.errors else state.config)


def rate_check_window(caller: Caller, state: RateState) -> None:
    """What ``get_status`` and ``can_proceed`` say after the call, for a usable resource."""
    plan, limit = state.plan, state.config.limit
    status = caller.must("get_status", plan.resource.value)
    assert isinstance(status, RateLimitStatus)
    assert status.limit == limit
    assert 0 <= status.remaining <= limit
    assert (status.adaptive is None) is (plan.priority is None)
    if state.counted is not None:
        assert status.remaining == max(0, limit - state.counted), f"{state.counted}: {status}"
        if state.exact and (plan.priority is None or not plan.priority.errors):
            asked = caller.must(
                "can_proceed", plan.resource.value, *(p.value for p in state.by_priority)
            )
            assert asked is (state.counted < limit)


def rate_scenario(caller: Caller, plan: RatePlan) -> None:
    if plan.closed:
        caller.close()
    default = RateLimitConfig(**DEFAULT_LIMIT)
    state = RateState(plan, default, default)
    if plan.config is not None:
        outcome = caller.call("set_resource_config", plan.resource, plan.config, closes=False)
        if outcome.ok:
            assert outcome.value is None
            state.config = as_config(plan.config.value)
    if plan.op in ("acquire", "record"):
        rate_count(caller, state)
    elif plan.op in ("can_proceed", "get_wait_time"):
        rate_ask(caller, state)
    elif plan.op in ("get_status", "reset"):
        caller.call(plan.op, plan.resource)
    elif plan.op == "get_resource_config":
        rate_config(caller, state)
    elif plan.op != "set_resource_config":  # set above: the window check below tells the rest
        expected = {"cleanup": 0, "get_stats": RateLimitStats(0, 0, 0)}
        store_wide(caller, plan.op, expected.get(plan.op))
    if not caller.closed and not plan.resource.errors:
        rate_check_window(caller, state)


RATE_OPS = (
    "acquire",
    "record",
    "can_proceed",
    "get_status",
    "get_wait_time",
    "reset",
    "set_resource_config",
    "get_resource_config",
    "get_stats",
    "cleanup",
    "health_check",
)


def rate_plans(op: str, *, adaptive: bool) -> st.SearchStrategy[RatePlan]:
    """Plans for ``op`` on a plain store, or on an adaptive one (which takes a priority)."""
    if op in STORE_WIDE:
        usable = valid(st.sampled_from(["user", "background"])) if adaptive else st.none()
        return st.builds(
            RatePlan, st.just(op), st.just(Arg("r")), st.none(), st.just(1), usable, st.booleans()
        )
    return st.builds(
        RatePlan,
        op=st.just(op),
        resource=keys,
        config=configs if op == "set_resource_config" else st.one_of(st.none(), configs),
        times=st.integers(min_value=1, max_value=4),
        priority=priorities if adaptive else st.none(),
        closed=sometimes,
    )


def memory_rate(clock: FakeClock, *, adaptive: bool) -> Any:
    if adaptive:
        return InMemoryAdaptiveRateLimitStore(default_config=DEFAULT_LIMIT, clock=clock)
    return InMemoryRateLimitStore(default_config=DEFAULT_LIMIT, clock=clock)


def rate_pair(table: Table, *, adaptive: bool) -> tuple[Caller, Caller]:
    store_class = DynamoDBAdaptiveRateLimitStore if adaptive else DynamoDBRateLimitStore
    twin = memory_rate(table.clock, adaptive=adaptive)
    return (
        Caller(table.store(store_class, default_config=DEFAULT_LIMIT), store_class.__name__, table),
        Caller(twin, type(twin).__name__),
    )


@pytest.mark.parametrize("op", RATE_OPS)
def test_memory_rate_limit_methods_refuse_bad_input_with_typed_errors(op: str) -> None:
    clock = FakeClock()

    def body(plan: RatePlan) -> None:
        caller = Caller(memory_rate(clock, adaptive=False), "InMemoryRateLimitStore")
        rate_scenario(caller, plan)

    fuzz("InMemoryRateLimitStore", op, body, rate_plans(op, adaptive=False), memory=True)


@pytest.mark.parametrize("op", RATE_OPS)
def test_memory_adaptive_methods_refuse_bad_input_with_typed_errors(op: str) -> None:
    clock = FakeClock()

    def body(plan: RatePlan) -> None:
        caller = Caller(memory_rate(clock, adaptive=True), "InMemoryAdaptiveRateLimitStore")
        rate_scenario(caller, plan)

    fuzz("InMemoryAdaptiveRateLimitStore", op, body, rate_plans(op, adaptive=True), memory=True)


def dynamodb_rate_body(table: Table) -> Callable[[RatePlan], None]:
    def body(plan: RatePlan) -> None:
        adaptive = plan.priority is not None
        against_twin(
            table,
            lambda: rate_pair(table, adaptive=adaptive),
            lambda caller: rate_scenario(caller, plan),
        )

    return body


@pytest.mark.parametrize("op", RATE_OPS)
def test_dynamodb_rate_limit_methods_refuse_bad_input_before_any_request(
    op: str, table: Table
) -> None:
    plans = rate_plans(op, adaptive=False)
    fuzz("DynamoDBRateLimitStore", op, dynamodb_rate_body(table), plans, memory=False)


@pytest.mark.parametrize("op", RATE_OPS)
def test_dynamodb_adaptive_methods_refuse_bad_input_before_any_request(
    op: str, table: Table
) -> None:
    plans = rate_plans(op, adaptive=True)
    fuzz("DynamoDBAdaptiveRateLimitStore", op, dynamodb_rate_body(table), plans, memory=False)


@pytest.mark.parametrize("adaptive", [False, True], ids=["plain", "adaptive"])
@pytest.mark.parametrize("config", HUGE_CONFIGS)
def test_rate_limits_beyond_what_the_stores_can_count_are_refused_or_work(
    config: str, adaptive: bool, table: Table
) -> None:
    """A window longer than a datetime reaches, or a limit with more digits than a DynamoDB
    number holds: ``set_resource_config`` refuses it with ``ConfigurationError``, or every
    store works with it, alike in the twins; never an ``OverflowError``, nor a request
    DynamoDB rejects."""
    plans = st.builds(
        RatePlan,
        op=st.just("acquire"),
        resource=valid(valid_keys),
        config=HUGE_CONFIGS[config],
        times=st.integers(min_value=2, max_value=3),
        priority=valid(st.just("user")) if adaptive else st.none(),
        closed=st.just(False),
    )
    label = f"{'adaptive' if adaptive else 'plain'} {config}"
    run_examples(label, 1, EDGE_EXAMPLES, dynamodb_rate_body(table), plans, shrink=False)


# --------------------------------------------------------------------------- constructors


ABSENT_TABLE = f"fuzz-absent-{uuid.uuid4().hex[:8]}"
"""A valid table name no table has: the stores build, and then find no table."""

Catalogue: TypeAlias = dict[str, st.SearchStrategy[Arg]]


def bad(*values: Any) -> st.SearchStrategy[Arg]:
    return invalid(st.sampled_from(values), ConfigurationError)


def good(*values: Any) -> st.SearchStrategy[Arg]:
    return valid(st.sampled_from(values))


def common_options() -> Catalogue:
    """Options every DynamoDB store takes, valid and invalid."""
    return {
        "region": st.one_of(good(REGION, "eu-west-1", None), bad(5, b"us-east-1")),
        "key_prefix": st.one_of(
            good("", "app_1.x-y", "x" * 64), bad("a#b", "x" * 65, None, 5, "é", "a b")
        ),
        "max_retries": st.one_of(
            valid(st.integers(min_value=0, max_value=20)), bad(-1, 21, "3", 2.0, True, None)
        ),
        "retry_delay_ms": st.one_of(
            valid(st.integers(min_value=0, max_value=1000)), bad(-1, 1.5, "1")
        ),
        "batch_size": st.one_of(
            valid(st.integers(min_value=1, max_value=25)), bad(0, 26, -1, True, 2.0)
        ),
        "cleanup_interval_ms": st.one_of(good(0, 10**9), bad(-1, "0", 0.5)),
        "circuit_breaker": st.one_of(
            valid(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "enabled": st.booleans(),
                        "failure_threshold": st.integers(min_value=1, max_value=10),
                        "recovery_timeout_ms": st.integers(min_value=1, max_value=10**6),
                        "timeout_ms": st.integers(min_value=5000, max_value=120_000),
                    },
                )
            ),
            bad(
                {"failure_threshold": 0},
                {"recovery_timeout_ms": 0},
                {"timeout_ms": -5},
                {"enabled": "yes"},
                {"bogus": 1},
                5,
                None,
            ),
        ),
        "monitoring": st.one_of(
            good(
                {},
                {"logging": {"enabled": False}},
                {"logging": {"level": "error"}},
                {"performance": {"sampling_rate": 0.5}},
                {"health_checks": {"enabled": False, "interval_ms": 1000}},
                {"cloud_watch": {"enabled": False, "namespace": "App/Store"}},
            ),
            bad(
                {"performance": {"sampling_rate": 2}},
                {"performance": {"sampling_rate": math.nan}},
                {"health_checks": {"interval_ms": 0}},
                {"cloud_watch": {"namespace": "AWS/x"}},
                {"cloud_watch": {"endpoint": "nope"}},
                {"logging": {"level": "loud"}},
                {"bogus": {}},
                5,
            ),
        ),
        "on_unavailable": st.one_of(good("raise", "open", "closed"), bad("maybe", None, 1)),
        "client": st.one_of(good(None), bad(5, "session")),
        "tabel_name": bad("misspelt"),
    }


limits: st.SearchStrategy[dict[str, int]] = st.builds(
    dict, limit=st.integers(min_value=0, max_value=6), window_ms=st.integers(1000, 10**6)
)
rate_limit_options: Catalogue = {
    "default_config": st.one_of(
        valid(limits),
        valid(limits.map(lambda config: RateLimitConfig(**config))),
        bad({"limit": -1}, {"window_ms": 0}, {"bogus": 1}, 5, "x"),
    ),
    "resource_configs": st.one_of(
        valid(st.dictionaries(st.sampled_from(["r", "other"]), limits, max_size=2)),
        bad({"r": {"limit": -1}}, {"r": 5}, [1], "r"),
    ),
}
adaptive_options: Catalogue = {
    **rate_limit_options,
    "adaptive_config": st.one_of(
        good(
            {},
            {"high_activity_threshold": 20, "moderate_activity_threshold": 2},
            {"max_user_scaling": 1.5},
            {"min_user_reserved": 0},
            {"monitoring_window_ms": 60_000, "recalculation_interval_ms": 1000},
        ),
        bad(
            {"moderate_activity_threshold": 10, "high_activity_threshold": 10},
            {"max_user_scaling": 0.5},
            {"monitoring_window_ms": 0},
            {"bogus": 1},
            5,
        ),
    ),
}
specific_options: dict[str, Catalogue] = {
    "cache": {
        "max_value_bytes": st.one_of(
            valid(st.integers(min_value=64, max_value=10**8)), bad(0, -1, "1", 1.0)
        ),
        "value_type": good(None, Any, dict[str, int], dict[str, Any]),
    },
    "dedupe": {
        "default_ttl_seconds": st.one_of(
            valid(st.integers(min_value=1, max_value=10**6)), bad(0, -1, "1", 1.5)
        ),
        "max_wait_time_ms": st.one_of(good(0, 100), bad(-1, "0")),
        "poll_interval_ms": st.one_of(good(1, 100), bad(0, -1)),
        "value_type": good(None, int, Any),
    },
    "rate_limit": rate_limit_options,
    "adaptive": adaptive_options,
}
edge_options: dict[str, Catalogue] = {
    # Values a store may refuse when it is built (a configuration error) or accept; accepted,
    # the store must work with them.
    "any": {
        "region": edge(
            st.sampled_from(["", "not a region!", "us_east_1", " us-east-1"]), ConfigurationError
        ),
        "circuit_breaker": edge(
            st.builds(dict, timeout_ms=st.integers(min_value=10**13, max_value=10**30)),
            ConfigurationError,
        ),
    },
    "cache": {
        "value_type": edge(
            st.sampled_from([5, "not a type", object()]), ConfigurationError, TypeError
        ),
    },
    "dedupe": {
        "default_ttl_seconds": edge(
            st.integers(min_value=10**12, max_value=10**20), ConfigurationError
        ),
        "value_type": edge(
            st.sampled_from([5, "not a type", object()]), ConfigurationError, TypeError
        ),
    },
    "rate_limit": {
        "default_config": edge(
            st.builds(dict, window_ms=st.integers(min_value=3 * 10**14, max_value=10**30)),
            ConfigurationError,
        ),
    },
    "adaptive": {
        "default_config": edge(
            st.builds(dict, window_ms=st.integers(min_value=3 * 10**14, max_value=10**30)),
            ConfigurationError,
        ),
        "adaptive_config": edge(
            st.one_of(
                st.builds(
                    dict, monitoring_window_ms=st.integers(min_value=10**13, max_value=10**30)
                ),
                st.builds(
                    dict,
                    sustained_inactivity_threshold_ms=st.integers(
                        min_value=10**13, max_value=10**30
                    ),
                ),
                st.just({"max_user_scaling": math.inf}),
            ),
            ConfigurationError,
        ),
    },
}

STORE_CLASSES: dict[str, tuple[type[Any], type[Any]]] = {
    "cache": (DynamoDBCacheStore, InMemoryCacheStore),
    "dedupe": (DynamoDBDedupeStore, InMemoryDedupeStore),
    "rate_limit": (DynamoDBRateLimitStore, InMemoryRateLimitStore),
    "adaptive": (DynamoDBAdaptiveRateLimitStore, InMemoryAdaptiveRateLimitStore),
}
OPTIONS_MODELS: dict[str, type[Any]] = {
    "cache": CacheStoreOptions,
    "dedupe": DedupeStoreOptions,
    "rate_limit": RateLimitStoreOptions,
    "adaptive": AdaptiveRateLimitStoreOptions,
}
MEMORY_OPTIONS = {
    "cache": ("value_type", "max_value_bytes", "cleanup_interval_ms"),
    "dedupe": ("value_type", "default_ttl_seconds", "max_wait_time_ms", "poll_interval_ms"),
    "rate_limit": ("default_config", "resource_configs"),
    "adaptive": ("default_config", "resource_configs", "adaptive_config"),
}


@dataclass(frozen=True)
class Build:
    """A store to construct: its kind, its options, and how they are passed (``keywords``,
    one ``options`` object, or ``both``, which is refused)."""

    kind: str
    options: dict[str, Arg]
    style: str = "keywords"
    memory: bool = False

    @property
    def store_class(self) -> type[Any]:
        return STORE_CLASSES[self.kind][self.memory]


def construct(build: Build, table: Table) -> Any:
    kwargs = {name: arg.value for name, arg in build.options.items()}
    if build.memory:
        return build.store_class(clock=table.clock, **kwargs)
    value_type = {"value_type": kwargs.pop("value_type")} if "value_type" in kwargs else {}
    if build.style == "keywords":
        return build.store_class(clock=table.clock, **value_type, **kwargs)
    if build.style == "options":
        options = OPTIONS_MODELS[build.kind](**kwargs)
        return build.store_class(clock=table.clock, options=options, **value_type)
    options = OPTIONS_MODELS[build.kind](table_name=table.name, endpoint=table.endpoint)
    return build.store_class(clock=table.clock, options=options, **value_type, **kwargs)


def limit_of(options: dict[str, Arg], resource: str) -> int:
    overrides = options.get("resource_configs", Arg({})).value
    if isinstance(overrides, dict) and resource in overrides:
        return as_config(overrides[resource]).limit
    return as_config(options.get("default_config", Arg({})).value).limit


def exercise(caller: Caller, build: Build, *, absent: bool) -> None:
    """One round trip per method that matters: the store must work (or find no table)."""
    limit = limit_of(build.options, "r") if build.kind in ("rate_limit", "adaptive") else 0
    steps: dict[str, list[tuple[str, tuple[Any, ...], Callable[[Any], bool]]]] = {
        "cache": [
            ("set", ("k", {"v": 1}, 60), lambda value: value is None),
            ("get", ("k",), lambda value: value == {"v": 1}),
            ("delete", ("k",), lambda value: value is None),
        ],
        "dedupe": [
            ("register_or_join", ("k",), lambda value: value.is_owner),
            ("complete", ("k", 1), lambda value: value is True),
            ("wait_for", ("k",), lambda value: value == 1),
        ],
        "rate_limit": [
            ("acquire", ("r",), lambda value: value is (limit > 0)),
            ("get_status", ("r",), lambda value: value.limit == limit),
        ],
        "adaptive": [
            ("acquire", ("r", "user"), lambda value: value is (limit > 0)),
            ("get_status", ("r",), lambda value: value.limit == limit),
        ],
    }
    missing = []
    for method, args, right in steps[build.kind]:
        outcome = caller.call(
            method, *map(Arg, args), passes=(TableNotFoundError,) if absent else ()
        )
        if outcome.ok:
            assert right(outcome.value), f"{caller.label}.{method}{args} = {outcome.value!r}"
        else:
            missing.append(outcome.error)
    assert bool(missing) is absent, f"table absent: {absent}; raised: {missing}"


def check_build(build: Build, table: Table) -> None:
    label = build.store_class.__name__
    RUNS[f"{label}.__init__"] += 1
    args = list(build.options.values())
    refused = tuple(error for arg in args if arg.invalid for error in arg.errors)
    if build.style == "both":
        refused += (ConfigurationError,)
    tolerated = tuple(error for arg in args if arg.edge for error in arg.errors)
    if build.memory and refused:
        refused += (TypeError, ValueError)  # a mapping that is not one, an unknown keyword
    where = f"{label}({build.options!r}, {build.style})"
    outcome = Outcome()
    try:
        outcome.value = construct(build, table)
    except Exception as exc:
        outcome.error = exc
    if outcome.error is not None:
        allowed = refused + tolerated
        assert allowed, f"{where} raised {outcome.error!r}"
        assert matches(outcome.error, allowed), f"{where} raised {outcome.error!r}, not {allowed}"
        return
    assert not refused, f"{where} was built; expected one of {refused}"
    store = outcome.value
    if build.memory:
        caller = Caller(store, label)
    else:
        try:
            caller = Caller(table.watch(store), label, table)
        except Exception:  # no client for these options: the store's own calls will tell
            caller = Caller(store, label)
    try:
        absent = build.options.get("table_name", Arg(table.name)).value == ABSENT_TABLE
        exercise(caller, build, absent=absent and not build.memory)
    finally:
        store.close()
        table.wipe()


def builds(table: Table, *, memory: bool) -> st.SearchStrategy[Build]:
    """Stores of every kind, with options drawn from the catalogues (valid or invalid)."""

    def of_kind(kind: str) -> st.SearchStrategy[Build]:
        specific = specific_options[kind]
        if memory:
            names = MEMORY_OPTIONS[kind]
            catalogue = {name: strategy for name, strategy in specific.items() if name in names}
            if kind == "cache":
                catalogue["cleanup_interval_ms"] = st.one_of(good(0, 10**9), bad(-1, "0"))
            catalogue["unknown_option"] = invalid(st.just(1), TypeError)
            required: Catalogue = {}
            style = st.just("keywords")
        else:
            catalogue = {**common_options(), **specific}
            required = {
                "table_name": st.one_of(
                    good(table.name, table.name, ABSENT_TABLE),
                    bad("ab", "a" * 256, "bad name", "", "tbl#1", 5, None, b"tbl", "é-tbl"),
                ),
                "endpoint": st.one_of(
                    good(table.endpoint, table.endpoint + "/"),
                    bad("ftp://x", "localhost:8000", "", "http://", "http://a b", 5, b"x"),
                ),
            }
            style = st.sampled_from(["keywords", "options", "both"])
        return st.builds(
            Build,
            kind=st.just(kind),
            options=st.fixed_dictionaries(required, optional=catalogue),
            style=style,
            memory=st.just(memory),
        )

    return st.sampled_from(sorted(STORE_CLASSES)).flatmap(of_kind)


EDGE_CASES = [
    (kind, memory, option)
    for kind in sorted(STORE_CLASSES)
    for memory in (False, True)
    for option in sorted(
        {**(edge_options["any"] if kind == "cache" and not memory else {}), **edge_options[kind]}
    )
    if not memory or option in MEMORY_OPTIONS[kind]
]
"""Every (kind, in memory, option) with an edge value to try; the options every DynamoDB
store shares (``StoreOptions``, one binding code path) are tried on the cache store."""


def test_memory_store_constructors_refuse_bad_options_with_typed_errors(table: Table) -> None:
    run_examples(
        "in-memory constructors",
        100,
        CONSTRUCTOR_EXAMPLES,
        lambda build: check_build(build, table),
        builds(table, memory=True),
    )


def test_dynamodb_store_constructors_refuse_bad_options_and_build_working_stores(
    table: Table,
) -> None:
    run_examples(
        "DynamoDB constructors",
        40,
        CONSTRUCTOR_EXAMPLES // 2,
        lambda build: check_build(build, table),
        builds(table, memory=False),
        shrink=False,
    )


@pytest.mark.parametrize(
    ("kind", "memory", "option"),
    EDGE_CASES,
    ids=[f"{STORE_CLASSES[k][m].__name__}-{o}" for k, m, o in EDGE_CASES],
)
def test_options_accepted_at_construction_make_a_working_store(
    kind: str, memory: bool, option: str, table: Table
) -> None:
    """Options at the edge (a region botocore refuses, a timeout or lease past what a socket
    or a datetime takes, windows of millennia, a ``value_type`` that is no type) are refused
    when the store is built, as ``ConfigurationError``, or the store works with them."""
    plain = {} if memory else {"table_name": Arg(table.name), "endpoint": Arg(table.endpoint)}
    strategy = {**edge_options["any"], **edge_options[kind]}[option]
    plans = st.builds(
        Build,
        kind=st.just(kind),
        options=st.fixed_dictionaries({name: st.just(arg) for name, arg in plain.items()}).flatmap(
            lambda base: strategy.map(lambda arg: {**base, option: arg})
        ),
        memory=st.just(memory),
    )
    label = f"{STORE_CLASSES[kind][memory].__name__}({option}=...)"
    run_examples(label, 1, 6, lambda build: check_build(build, table), plans, shrink=False)


# --------------------------------------------------------------------------- counts


def public_methods(store_class: type[Any]) -> list[str]:
    return sorted(
        name
        for name in dir(store_class)
        if not name.startswith("_")
        and callable(getattr(store_class, name))
        and not isinstance(getattr(store_class, name), type)
    )


def test_zz_every_public_method_of_every_store_was_fuzzed() -> None:
    """The examples run per test and the calls made per store method (``-s`` shows them);
    every public method of every store (and its constructor) was called."""
    calls = {name: count for name, count in RUNS.items() if not name.startswith("test:")}
    tests = {name[5:]: count for name, count in RUNS.items() if name.startswith("test:")}
    if not tests:
        pytest.skip("counts the examples of the module's other tests: run it with them")
    width = max(map(len, [*calls, *tests]))
    print("\nexamples run per test (store.method: that method's fuzz test):")
    for name, count in sorted(tests.items()):
        print(f"  {name:<{width}} {count:6d}")
    print("calls made per store method (the method fuzzed, and the calls checking it):")
    for name, count in sorted(calls.items()):
        print(f"  {name:<{width}} {count:6d}")
    print(f"  {'total examples':<{width}} {sum(tests.values()):6d}")
    print(f"  {'total calls':<{width}} {sum(calls.values()):6d}")
    missing = [
        f"{store_class.__name__}.{method}"
        for pair in STORE_CLASSES.values()
        for store_class in pair
        for method in (*public_methods(store_class), "__init__")
        if not calls.get(f"{store_class.__name__}.{method}")
    ]
    assert missing == [], f"never called: {missing}"
