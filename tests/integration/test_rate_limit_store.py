"""DynamoDBRateLimitStore against DynamoDB Local, in one process.

Most tests drive the stores with the shared fake clock, so "now" moves only when a test says
so and every window boundary is exact. Two stores on one table play two processes: each keeps
its own idea of the window (the last state it saw), which is what goes stale between processes.
Request counts come from the ``operation_completed`` events of the store that made the call.
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from pynamodb.connection import Connection

from comic_vine_dynamodb_store.clock import system_clock_ms
from comic_vine_dynamodb_store.errors import ConfigurationError
from comic_vine_dynamodb_store.keys import (
    Entity,
    expiry_sort_key,
    gsi1_partition_key,
    shard_of,
)
from comic_vine_dynamodb_store.models import RateLimitEvent
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore
from comic_vine_dynamodb_store.stores.rate_limit_core import (
    SliceLayout,
    WindowState,
    ring_of,
    window_of_ring,
)
from tests.support import FakeClock

REGION = "us-east-1"

Store = DynamoDBRateLimitStore
MakeStore = Callable[..., Store]


@pytest.fixture
def make_store(make_dynamodb_store: Callable[..., Any]) -> MakeStore:
    """Rate-limit stores on the test's table and fake clock (see ``make_dynamodb_store``)."""
    return functools.partial(make_dynamodb_store, DynamoDBRateLimitStore)


@pytest.fixture
def raw(endpoint: str) -> Any:
    """A plain botocore client: the table as any other program would see it."""
    return Connection(region=REGION, host=endpoint).client


def metered(store: Store, call: Callable[[], Any]) -> tuple[Any, int]:
    """``call()``'s result and the DynamoDB requests ``store`` sent for it."""
    seen: list[signals.OperationEvent] = []

    def record(sender: object, event: signals.OperationEvent) -> None:
        seen.append(event)

    with signals.operation_completed.connected_to(record, sender=store):
        result = call()
    assert all(e.outcome == "success" for e in seen), seen
    return result, sum(e.requests for e in seen)


def events_of(store: Store, call: Callable[[], Any]) -> list[signals.OperationEvent]:
    """The ``operation_completed`` events of ``store`` during ``call()``."""
    seen: list[signals.OperationEvent] = []

    def record(sender: object, event: signals.OperationEvent) -> None:
        seen.append(event)

    with signals.operation_completed.connected_to(record, sender=store):
        call()
    return seen


def raw_window(raw: Any, table: str, resource: str) -> dict[str, Any] | None:
    """The resource's window item as DynamoDB holds it (consistent read), or None."""
    pk, sk = RateLimitEvent.key_of("", resource)
    response = raw.get_item(
        TableName=table, Key={"PK": {"S": pk}, "SK": {"S": sk}}, ConsistentRead=True
    )
    item: dict[str, Any] | None = response.get("Item")
    return item


def raw_total(raw: Any, table: str, resource: str) -> int:
    """Every admission the window item holds: the current slice plus its history."""
    item = raw_window(raw, table, resource)
    assert item is not None, resource
    return sum(int(count["N"]) for count in item["Counts"]["L"])


def put_raw_window(
    raw: Any,
    table: str,
    resource: str,
    *,
    window_ms: int,
    current_slice: int,
    current: int,
    history: list[int],
    expires_at_ms: int,
    ttl_s: int,
) -> None:
    """Write a window item with the plain client, as another program (or an old process)
    would have left it."""
    layout = SliceLayout.for_window(window_ms)
    pk, sk = RateLimitEvent.key_of("", resource)
    raw.put_item(
        TableName=table,
        Item={
            "PK": {"S": pk},
            "SK": {"S": sk},
            "WindowMs": {"N": str(window_ms)},
            "SliceMs": {"N": str(layout.slice_ms)},
            "CurSlice": {"N": str(current_slice)},
            "Counts": {
                "L": [
                    {"N": str(count)}
                    for count in ring_of(
                        WindowState(current_slice, current, tuple(history)), layout
                    )
                ]
            },
            "ExpiresAt": {"N": str(expires_at_ms)},
            "TTL": {"N": str(ttl_s)},
            "GSI1PK": {"S": gsi1_partition_key(Entity.RATE_LIMIT, "", shard_of(pk))},
            "GSI1SK": {"S": expiry_sort_key(expires_at_ms)},
        },
    )


# --------------------------------------------------------------------------- wait times


def test_waiting_the_wait_time_lets_exactly_one_more_through(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(default_config={"limit": 3, "window_ms": 1000})
    refusals: list[signals.RateLimitedEvent] = []

    def on_refusal(sender: object, event: signals.RateLimitedEvent) -> None:
        refusals.append(event)

    # Three admissions 100 ms apart, so they leave the window one at a time.
    for _ in range(3):
        assert store.acquire("issues")
        clock.advance(100)
    with signals.rate_limited.connected_to(on_refusal, sender=store):
        for _ in range(3):  # each admitted slot frees up on its own
            assert not store.acquire("issues")
            wait = store.get_wait_time("issues")
            assert 0 < wait <= 1000
            assert refusals[-1].wait_ms == wait  # the refusal's own estimate agrees

            clock.advance(wait - 1)  # a millisecond early: still full
            assert not store.acquire("issues")
            assert store.get_wait_time("issues") == 1
            clock.advance(1)  # on time: exactly one more
            assert store.get_wait_time("issues") == 0
            assert store.acquire("issues")
            assert not store.acquire("issues")
    assert [e.resource for e in refusals] == ["issues"] * 9


def test_waiting_the_wait_time_on_the_real_clock(make_store: MakeStore) -> None:
    store = make_store(clock=system_clock_ms, default_config={"limit": 2, "window_ms": 1000})
    assert store.acquire("volumes")
    time.sleep(0.3)  # the second admission lands in a later slice than the first
    assert store.acquire("volumes")
    assert not store.acquire("volumes")
    wait = store.get_wait_time("volumes")
    assert 0 < wait <= 1000
    time.sleep(wait / 1000)
    assert store.acquire("volumes")
    assert not store.acquire("volumes")  # the second admission is still counted


# --------------------------------------------------------------------------- costs


def test_acquire_costs_one_request_and_a_refusal_from_known_counts_none(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(default_config={"limit": 3, "window_ms": 60_000})
    slice_ms = SliceLayout.for_window(60_000).slice_ms
    # The first acquire creates the window, the next ones add to it, one request each.
    for _ in range(2):
        assert metered(store, lambda: store.acquire("issues")) == (True, 1)
    # A new slice: the roll-over and the admission are one compare-and-set.
    clock.advance(slice_ms)
    assert metered(store, lambda: store.acquire("issues")) == (True, 1)
    # Full, and the store knows it: refused without asking DynamoDB.
    for _ in range(5):
        assert events_of(store, lambda: store.acquire("issues")) == []
        assert not store.acquire("issues")
    # Once the known counts are a slice old, one read refreshes them (another process may
    # have reset the window); then refusals are free again for a slice.
    clock.advance(slice_ms)
    refreshed = events_of(store, lambda: store.acquire("issues"))
    assert [(e.operation, e.requests) for e in refreshed] == [("acquire", 1)]
    assert events_of(store, lambda: store.acquire("issues")) == []


def test_steady_state_acquires_are_one_update_each(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(default_config={"limit": 10_000, "window_ms": 60_000})
    slice_ms = SliceLayout.for_window(60_000).slice_ms
    assert store.acquire("characters")

    def acquire_while_time_passes() -> None:
        for _ in range(200):
            assert store.acquire("characters")
            clock.advance(slice_ms // 4)

    events = events_of(store, acquire_while_time_passes)
    # 200 calls over 50 slices: in-slice admissions and roll-overs alike, one request each.
    assert [(e.operation, e.requests, e.outcome) for e in events] == [
        ("acquire", 1, "success")
    ] * 200


def test_reads_cost_one_request_each_and_record_nothing(
    make_store: MakeStore, raw: Any, table_name: str
) -> None:
    store = make_store(default_config={"limit": 2, "window_ms": 60_000})
    assert metered(store, lambda: store.can_proceed("publishers")) == (True, 1)  # no item yet
    assert raw_window(raw, table_name, "publishers") is None
    assert store.acquire("publishers")
    assert metered(store, lambda: store.can_proceed("publishers")) == (True, 1)
    assert raw_total(raw, table_name, "publishers") == 1  # can_proceed admitted nothing
    assert store.acquire("publishers")
    assert metered(store, lambda: store.can_proceed("publishers")) == (False, 1)
    status, requests = metered(store, lambda: store.get_status("publishers"))
    assert (status.remaining, status.limit, requests) == (0, 2, 1)
    wait, requests = metered(store, lambda: store.get_wait_time("publishers"))
    assert wait > 0
    assert requests == 1
    for event in events_of(store, lambda: store.can_proceed("publishers")):
        assert (event.operation, event.requests) == ("can_proceed", 1)
        assert event.consumed_capacity > 0


def test_an_acquire_consumes_the_same_capacity_for_limit_10_and_limit_10000(
    make_store: MakeStore, raw: Any, table_name: str, clock: FakeClock
) -> None:
    window_ms = 60_000
    layout = SliceLayout.for_window(window_ms)
    grid = RateLimitEvent.INDEX_GRID_MS
    clock.advance(grid - clock.now_ms % grid + 1)  # the test stays in one index step
    store = make_store(
        resource_configs={
            "small": {"limit": 10, "window_ms": window_ms},
            "big": {"limit": 10_000, "window_ms": window_ms},
            "big-and-busy": {"limit": 10_000, "window_ms": window_ms},
        }
    )

    def capacities(resource: str) -> dict[str, list[float]]:
        """Capacity per acquire: creating the window, in its slice, rolling to a new one."""
        phases: dict[str, list[float]] = {"create": [], "in-slice": [], "roll-over": []}
        if raw_window(raw, table_name, resource) is None:
            phases["create"] = [e.consumed_capacity for e in events_of(store, acquire(resource))]
        else:
            store.can_proceed(resource)  # learn the window another process left
        for _ in range(4):
            phases["in-slice"] += [e.consumed_capacity for e in events_of(store, acquire(resource))]
        clock.advance(layout.slice_ms)
        phases["roll-over"] = [e.consumed_capacity for e in events_of(store, acquire(resource))]
        return phases

    def acquire(resource: str) -> Callable[[], None]:
        def call() -> None:
            assert store.acquire(resource), resource

        return call

    small, big = capacities("small"), capacities("big")
    assert small == big
    assert all(c > 0 for phase in small.values() for c in phase), small
    # Rolling to a new slice moves the expiry, but not the index key within the step.
    assert small["roll-over"] == small["in-slice"][:1]

    # 9,790 admissions already counted (a full history of large counters): the item, and so
    # the capacity, is no bigger.
    now = clock.now_ms
    current_slice = layout.slice_of(now)
    expires = (current_slice + 1) * layout.slice_ms + window_ms
    put_raw_window(
        raw,
        table_name,
        "big-and-busy",
        window_ms=window_ms,
        current_slice=current_slice,
        current=190,
        history=[160] * layout.history_slices,
        expires_at_ms=expires,
        ttl_s=math.ceil(expires / 1000),
    )
    busy = capacities("big-and-busy")
    assert busy["in-slice"] == small["in-slice"]
    assert busy["roll-over"] == small["roll-over"]
    item = raw_window(raw, table_name, "big-and-busy")
    assert item is not None
    window = window_of_ring(
        tuple(int(count["N"]) for count in item["Counts"]["L"]), int(item["CurSlice"]["N"])
    )
    assert window.current == 1
    assert list(window.history[-2:]) == [160, 194]


# --------------------------------------------------------------------------- two processes


def test_a_stale_store_learns_the_rolled_window_from_its_failed_write(
    make_store: MakeStore, raw: Any, table_name: str, clock: FakeClock
) -> None:
    config = {"limit": 4, "window_ms": 1000}
    slice_ms = SliceLayout.for_window(1000).slice_ms
    first, stale = make_store(default_config=config), make_store(default_config=config)
    assert metered(first, lambda: first.acquire("story-arcs")) == (True, 1)
    assert metered(stale, lambda: stale.can_proceed("story-arcs")) == (True, 1)

    clock.advance(slice_ms)  # first rolls the window on; stale still knows the old slice
    assert metered(first, lambda: first.acquire("story-arcs")) == (True, 1)
    assert metered(first, lambda: first.acquire("story-arcs")) == (True, 1)
    # stale's roll-over fails its compare-and-set, returns the window, and the admission
    # goes into first's slice: two requests.
    assert metered(stale, lambda: stale.acquire("story-arcs")) == (True, 2)
    assert raw_total(raw, table_name, "story-arcs") == 4
    # Full now. stale knows it; first's view (two in its slice) is stale, its admission's
    # condition fails and tells it so: one request, refused.
    assert metered(stale, lambda: stale.acquire("story-arcs")) == (False, 0)
    assert metered(first, lambda: first.acquire("story-arcs")) == (False, 1)
    assert metered(first, lambda: first.acquire("story-arcs")) == (False, 0)
    assert raw_total(raw, table_name, "story-arcs") == 4


def test_a_stale_store_never_over_admits_into_a_window_filled_elsewhere(
    make_store: MakeStore, raw: Any, table_name: str, clock: FakeClock
) -> None:
    config = {"limit": 3, "window_ms": 1000}
    slice_ms = SliceLayout.for_window(1000).slice_ms
    first, stale = make_store(default_config=config), make_store(default_config=config)
    assert first.acquire("teams")
    assert first.acquire("teams")
    assert metered(stale, lambda: stale.can_proceed("teams")) == (True, 1)  # knows of 2

    clock.advance(5 * slice_ms)
    assert metered(first, lambda: first.acquire("teams")) == (True, 1)  # full: 3 counted
    # stale believes there is room for one; its roll-over fails and returns the full window.
    assert metered(stale, lambda: stale.acquire("teams")) == (False, 1)
    assert metered(stale, lambda: stale.acquire("teams")) == (False, 0)
    assert raw_total(raw, table_name, "teams") == 3

    # The first two leave: each store gets through once more, in at most two requests.
    clock.advance(stale.get_wait_time("teams"))
    assert metered(stale, lambda: stale.acquire("teams")) == (True, 1)  # rolls the window
    assert metered(first, lambda: first.acquire("teams")) == (True, 2)  # learns, admits
    assert metered(stale, lambda: stale.acquire("teams")) == (False, 1)  # learns it is full
    assert metered(first, lambda: first.acquire("teams")) == (False, 0)
    assert raw_total(raw, table_name, "teams") == 5  # 2 left the count, 3 counted


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_three_stores_in_random_turns_keep_the_window_exactly(
    make_store: MakeStore, clock: FakeClock, seed: int
) -> None:
    """Any interleaving of three stores' calls and of time: never more than the limit in any
    window, never refused unless the window and one slice before it held the limit, and never
    more than two requests per call."""
    limit, window_ms = 5, 1000
    layout = SliceLayout.for_window(window_ms)
    stores = [make_store(default_config={"limit": limit, "window_ms": window_ms}) for _ in "abc"]
    rng = random.Random(seed)
    admitted: list[int] = []  # fake-clock instants of the admissions
    for step in range(300):
        clock.advance(rng.choice((0, 0, 0, 1, 5, layout.slice_ms, 40, 150, 400)))
        store = rng.choice(stores)
        now = clock.now_ms
        in_window = sum(1 for t in admitted if now - window_ms < t <= now)
        recent = sum(1 for t in admitted if now - window_ms - layout.slice_ms < t <= now)
        if rng.random() < 0.1:
            allowed, requests = metered(store, functools.partial(store.can_proceed, "people"))
            assert requests == 1
            assert in_window < limit if allowed else recent >= limit, f"step {step}"
            continue
        ok, requests = metered(store, functools.partial(store.acquire, "people"))
        assert requests <= 2, f"step {step}: {requests} requests"
        if ok:
            admitted.append(now)
            assert in_window + 1 <= limit, f"step {step}: {in_window + 1} admitted in one window"
        else:
            assert recent >= limit, f"step {step}: refused with {recent} in the window"
    assert len(admitted) >= 2 * limit  # the window filled and freed up several times


# --------------------------------------------------------------------------- stored state


def test_a_dead_window_written_directly_counts_as_empty(
    make_store: MakeStore, raw: Any, table_name: str, clock: FakeClock
) -> None:
    limit, window_ms = 3, 5000
    layout = SliceLayout.for_window(window_ms)
    old_slice = layout.slice_of(clock.now_ms - 3_600_000)  # an hour ago
    old_expiry = (old_slice + 1) * layout.slice_ms + window_ms
    for resource in ("read-first", "acquire-first"):
        put_raw_window(
            raw,
            table_name,
            resource,
            window_ms=window_ms,
            current_slice=old_slice,
            current=limit,
            history=[limit] * layout.history_slices,
            expires_at_ms=old_expiry,
            ttl_s=clock.now_ms // 1000 + 86_400,  # DynamoDB's reaper would not touch it yet
        )
    store = make_store(default_config={"limit": limit, "window_ms": window_ms})

    assert store.can_proceed("read-first")
    assert store.get_status("read-first").remaining == limit
    assert store.get_wait_time("read-first") == 0
    assert metered(store, lambda: store.acquire("read-first")) == (True, 1)  # rolls it on

    assert metered(store, lambda: store.acquire("acquire-first")) == (True, 1)  # replaces it
    item = raw_window(raw, table_name, "acquire-first")
    assert item is not None
    assert int(item["ExpiresAt"]["N"]) > clock.now_ms
    assert int(item["TTL"]["N"]) >= int(item["ExpiresAt"]["N"]) / 1000

    for resource in ("read-first", "acquire-first"):
        assert store.acquire(resource)
        assert store.acquire(resource)
        assert not store.acquire(resource), resource
        assert raw_total(raw, table_name, resource) == limit, resource


def test_changing_the_window_resets_the_counters_and_changing_the_limit_does_not(
    make_store: MakeStore, raw: Any, table_name: str
) -> None:
    store = make_store(default_config={"limit": 2, "window_ms": 1000})
    other = make_store(default_config={"limit": 2, "window_ms": 1000})  # still the old window
    assert store.acquire("series")
    assert store.acquire("series")
    assert not store.acquire("series")

    store.set_resource_config("series", {"limit": 3, "window_ms": 1000})  # same window
    assert store.acquire("series")
    assert not store.acquire("series")
    assert raw_total(raw, table_name, "series") == 3

    store.set_resource_config("series", {"limit": 2, "window_ms": 2000})  # a new window
    assert store.get_resource_config("series").window_ms == 2000
    assert store.acquire("series")
    assert store.acquire("series")
    assert not store.acquire("series")
    item = raw_window(raw, table_name, "series")
    assert item is not None
    assert int(item["WindowMs"]["N"]) == 2000
    assert raw_total(raw, table_name, "series") == 2

    # A process still on the old window starts it afresh again (documented).
    assert other.acquire("series")
    item = raw_window(raw, table_name, "series")
    assert item is not None
    assert int(item["WindowMs"]["N"]) == 1000
    assert raw_total(raw, table_name, "series") == 1


def test_reset_forgets_every_admission(make_store: MakeStore, raw: Any, table_name: str) -> None:
    store = make_store(default_config={"limit": 2, "window_ms": 60_000})
    assert store.acquire("locations")
    assert store.acquire("locations")
    assert not store.acquire("locations")
    assert metered(store, lambda: store.reset("locations")) == (None, 1)
    assert raw_window(raw, table_name, "locations") is None
    assert store.get_status("locations").remaining == 2
    assert store.acquire("locations")
    assert store.acquire("locations")
    assert not store.acquire("locations")
    store.reset("never-used")  # nothing to forget: no error
    assert raw_window(raw, table_name, "never-used") is None


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"limit": -1}, "limit"),
        ({"window_ms": 0}, "window_ms"),
        ({"window_ms": -1000}, "window_ms"),
    ],
)
def test_invalid_configs_are_refused_at_construction_and_when_set(
    endpoint: str, table_name: str, config: dict[str, int], field: str
) -> None:
    settings: dict[str, Any] = {"table_name": table_name, "endpoint": endpoint, "region": REGION}
    with pytest.raises(ConfigurationError) as default:
        DynamoDBRateLimitStore(**settings, default_config=config)
    assert default.value.field == f"default_config.{field}"
    with pytest.raises(ConfigurationError) as per_resource:
        DynamoDBRateLimitStore(**settings, resource_configs={"issues": config})
    assert per_resource.value.field == f"resource_configs.issues.{field}"

    store = DynamoDBRateLimitStore(
        **settings, resource_configs={"issues": {"limit": 7, "window_ms": 1000}}
    )
    with store, pytest.raises(ConfigurationError) as at_run_time:
        store.set_resource_config("issues", config)
    assert at_run_time.value.field == field
    assert store.get_resource_config("issues").limit == 7  # unchanged


def test_a_zero_limit_admits_nothing_and_asks_nobody(make_store: MakeStore) -> None:
    store = make_store(default_config={"limit": 0, "window_ms": 1000})
    assert events_of(store, lambda: store.acquire("issues")) == []
    assert not store.acquire("issues")
    assert not store.can_proceed("issues")
    assert store.get_wait_time("issues") == 1000
