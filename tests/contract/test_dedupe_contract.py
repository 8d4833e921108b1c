"""The dedupe contract, one suite run on every implementation: in memory and on DynamoDB Local.

Each test states behaviour a user relies on and runs it against ``InMemoryDedupeStore`` and
``DynamoDBDedupeStore`` alike, so the in-memory twin cannot drift from the real store. A
"peer" is a second caller of the same jobs: another store instance on the same table for
DynamoDB (another process, in production), the same store for the in-memory twin (which is
shared by threads, not processes).

Leases and retention are driven by the shared fake clock, so no test sleeps for a lease; the
waits that do take real time use small ``max_wait_time_ms`` / ``poll_interval_ms``.
"""

from __future__ import annotations

import json
import math
import random
import string
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeAlias

import pytest
from pydantic import BaseModel

from comic_vine_dynamodb_store.errors import (
    ConfigurationError,
    InvalidKeyError,
    ItemTooLargeError,
    StoreClosedError,
)
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.contracts import DedupeStats, DedupeStore, Registration
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore
from comic_vine_dynamodb_store.stores.memory_dedupe import InMemoryDedupeStore
from tests.conftest import DYNAMODB_TARGETS, dynamodb_target
from tests.support import FakeClock

REGION = "us-east-1"
SECOND_MS = 1000
LEASE_S = 300  # the default default_ttl_seconds
LEASE_MS = LEASE_S * SECOND_MS

# Waits that must end by themselves stay short; waits that must be interrupted (by another
# thread finishing the job) get a generous limit, so a slow machine cannot fail them.
SHORT_WAIT: dict[str, Any] = {"max_wait_time_ms": 200, "poll_interval_ms": 10}
LONG_WAIT: dict[str, Any] = {"max_wait_time_ms": 10_000, "poll_interval_ms": 10}

AnyStore: TypeAlias = InMemoryDedupeStore[Any] | DynamoDBDedupeStore[Any]


class Issue(BaseModel):
    id: int
    name: str
    tags: list[str]


class Stores:
    """Makes stores of the implementation under test, and peers of a store."""

    def __init__(
        self, kind: str, clock: FakeClock, table_name: str | None, endpoint: str | None
    ) -> None:
        self.kind = kind
        self.clock = clock
        self.table_name = table_name
        self.endpoint = endpoint
        self.made: list[AnyStore] = []
        self._options: dict[int, dict[str, Any]] = {}

    def __call__(self, **options: Any) -> AnyStore:
        store: AnyStore
        if self.kind == "memory":
            store = InMemoryDedupeStore(clock=self.clock, **options)
        else:
            store = DynamoDBDedupeStore(
                table_name=self.table_name,
                endpoint=self.endpoint,
                region=REGION,
                clock=self.clock,
                **options,
            )
        self.made.append(store)
        self._options[id(store)] = options
        return store

    def peer(self, store: AnyStore) -> AnyStore:
        """Another caller of ``store``'s jobs: a second store on the same table, or the same
        in-memory store."""
        if self.kind == "memory":
            return store
        return self(**self._options[id(store)])


@pytest.fixture(params=["memory", *DYNAMODB_TARGETS])
def stores(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Stores]:
    """Store maker of the implementation under test; on DynamoDB (either provider) one fresh
    table per test."""
    table_name: str | None = None
    endpoint: str | None = None
    if request.param != "memory":
        # Resolved here, not at module level, so the memory run never needs DynamoDB Local.
        table_name, endpoint = dynamodb_target(request)
    maker = Stores(
        "memory" if request.param == "memory" else "dynamodb", clock, table_name, endpoint
    )
    yield maker
    for store in maker.made:
        store.close()


@pytest.fixture
def store(stores: Stores) -> AnyStore:
    return stores(**SHORT_WAIT)


def counts(store: AnyStore) -> tuple[int, int, int, int, int]:
    """``(total, pending, completed, failed, expired)``."""
    stats: DedupeStats = store.get_stats()
    return (
        stats.total_jobs,
        stats.pending_jobs,
        stats.completed_jobs,
        stats.failed_jobs,
        stats.expired_jobs,
    )


def exact(value: object) -> str:
    """A form that tells ``1`` from ``1.0`` from ``True``, which ``==`` does not."""
    return json.dumps(value, allow_nan=False)


def incompressible_text(chars: int, seed: int = 0) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(random.Random(seed).choices(alphabet, k=chars))


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def later(delay_s: float, action: Callable[[], object]) -> threading.Thread:
    """Run ``action`` in a thread after ``delay_s``: something that happens during a wait."""

    def run() -> None:
        time.sleep(delay_s)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# -- shape ---------------------------------------------------------------------------------------


def test_store_implements_the_dedupe_protocol(store: AnyStore) -> None:
    assert isinstance(store, DedupeStore)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("default_ttl_seconds", 0),
        ("default_ttl_seconds", -1),
        ("default_ttl_seconds", "300"),
        ("default_ttl_seconds", 1.5),
        ("max_wait_time_ms", -1),
        ("max_wait_time_ms", True),
        ("poll_interval_ms", 0),
        ("poll_interval_ms", "100"),
    ],
)
def test_bad_option_is_refused_at_construction(stores: Stores, option: str, value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        stores(**{option: value})
    assert caught.value.field == option


def test_options_default_to_the_documented_values(stores: Stores) -> None:
    options = stores().options
    assert (options.default_ttl_seconds, options.max_wait_time_ms, options.poll_interval_ms) == (
        300,
        30_000,
        100,
    )


# -- taking a key --------------------------------------------------------------------------------


def test_first_caller_owns_and_the_others_join_the_same_job(stores: Stores) -> None:
    store = stores(**SHORT_WAIT)
    peer = stores.peer(store)
    first = store.register_or_join("issue-1")
    assert first.is_owner
    assert peer.register_or_join("issue-1") == Registration(job_id=first.job_id, is_owner=False)
    assert store.register_or_join("issue-1") == Registration(job_id=first.job_id, is_owner=False)
    assert store.is_in_progress("issue-1")
    assert peer.is_in_progress("issue-1")
    assert counts(store) == (1, 1, 0, 0, 0)


def test_joining_sends_dedupe_joined_and_owning_does_not(stores: Stores) -> None:
    store = stores(**SHORT_WAIT)
    peer = stores.peer(store)
    seen: list[tuple[object, signals.DedupeEvent]] = []

    def receiver(sender: object, event: signals.DedupeEvent) -> None:
        seen.append((sender, event))

    with signals.dedupe_joined.connected_to(receiver):
        first = store.register_or_join("issue-2")
        assert seen == []
        peer.register_or_join("issue-2")
    assert [(sender, event.key, event.job_id) for sender, event in seen] == [
        (peer, "issue-2", first.job_id)
    ]
    assert seen[0][1].store == peer.store_name
    assert seen[0][1].table == peer.table_name


def test_keys_have_independent_jobs(store: AnyStore) -> None:
    a = store.register_or_join("a")
    b = store.register_or_join("b")
    assert a.is_owner
    assert b.is_owner
    assert a.job_id != b.job_id
    assert store.complete("a", "done", job_id=a.job_id)
    assert store.is_in_progress("b")
    assert not store.is_in_progress("a")


def test_register_returns_the_live_job_id_and_starts_one_if_none(stores: Stores) -> None:
    store = stores(**SHORT_WAIT)
    peer = stores.peer(store)
    job_id = store.register("key")
    assert store.is_in_progress("key")
    assert peer.register("key") == job_id
    assert peer.register_or_join("key") == Registration(job_id=job_id, is_owner=False)
    assert store.complete("key", "value", job_id=job_id)
    # Finished: register starts the next job.
    next_id = peer.register("key")
    assert next_id != job_id
    assert store.register_or_join("key") == Registration(job_id=next_id, is_owner=False)


def test_concurrent_callers_elect_exactly_one_owner(stores: Stores) -> None:
    first = stores(**SHORT_WAIT)
    callers = [first, *(stores.peer(first) for _ in range(5))]
    barrier = threading.Barrier(len(callers))

    def take(caller: AnyStore) -> Registration:
        barrier.wait(10)
        return caller.register_or_join("contended")

    with ThreadPoolExecutor(len(callers)) as pool:
        registrations = list(pool.map(take, callers))
    assert sum(registration.is_owner for registration in registrations) == 1
    assert len({registration.job_id for registration in registrations}) == 1
    assert counts(first) == (1, 1, 0, 0, 0)


# -- complete and fail ---------------------------------------------------------------------------


def test_complete_with_the_owners_job_id_publishes_the_result(stores: Stores) -> None:
    store = stores(**SHORT_WAIT)
    peer = stores.peer(store)
    registration = store.register_or_join("key")
    assert store.complete("key", {"answer": 42}, job_id=registration.job_id) is True
    assert store.wait_for("key") == {"answer": 42}
    assert peer.wait_for("key") == {"answer": 42}
    assert not peer.is_in_progress("key")
    assert counts(store) == (1, 0, 1, 0, 0)


def test_complete_without_a_job_id_completes_the_pending_job(store: AnyStore) -> None:
    store.register_or_join("key")
    assert store.complete("key", [1, 2]) is True
    assert store.wait_for("key") == [1, 2]


def test_complete_with_a_wrong_job_id_changes_nothing(store: AnyStore) -> None:
    registration = store.register_or_join("key")
    assert store.complete("key", "forged", job_id="not-the-job") is False
    assert store.fail("key", "forged", job_id="not-the-job") is False
    assert store.is_in_progress("key")
    assert store.wait_for("key") is None  # still pending: the wait times out
    assert counts(store) == (1, 1, 0, 0, 0)
    assert store.complete("key", "real", job_id=registration.job_id) is True
    assert store.wait_for("key") == "real"


def test_complete_and_fail_on_an_absent_key_return_false(store: AnyStore) -> None:
    assert store.complete("absent", "value") is False
    assert store.complete("absent", "value", job_id="some-id") is False
    assert store.fail("absent", "boom") is False
    assert store.fail("absent", RuntimeError("boom"), job_id="some-id") is False
    assert counts(store) == (0, 0, 0, 0, 0)
    assert store.wait_for("absent") is None
    assert store.register_or_join("absent").is_owner


def test_a_job_finishes_only_once(store: AnyStore) -> None:
    registration = store.register_or_join("key")
    assert store.complete("key", "first", job_id=registration.job_id) is True
    assert store.complete("key", "second", job_id=registration.job_id) is False
    assert store.complete("key", "third") is False
    assert store.fail("key", "too late", job_id=registration.job_id) is False
    assert store.wait_for("key") == "first"
    assert counts(store) == (1, 0, 1, 0, 0)


def test_a_failed_job_cannot_be_completed(store: AnyStore) -> None:
    registration = store.register_or_join("key")
    assert store.fail("key", ValueError("bad"), job_id=registration.job_id) is True
    assert store.fail("key", "again", job_id=registration.job_id) is False
    assert store.complete("key", "late", job_id=registration.job_id) is False
    assert store.wait_for("key") is None
    assert counts(store) == (1, 0, 0, 1, 0)


def test_fail_gives_waiters_none_and_frees_the_key(stores: Stores) -> None:
    store = stores(**SHORT_WAIT)
    peer = stores.peer(store)
    failed = store.register_or_join("key")
    assert store.fail("key", RuntimeError("upstream 500"), job_id=failed.job_id) is True
    assert peer.wait_for("key") is None
    assert not peer.is_in_progress("key")
    assert counts(store) == (1, 0, 0, 1, 0)
    retry = peer.register_or_join("key")
    assert retry.is_owner
    assert retry.job_id != failed.job_id
    assert store.register_or_join("key") == Registration(job_id=retry.job_id, is_owner=False)
    assert counts(store) == (1, 1, 0, 0, 0)


def test_a_completed_job_is_free_to_take_again(stores: Stores) -> None:
    store = stores(**SHORT_WAIT)
    peer = stores.peer(store)
    done = store.register_or_join("key")
    assert store.complete("key", "old result", job_id=done.job_id)
    again = peer.register_or_join("key")
    assert again.is_owner
    assert again.job_id != done.job_id
    # The new job replaced the old one: its result is no longer served.
    assert store.is_in_progress("key")
    assert store.wait_for("key") is None
    assert store.complete("key", "old owner", job_id=done.job_id) is False
    assert counts(store) == (1, 1, 0, 0, 0)


# -- leases --------------------------------------------------------------------------------------


def test_no_one_takes_a_pending_job_before_its_lease_deadline(
    stores: Stores, clock: FakeClock
) -> None:
    store = stores(**SHORT_WAIT)
    peer = stores.peer(store)
    owner = store.register_or_join("key")
    for advance in (1, LEASE_MS // 2, LEASE_MS // 2 - 2):
        clock.advance(advance)
        assert peer.register_or_join("key") == Registration(job_id=owner.job_id, is_owner=False)
        assert peer.is_in_progress("key")
    clock.advance(1)  # exactly the lease deadline
    assert not peer.is_in_progress("key")
    assert counts(store) == (0, 0, 0, 0, 1)
    taken = peer.register_or_join("key")
    assert taken.is_owner
    assert taken.job_id != owner.job_id
    assert store.register_or_join("key") == Registration(job_id=taken.job_id, is_owner=False)


def test_the_lease_is_default_ttl_seconds(stores: Stores, clock: FakeClock) -> None:
    store = stores(default_ttl_seconds=5, **SHORT_WAIT)
    owner = store.register_or_join("key")
    clock.advance(5 * SECOND_MS - 1)
    assert not store.register_or_join("key").is_owner
    clock.advance(1)
    taken = store.register_or_join("key")
    assert taken.is_owner
    assert taken.job_id != owner.job_id


def test_an_owner_completes_until_one_ms_before_its_lease_deadline(
    store: AnyStore, clock: FakeClock
) -> None:
    owner = store.register_or_join("key")
    clock.advance(LEASE_MS - 1)
    assert store.complete("key", "just in time", job_id=owner.job_id) is True
    assert store.wait_for("key") == "just in time"


def test_an_owner_past_its_lease_can_neither_complete_nor_fail(
    store: AnyStore, clock: FakeClock
) -> None:
    owner = store.register_or_join("key")
    clock.advance(LEASE_MS)
    assert store.complete("key", "too late", job_id=owner.job_id) is False
    assert store.complete("key", "too late") is False
    assert store.fail("key", "too late", job_id=owner.job_id) is False
    assert store.wait_for("key") is None
    assert not store.is_in_progress("key")
    assert counts(store) == (0, 0, 0, 0, 1)


def test_an_owner_past_its_lease_does_not_overwrite_the_new_owners_job(
    stores: Stores, clock: FakeClock
) -> None:
    store = stores(**SHORT_WAIT)
    peer = stores.peer(store)
    stale = store.register_or_join("key")
    clock.advance(LEASE_MS + 1)
    fresh = peer.register_or_join("key")
    assert fresh.is_owner
    assert store.complete("key", "stale result", job_id=stale.job_id) is False
    assert store.fail("key", "stale failure", job_id=stale.job_id) is False
    assert peer.is_in_progress("key")
    assert counts(store) == (1, 1, 0, 0, 0)
    assert peer.complete("key", "fresh result", job_id=fresh.job_id) is True
    assert store.wait_for("key") == "fresh result"


def test_a_finished_outcome_is_kept_for_one_lease_from_finishing(
    store: AnyStore, clock: FakeClock
) -> None:
    owner = store.register_or_join("key")
    clock.advance(100 * SECOND_MS)
    assert store.complete("key", "kept", job_id=owner.job_id)
    clock.advance(LEASE_MS - 1)  # past the original lease, within the retention
    assert store.wait_for("key") == "kept"
    assert counts(store) == (1, 0, 1, 0, 0)
    clock.advance(1)
    assert store.wait_for("key") is None
    assert counts(store) == (0, 0, 0, 0, 1)


# -- waiting -------------------------------------------------------------------------------------


def test_wait_for_an_absent_key_returns_none_at_once(stores: Stores) -> None:
    store = stores(**LONG_WAIT)
    started = time.monotonic()
    assert store.wait_for("absent") is None
    assert time.monotonic() - started < 2


def test_wait_for_times_out_and_leaves_the_job_pending(stores: Stores) -> None:
    store = stores(**SHORT_WAIT)
    peer = stores.peer(store)
    owner = store.register_or_join("key")
    started = time.monotonic()
    assert peer.wait_for("key") is None
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 5
    # A waiter that gives up never touches the owner's job.
    assert store.is_in_progress("key")
    assert counts(store) == (1, 1, 0, 0, 0)
    assert store.complete("key", "after the timeout", job_id=owner.job_id) is True
    assert peer.wait_for("key") == "after the timeout"


def test_wait_for_with_max_wait_zero_reads_once(stores: Stores) -> None:
    store = stores(max_wait_time_ms=0, poll_interval_ms=10)
    owner = store.register_or_join("key")
    started = time.monotonic()
    assert store.wait_for("key") is None
    assert time.monotonic() - started < 2
    assert store.complete("key", 7, job_id=owner.job_id)
    assert store.wait_for("key") == 7


def test_wait_for_returns_the_result_completed_during_the_wait(stores: Stores) -> None:
    store = stores(**LONG_WAIT)
    peer = stores.peer(store)
    owner = store.register_or_join("key")
    finisher = later(0.1, lambda: store.complete("key", {"n": 1}, job_id=owner.job_id))
    started = time.monotonic()
    assert peer.wait_for("key") == {"n": 1}
    assert time.monotonic() - started < 5
    finisher.join(10)


def test_wait_for_returns_none_when_the_job_fails_during_the_wait(stores: Stores) -> None:
    store = stores(**LONG_WAIT)
    peer = stores.peer(store)
    owner = store.register_or_join("key")
    finisher = later(0.1, lambda: store.fail("key", "boom", job_id=owner.job_id))
    started = time.monotonic()
    assert peer.wait_for("key") is None
    assert time.monotonic() - started < 5
    finisher.join(10)
    assert counts(store) == (1, 0, 0, 1, 0)


def test_a_lease_that_passes_during_the_wait_ends_it_with_none(
    stores: Stores, clock: FakeClock
) -> None:
    store = stores(**LONG_WAIT)
    store.register_or_join("key")
    mover = later(0.1, lambda: clock.advance(LEASE_MS))
    started = time.monotonic()
    assert store.wait_for("key") is None
    assert time.monotonic() - started < 5
    mover.join(10)


def test_an_injected_sleep_sees_the_documented_poll_schedule(
    stores: Stores, clock: FakeClock
) -> None:
    """Waiters poll from ``poll_interval_ms``, 1.5x slower each time; a fake sleep that moves
    the clock lets the lease end mid-wait without any real waiting."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(round(seconds * 1000))

    store = stores(default_ttl_seconds=1, max_wait_time_ms=60_000, poll_interval_ms=10, sleep=sleep)
    store.register_or_join("key")
    assert store.wait_for("key") is None
    # 10, 15, 22, 33, ... ms until their sum passes the 1000 ms lease.
    expected_ms = [10, 15, 22, 33, 50, 75, 112, 168, 252, 378]
    assert slept == pytest.approx([ms / 1000 for ms in expected_ms])


# -- run -----------------------------------------------------------------------------------------


def test_run_owner_runs_fn_once_and_returns_its_result(store: AnyStore) -> None:
    calls: list[int] = []

    def fetch() -> dict[str, int]:
        calls.append(1)
        return {"id": 4050}

    assert store.run("issue", fetch) == {"id": 4050}
    assert calls == [1]
    assert store.wait_for("issue") == {"id": 4050}
    assert counts(store) == (1, 0, 1, 0, 0)
    # run de-duplicates concurrent callers; a finished job is free, so a later call runs again.
    assert store.run("issue", fetch) == {"id": 4050}
    assert calls == [1, 1]


def spy_on_joins(peer: AnyStore, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """An event set once ``peer`` has joined a job (rather than owning one)."""
    joined = threading.Event()
    original = peer.register_or_join

    def register_or_join(key: str) -> Registration:
        registration = original(key)
        if not registration.is_owner:
            joined.set()
        return registration

    monkeypatch.setattr(peer, "register_or_join", register_or_join)
    return joined


def test_concurrent_run_gets_the_owners_result_without_running_fn(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores(**LONG_WAIT)
    peer = stores.peer(store)
    joined = spy_on_joins(peer, monkeypatch)
    calls: list[str] = []

    def owner_fn() -> dict[str, str]:
        calls.append("owner")
        assert joined.wait(10), "the second caller never joined"
        return {"from": "owner"}

    def joiner_fn() -> dict[str, str]:
        calls.append("joiner")
        return {"from": "joiner"}

    with ThreadPoolExecutor(2) as pool:
        owner = pool.submit(store.run, "key", owner_fn)
        wait_until(lambda: store.is_in_progress("key"))
        joiner = pool.submit(peer.run, "key", joiner_fn)
        assert owner.result(30) == {"from": "owner"}
        assert joiner.result(30) == {"from": "owner"}
    assert calls == ["owner"]
    assert counts(store) == (1, 0, 1, 0, 0)


def test_run_where_fn_raises_fails_the_job_and_waiters_get_none(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores(**LONG_WAIT)
    peer = stores.peer(store)
    joined = spy_on_joins(peer, monkeypatch)
    calls: list[str] = []

    def owner_fn() -> str:
        calls.append("owner")
        assert joined.wait(10), "the second caller never joined"
        raise RuntimeError("upstream said no")

    def joiner_fn() -> str:
        calls.append("joiner")
        return "joiner ran"

    with ThreadPoolExecutor(2) as pool:
        owner = pool.submit(store.run, "key", owner_fn)
        wait_until(lambda: store.is_in_progress("key"))
        joiner = pool.submit(peer.run, "key", joiner_fn)
        with pytest.raises(RuntimeError, match="upstream said no"):
            owner.result(30)
        assert joiner.result(30) is None
    assert calls == ["owner"]
    assert not store.is_in_progress("key")
    assert counts(store) == (1, 0, 0, 1, 0)
    # The failure freed the key: the next run owns it and runs its own fn.
    assert peer.run("key", lambda: "second try") == "second try"


def test_run_returns_an_unpublishable_result_to_the_owner_and_fails_the_job(
    store: AnyStore,
) -> None:
    result = store.run("key", lambda: {"score": math.nan})
    assert result is not None
    assert math.isnan(result["score"])
    assert not store.is_in_progress("key")
    assert store.wait_for("key") is None
    assert counts(store) == (1, 0, 0, 1, 0)


def test_run_with_an_invalid_key_never_calls_fn(store: AnyStore) -> None:
    calls: list[int] = []
    with pytest.raises(InvalidKeyError):
        store.run("", lambda: calls.append(1))
    assert calls == []


# -- stats and cleanup ---------------------------------------------------------------------------


def test_stats_count_jobs_by_status_and_cleanup_removes_exactly_the_expired(
    stores: Stores, clock: FakeClock
) -> None:
    store = stores(default_ttl_seconds=60, **SHORT_WAIT)
    assert counts(store) == (0, 0, 0, 0, 0)
    assert store.cleanup() == 0
    stale = store.register_or_join("stale")  # pending, lease ends at 60 s
    done = store.register_or_join("done")
    broken = store.register_or_join("broken")
    clock.advance(10 * SECOND_MS)
    assert store.complete("done", "result", job_id=done.job_id)  # kept until 70 s
    assert store.fail("broken", "error", job_id=broken.job_id)  # kept until 70 s
    clock.advance(20 * SECOND_MS)
    store.register_or_join("late")  # pending until 90 s
    assert counts(store) == (4, 2, 1, 1, 0)
    assert store.cleanup() == 0

    clock.advance(30 * SECOND_MS - 1)  # 59.999 s
    assert counts(store) == (4, 2, 1, 1, 0)
    clock.advance(1)  # 60 s: the stale lease has passed
    assert counts(store) == (3, 1, 1, 1, 1)
    assert store.cleanup() == 1
    assert counts(store) == (3, 1, 1, 1, 0)
    assert store.cleanup() == 0
    assert store.complete("stale", "zombie", job_id=stale.job_id) is False

    clock.advance(10 * SECOND_MS)  # 70 s: both finished outcomes are past retention
    assert counts(store) == (1, 1, 0, 0, 2)
    assert store.cleanup() == 2
    assert counts(store) == (1, 1, 0, 0, 0)
    assert store.is_in_progress("late")

    clock.advance(20 * SECOND_MS)  # 90 s
    assert counts(store) == (0, 0, 0, 0, 1)
    assert store.cleanup() == 1
    assert counts(store) == (0, 0, 0, 0, 0)
    assert store.register_or_join("stale").is_owner


# -- values --------------------------------------------------------------------------------------

ROUND_TRIP_VALUES: list[Any] = [
    {"id": 4050, "name": "Spider-Man", "aliases": ["Spidey"]},
    [1, 1.0, True, None, "1"],
    "ünïcødé ✓ 🦸",
    0,
    2**70,
    -0.5,
    False,
    {},
    [],
]


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=lambda value: exact(value)[:24])
def test_result_round_trips_with_its_exact_types(store: AnyStore, value: Any) -> None:
    store.register_or_join("key")
    assert store.complete("key", value)
    result = store.wait_for("key")
    assert exact(result) == exact(value)


def test_callers_cannot_mutate_a_published_result(store: AnyStore) -> None:
    value: dict[str, Any] = {"tags": ["a"]}
    store.register_or_join("key")
    assert store.complete("key", value)
    value["tags"].append("changed after complete")
    first = store.wait_for("key")
    assert first == {"tags": ["a"]}
    assert first is not None
    first["tags"].append("changed after read")
    assert store.wait_for("key") == {"tags": ["a"]}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (math.nan, ValueError),
        ({"nested": [1.0, math.inf]}, ValueError),
        ({1, 2}, TypeError),
        ((1, 2), TypeError),
        (b"bytes", TypeError),
        ({1: "int key"}, TypeError),
    ],
    ids=["nan", "nested-inf", "set", "tuple", "bytes", "int-dict-key"],
)
def test_a_result_json_cannot_hold_is_refused_and_the_job_stays_pending(
    store: AnyStore, value: Any, error: type[Exception]
) -> None:
    owner = store.register_or_join("key")
    with pytest.raises(error):
        store.complete("key", value, job_id=owner.job_id)
    assert store.is_in_progress("key")
    assert counts(store) == (1, 1, 0, 0, 0)
    assert store.complete("key", "valid", job_id=owner.job_id) is True
    assert store.wait_for("key") == "valid"


def test_a_result_above_the_item_limit_is_refused_and_the_job_stays_pending(
    store: AnyStore,
) -> None:
    owner = store.register_or_join("key")
    with pytest.raises(ItemTooLargeError):
        store.complete("key", incompressible_text(700_000), job_id=owner.job_id)
    assert store.is_in_progress("key")
    assert store.complete("key", incompressible_text(100_000), job_id=owner.job_id)
    assert store.wait_for("key") == incompressible_text(100_000)


def test_value_type_validates_results_into_models(stores: Stores) -> None:
    store = stores(value_type=Issue, **SHORT_WAIT)
    issue = Issue(id=15, name="Amazing Fantasy", tags=["first"])
    store.register_or_join("issue")
    assert store.complete("issue", issue)
    result = store.wait_for("issue")
    assert isinstance(result, Issue)
    assert result == issue


def test_value_type_accepts_generic_types(stores: Stores) -> None:
    store = stores(value_type=list[Issue], **SHORT_WAIT)
    issues = [Issue(id=i, name=f"#{i}", tags=[]) for i in range(3)]
    assert store.run("issues", lambda: issues) == issues
    assert store.wait_for("issues") == issues


def test_a_result_not_matching_value_type_reads_as_none(stores: Stores) -> None:
    store = stores(value_type=Issue, **SHORT_WAIT)
    store.register_or_join("issue")
    assert store.complete("issue", {"id": "not a number"})
    assert store.wait_for("issue") is None
    # Still a completed job: a decode problem is reported as absent, never "fixed".
    assert counts(store) == (1, 0, 1, 0, 0)


# -- keys ----------------------------------------------------------------------------------------

INVALID_KEYS: list[Any] = ["", 42, None, b"key", "lone \ud800 surrogate"]


@pytest.mark.parametrize("key", INVALID_KEYS, ids=repr)
def test_invalid_key_is_refused_before_anything_happens(store: AnyStore, key: Any) -> None:
    live = store.register_or_join("valid")
    operations: list[Callable[[], object]] = [
        lambda: store.register_or_join(key),
        lambda: store.register(key),
        lambda: store.complete(key, "value"),
        lambda: store.complete(key, "value", job_id=live.job_id),
        lambda: store.fail(key, "error"),
        lambda: store.is_in_progress(key),
        lambda: store.wait_for(key),
        lambda: store.run(key, lambda: "value"),
    ]
    for operation in operations:
        with pytest.raises(InvalidKeyError):
            operation()
    assert counts(store) == (1, 1, 0, 0, 0)
    assert store.is_in_progress("valid")


def test_awkward_keys_have_separate_jobs(store: AnyStore) -> None:
    keys = ["a", "A", "a ", "#", "DEDUPE##=a", "ключ 🔑", "k" * 3000, "k" * 2999 + "l"]
    for index, key in enumerate(keys):
        assert store.register_or_join(key).is_owner, key
        assert store.complete(key, index)
    for index, key in enumerate(keys):
        assert store.wait_for(key) == index, key
    assert counts(store) == (len(keys), 0, len(keys), 0, 0)


# -- lifecycle -----------------------------------------------------------------------------------


def test_health_check_reports_healthy_with_a_closed_breaker(store: AnyStore) -> None:
    result = store.health_check()
    assert result.healthy
    assert result.circuit_state == "closed"
    assert result.error is None
    assert result.latency_ms >= 0


def test_closed_store_refuses_every_operation(store: AnyStore) -> None:
    owner = store.register_or_join("key")
    store.close()
    store.close()  # idempotent
    assert store.closed
    operations: list[Callable[[], object]] = [
        lambda: store.register_or_join("key"),
        lambda: store.register("key"),
        lambda: store.complete("key", "value", job_id=owner.job_id),
        lambda: store.fail("key", "error", job_id=owner.job_id),
        lambda: store.is_in_progress("key"),
        lambda: store.wait_for("key"),
        lambda: store.run("key", lambda: "value"),
        store.get_stats,
        store.cleanup,
    ]
    for operation in operations:
        with pytest.raises(StoreClosedError):
            operation()
    health = store.health_check()  # never raises, but is not healthy any more
    assert not health.healthy
    assert health.error is not None
    assert "StoreClosedError" in health.error


def test_closing_ends_a_wait_in_progress(stores: Stores) -> None:
    store = stores(**LONG_WAIT)
    store.register_or_join("key")
    closer = later(0.1, store.close)
    started = time.monotonic()
    with pytest.raises(StoreClosedError):
        store.wait_for("key")
    assert time.monotonic() - started < 5
    closer.join(10)


def test_context_manager_closes_the_store(stores: Stores) -> None:
    with stores(**SHORT_WAIT) as store:
        assert store.register_or_join("key").is_owner
    with pytest.raises(StoreClosedError):
        store.is_in_progress("key")
