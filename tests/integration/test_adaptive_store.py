"""DynamoDBAdaptiveRateLimitStore against DynamoDB Local, in one process.

The stores run on the shared fake clock, so slice boundaries and recomputations happen exactly
when a test moves time. Two or three stores on one table play as many processes: each keeps its
own idea of the state (what its last request returned), which is what goes stale between
processes. Request counts come from the store's ``operation_completed`` events.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from pynamodb.connection import Connection

from comic_vine_dynamodb_store.config import AdaptiveConfig
from comic_vine_dynamodb_store.errors import ConfigurationError, InvalidKeyError
from comic_vine_dynamodb_store.models import AdaptiveStats
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.serialization import item_size
from comic_vine_dynamodb_store.stores.adaptive import DynamoDBAdaptiveRateLimitStore
from comic_vine_dynamodb_store.stores.adaptive_state import AdaptiveLayout
from comic_vine_dynamodb_store.stores.contracts import Priority
from tests.support import FakeClock

REGION = "us-east-1"
MINUTE_MS = 60_000
SLICE_MS = 1_000  # of a 60 s window
RECALC_MS = AdaptiveConfig().recalculation_interval_ms

Store = DynamoDBAdaptiveRateLimitStore
MakeStore = Callable[..., Store]


@pytest.fixture
def make_store(make_dynamodb_store: Callable[..., Any]) -> MakeStore:
    """Adaptive stores on the test's table and fake clock (see ``make_dynamodb_store``)."""
    return functools.partial(make_dynamodb_store, DynamoDBAdaptiveRateLimitStore)


@pytest.fixture
def raw(endpoint: str) -> Any:
    """A plain botocore client: the table as any other program would see it."""
    return Connection(region=REGION, host=endpoint).client


def events_of(store: Store, call: Callable[[], Any]) -> tuple[Any, list[signals.OperationEvent]]:
    """``call()``'s result and the ``operation_completed`` events of ``store`` during it."""
    seen: list[signals.OperationEvent] = []

    def record(sender: object, event: signals.OperationEvent) -> None:
        seen.append(event)

    with signals.operation_completed.connected_to(record, sender=store):
        result = call()
    return result, seen


def metered(store: Store, call: Callable[[], Any]) -> tuple[Any, int]:
    """``call()``'s result and the DynamoDB requests ``store`` sent for it."""
    result, seen = events_of(store, call)
    assert all(e.outcome == "success" for e in seen), seen
    return result, sum(e.requests for e in seen)


def raw_item(raw: Any, table: str, resource: str) -> dict[str, Any] | None:
    """The resource's item as DynamoDB holds it (consistent read), or None."""
    pk, sk = AdaptiveStats.key_of("", resource)
    got = raw.get_item(TableName=table, Key={"PK": {"S": pk}, "SK": {"S": sk}}, ConsistentRead=True)
    item: dict[str, Any] | None = got.get("Item")
    return item


def counters(raw: Any, table: str, resource: str) -> tuple[int, int]:
    """(every admission, background admissions) the item holds, history included."""
    item = raw_item(raw, table, resource)
    assert item is not None
    total = sum(int(n["N"]) for n in item["Tot"]["L"])
    background = sum(int(n["N"]) for n in item["Bg"]["L"])
    return total, background


# --------------------------------------------------------------------------- costs


def test_steady_state_acquires_cost_one_request_for_either_priority(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(
        default_config={"limit": 10_000, "window_ms": MINUTE_MS},
        # Busy users would pause background work; here every call must be admitted.
        adaptive_config={"background_pause_on_increasing_trend": False},
    )
    assert metered(store, lambda: store.acquire("issues")) == (True, 1)  # creates the item
    rng = random.Random(7)
    costs = []
    for _ in range(300):
        priority: Priority = rng.choice(["user", "background"])
        costs.append(metered(store, functools.partial(store.acquire, "issues", priority)))
        clock.advance(250)  # 75 s: every rate slice rolls, the split is recomputed twice
    assert costs == [(True, 1)] * 300


def test_refusals_from_known_state_are_free_and_a_stale_peer_learns_in_one_request(
    make_store: MakeStore, clock: FakeClock
) -> None:
    config = {"limit": 3, "window_ms": MINUTE_MS}
    store, peer = make_store(default_config=config), make_store(default_config=config)
    assert metered(peer, lambda: peer.acquire("volumes", "user")) == (True, 1)
    for _ in range(2):
        assert metered(store, lambda: store.acquire("volumes", "user"))[0]
    # Full, and the store knows it: refused without a request, for either priority.
    assert metered(store, lambda: store.acquire("volumes", "user")) == (False, 0)
    assert metered(store, lambda: store.acquire("volumes", "background")) == (False, 0)
    # The peer last saw one admission: its admission's condition fails and returns the state.
    assert metered(peer, lambda: peer.acquire("volumes", "user")) == (False, 1)
    assert metered(peer, lambda: peer.acquire("volumes", "user")) == (False, 0)
    # Known state a slice old is refreshed by one read before refusing.
    clock.advance(SLICE_MS)
    assert metered(store, lambda: store.acquire("volumes", "user")) == (False, 1)


def test_reads_cost_one_request_and_write_the_split_only_when_it_is_due(
    make_store: MakeStore, raw: Any, table_name: str, clock: FakeClock
) -> None:
    store, peer = make_store(), make_store()
    # Nothing stored: every process computes the same fresh split, nothing is written.
    status, requests = metered(store, lambda: store.get_status("people"))
    assert requests == 1
    assert status.adaptive is not None
    assert (status.adaptive.user_reserved, status.adaptive.background_max) == (60, 140)
    assert raw_item(raw, table_name, "people") is None
    for _ in range(20):
        assert store.acquire("people", "background")
    assert metered(store, lambda: store.can_proceed("people", "user")) == (True, 1)
    # Due: the first reader recomputes and writes the split; the peer then reads that one.
    clock.advance(RECALC_MS)
    status, requests = metered(store, lambda: store.get_status("people"))
    assert requests == 2
    assert status.adaptive is not None
    assert (status.adaptive.user_reserved, status.adaptive.reason) == (5, "background traffic only")
    peer_status, peer_requests = metered(peer, lambda: peer.get_status("people"))
    assert peer_requests == 1
    assert peer_status.adaptive == status.adaptive
    assert metered(peer, lambda: peer.get_wait_time("people", "background")) == (0, 1)


def test_one_conditional_write_decides_who_recomputes_the_split(
    make_store: MakeStore, raw: Any, table_name: str, clock: FakeClock
) -> None:
    stores = [make_store() for _ in range(3)]
    for store in stores:
        assert store.acquire("series", "background")
    clock.advance(RECALC_MS)
    for _ in range(3):
        assert stores[0].acquire("series", "user")  # recomputes (due) then adds in place
    item = raw_item(raw, table_name, "series")
    assert item is not None
    computed_at = int(item["ComputedAt"]["N"])
    assert computed_at == clock.now_ms
    # The others still hold the old split: their writes fail on the new one and adopt it.
    clock.advance(10)
    for store in stores[1:]:
        assert metered(store, lambda s=store: s.acquire("series", "background")) == (True, 2)  # type: ignore[misc]
    item = raw_item(raw, table_name, "series")
    assert item is not None
    assert int(item["ComputedAt"]["N"]) == computed_at
    statuses = {store.get_status("series").adaptive for store in stores}
    assert len(statuses) == 1


def test_a_write_costs_the_same_capacity_with_a_full_history_as_with_an_empty_one(
    make_store: MakeStore, raw: Any, table_name: str, clock: FakeClock
) -> None:
    store = make_store(
        default_config={"limit": 100_000, "window_ms": MINUTE_MS},
        adaptive_config={"background_pause_on_increasing_trend": False},
    )
    grid = AdaptiveStats.INDEX_GRID_MS
    clock.advance(grid - clock.now_ms % grid)  # the test's minutes stay in one index step
    assert store.acquire("characters", "user")
    _, events = events_of(store, lambda: store.acquire("characters", "user"))
    empty = [e.consumed_capacity for e in events]
    assert empty[0] > 0
    rng = random.Random(3)
    for _ in range(200):  # busy slices over the whole rate window and part of the activity one
        for _ in range(rng.randint(0, 3)):
            store.acquire("characters", rng.choice(["user", "background"]))
        clock.advance(SLICE_MS)
    for _ in range(97):
        store.acquire("characters", "background")  # large counters in the current slice
    for priority in ("user", "background"):
        _, events = events_of(store, lambda p=priority: store.acquire("characters", p))  # type: ignore[misc]
        assert [e.consumed_capacity for e in events] == empty
    clock.advance(SLICE_MS)  # a roll-over rewrites the whole item: still the same
    _, events = events_of(store, lambda: store.acquire("characters", "user"))
    assert [e.consumed_capacity for e in events] == empty
    item = raw_item(raw, table_name, "characters")
    assert item is not None
    assert item_size(item) < 1024


def test_the_index_expiry_moves_once_per_step_and_only_that_write_costs_one_unit_more(
    make_store: MakeStore, raw: Any, table_name: str, clock: FakeClock
) -> None:
    store = make_store(default_config={"limit": 100_000, "window_ms": MINUTE_MS})
    grid = AdaptiveStats.INDEX_GRID_MS
    clock.advance(grid - clock.now_ms % grid + 1)  # just after a step starts
    assert store.acquire("characters", "user")
    _, events = events_of(store, lambda: store.acquire("characters", "user"))
    [same_step] = [e.consumed_capacity for e in events]
    costs: list[float] = []
    keys: set[str] = set()
    for _ in range(grid // MINUTE_MS):  # a whole step, a minute at a time
        clock.advance(MINUTE_MS)
        _, events = events_of(store, lambda: store.acquire("characters", "user"))
        costs += [e.consumed_capacity for e in events]
        item = raw_item(raw, table_name, "characters")
        assert item is not None
        keys.add(item["GSI1SK"]["S"])
        exact = int(item["ExpiresAt"]["N"])
        indexed = int(item["GSI1SK"]["S"])
        assert exact <= indexed < exact + grid  # found by cleanup after, never before, expiry
        assert exact <= int(item["TTL"]["N"]) * 1000 < exact + grid + 1000
    # Every write moved ExpiresAt; the index key moved once, and only that write paid for it.
    assert len(keys) == 2
    assert sorted(costs) == [same_step] * (len(costs) - 1) + [same_step + 1]


# --------------------------------------------------------------------------- admission


def test_users_take_the_whole_room_and_background_stops_at_its_share(
    make_store: MakeStore, raw: Any, table_name: str
) -> None:
    store = make_store(default_config={"limit": 20, "window_ms": MINUTE_MS})
    # Fresh split for 20: users 6 (30 %, above min_user_reserved 5), background 14.
    admitted = sum(store.acquire("teams", "background") for _ in range(20))
    assert admitted == 14
    assert counters(raw, table_name, "teams") == (14, 14)
    assert sum(store.acquire("teams", "user") for _ in range(10)) == 6
    assert counters(raw, table_name, "teams") == (20, 14)
    assert store.get_status("teams").remaining == 0


def test_record_counts_beyond_the_limit_and_acquire_then_refuses(
    make_store: MakeStore, raw: Any, table_name: str
) -> None:
    store = make_store(default_config={"limit": 2, "window_ms": MINUTE_MS})
    for priority in ("user", "background", "background"):
        store.record("locations", priority)
    assert counters(raw, table_name, "locations") == (3, 2)
    assert not store.acquire("locations", "user")
    assert store.get_status("locations").remaining == 0


def test_racing_threads_admit_exactly_the_limit(make_store: MakeStore) -> None:
    limit = 30
    stores = [make_store(default_config={"limit": limit, "window_ms": MINUTE_MS}) for _ in range(4)]
    admitted: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def run(store: Store, priority: str) -> None:
        barrier.wait(timeout=30)
        for _ in range(12):
            ok = store.acquire("concepts", priority)  # type: ignore[arg-type]
            with lock:
                admitted.append(ok)

    threads = [
        threading.Thread(target=run, args=(stores[i % 4], "user" if i % 2 else "background"))
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(admitted) == 96
    # The clock is frozen: one instant, so the sliced window is exact.
    assert sum(admitted) == limit
    assert stores[0].get_status("concepts").remaining == 0


def test_a_reset_by_a_peer_is_seen_within_a_slice(
    make_store: MakeStore, raw: Any, table_name: str, clock: FakeClock
) -> None:
    config = {"limit": 2, "window_ms": MINUTE_MS}
    store, peer = make_store(default_config=config), make_store(default_config=config)
    assert store.acquire("objects", "user")
    assert store.acquire("objects", "user")
    assert not store.acquire("objects", "user")
    peer.reset("objects")
    assert raw_item(raw, table_name, "objects") is None
    clock.advance(SLICE_MS)
    assert metered(store, lambda: store.acquire("objects", "user")) == (True, 2)  # read, create
    assert counters(raw, table_name, "objects") == (1, 0)


def test_another_window_restarts_the_counters_and_another_limit_recomputes_the_split(
    make_store: MakeStore, raw: Any, table_name: str, clock: FakeClock
) -> None:
    store = make_store(default_config={"limit": 200, "window_ms": MINUTE_MS})
    for _ in range(5):
        assert store.acquire("episodes", "user")
    clock.advance(RECALC_MS)
    status = store.get_status("episodes")
    assert status.adaptive is not None
    assert status.adaptive.recent_user_activity == 5
    store.set_resource_config("episodes", {"limit": 200, "window_ms": 30_000})
    assert store.acquire("episodes", "user")
    assert counters(raw, table_name, "episodes") == (1, 0)  # rate window restarted
    status = store.get_status("episodes")
    assert status.adaptive is not None
    assert status.adaptive.recent_user_activity == 5  # activity kept, split not yet due
    store.set_resource_config("episodes", {"limit": 100, "window_ms": 30_000})
    status = store.get_status("episodes")
    assert status.adaptive is not None
    assert status.adaptive.recent_user_activity == 6  # recomputed at once for the new limit
    assert status.adaptive.user_reserved + status.adaptive.background_max == 100


def test_users_idle_past_the_sustained_threshold_get_no_reservation_but_still_room(
    make_store: MakeStore, raw: Any, table_name: str, clock: FakeClock
) -> None:
    store = make_store(default_config={"limit": 50, "window_ms": MINUTE_MS})
    assert store.acquire("arcs", "user")
    # 31 minutes of background traffic only keep the item alive.
    for _ in range(31):
        clock.advance(MINUTE_MS)
        assert store.acquire("arcs", "background")
    status = store.get_status("arcs")
    assert status.adaptive is not None
    assert (status.adaptive.user_reserved, status.adaptive.background_max) == (0, 50)
    assert status.adaptive.reason == "users inactive for a sustained period"
    assert store.acquire("arcs", "user")  # the total has room: admitted at once


def test_state_expires_after_its_retention_and_cleanup_removes_it(
    make_store: MakeStore, raw: Any, table_name: str, clock: FakeClock
) -> None:
    store = make_store(default_config={"limit": 5, "window_ms": MINUTE_MS})
    assert store.acquire("movies", "user")
    item = raw_item(raw, table_name, "movies")
    assert item is not None
    layout = AdaptiveLayout.of(MINUTE_MS, AdaptiveConfig())
    expires = int(item["ExpiresAt"]["N"])
    assert expires - clock.now_ms >= layout.retention_ms
    assert expires - clock.now_ms <= layout.retention_ms + layout.activity.slice_ms
    stats = store.get_stats()
    assert (stats.total_resources, stats.active_resources, stats.total_requests) == (1, 1, 1)
    clock.advance(MINUTE_MS + SLICE_MS)
    stats = store.get_stats()
    assert (stats.total_resources, stats.active_resources, stats.total_requests) == (1, 0, 0)
    assert store.cleanup() == 0
    clock.now_ms = expires
    assert store.cleanup() == 1
    assert raw_item(raw, table_name, "movies") is None


def test_bad_input_is_refused_before_any_request(
    make_store: MakeStore, raw: Any, table_name: str
) -> None:
    store = make_store()
    for call in (store.acquire, store.record, store.can_proceed, store.get_wait_time):
        with pytest.raises(ConfigurationError) as info:
            metered(store, lambda c=call: c("issues", "urgent"))  # type: ignore[misc]
        assert info.value.field == "priority"
        with pytest.raises(InvalidKeyError):
            call("", "user")
    _, requests = metered(store, lambda: None)
    assert requests == 0
    assert raw_item(raw, table_name, "issues") is None
    with pytest.raises(ConfigurationError):
        make_store(adaptive_config={"moderate_activity_threshold": 10})
