"""Stateful property test: random dedupe histories against a plain model of the lease rules.

Three callers share one dedupe store (as threads of one process share an in-memory store, or
processes share a table) and hypothesis drives them through random ``register_or_join`` /
``register``, ``complete`` / ``fail`` (with the caller's own job id, a forged one, or none),
``run``, ``cleanup`` and clock moves: small ones, ones within a lease, ones across it, and
landings exactly on (or 1 ms before) a lease end or an expiry. After every step the store's
answers (who owns, which job id, the booleans, what a waiter gets, whether a job is in
progress, the stats) are compared with a model written straight from the timeline in
:mod:`.dedupe_core`'s docstring, not from its functions, so a mistake in the rules themselves
shows too.

Waiters use ``max_wait_time_ms=0``: they read once, so what they get depends on the state
alone. Every history starts with a live job, and the common paths (the owner finishing, an
owner that outlived its job trying to) have rules of their own, so the interesting
interleavings come up within modest example counts.

The same machine runs on ``InMemoryDedupeStore`` and, with fewer examples, on
``DynamoDBDedupeStore`` against DynamoDB Local, there with one store (client) per caller. Each
example gets its own ``key_prefix``, so examples sharing the table never see each other's jobs.
The fake clock starts at the real time and moves at most a few hours per example, so the
``TTL`` DynamoDB's reaper reads stays in the real future.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from comic_vine_dynamodb_store.stores.contracts import Registration
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore
from comic_vine_dynamodb_store.stores.memory_dedupe import InMemoryDedupeStore
from comic_vine_dynamodb_store.table import create_table
from tests.support import FakeClock

REGION = "us-east-1"

AnyStore: TypeAlias = InMemoryDedupeStore[Any] | DynamoDBDedupeStore[Any]

LEASE_S = 60
LEASE_MS = LEASE_S * 1000
STORE_OPTIONS: dict[str, Any] = {
    "default_ttl_seconds": LEASE_S,
    "max_wait_time_ms": 0,  # a waiter reads once: what it sees is decided by the state alone
    "poll_interval_ms": 10,
}

KEYS = ["a", "b"]
CALLERS = ["alice", "bob", "carol"]
PENDING, COMPLETED, FAILED, GONE = "pending", "completed", "failed", "gone"


def exact(value: object) -> str:
    """A form that tells ``1`` from ``1.0`` from ``True``, which ``==`` does not."""
    return json.dumps(value, allow_nan=False)


@dataclass
class ModelJob:
    """A key's job as the timeline describes it."""

    job_id: str
    status: str
    lease_until_ms: int  # when a pending job may be taken over
    keep_until_ms: int  # when the item expires: the lease while pending, then one more lease
    result: str | None = None  # exact JSON of a completed job's value

    def expired(self, now_ms: int) -> bool:
        return now_ms >= self.keep_until_ms

    def live_pending(self, now_ms: int) -> bool:
        """Pending within its lease: the one state in which nobody else may take the key."""
        return self.status == PENDING and now_ms < self.lease_until_ms and not self.expired(now_ms)

    def seen_as(self, now_ms: int) -> str:
        """What a waiter and the stats make of the job: its status, or gone."""
        if self.expired(now_ms) or (self.status == PENDING and now_ms >= self.lease_until_ms):
            return GONE
        return self.status

    def finishable(self, now_ms: int, job_id: str | None) -> bool:
        """``complete``/``fail`` may change it: pending, within its lease, and (given an id)
        this very job."""
        return self.live_pending(now_ms) and (job_id is None or job_id == self.job_id)


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
)
# Small steps, steps within a lease (so a job finishes well after it started, and its
# retention outlasts its lease), and steps across a lease.
advances = st.one_of(
    st.integers(min_value=0, max_value=2_000),
    st.integers(min_value=0, max_value=LEASE_MS),
    st.integers(min_value=LEASE_MS - 1_000, max_value=LEASE_MS + 1_000),
)
id_modes = st.sampled_from(["own", "forged", "none"])
# What a caller tries: publish a value, publish one JSON cannot hold, or give up.
outcomes = st.one_of(
    st.tuples(st.just("complete"), values),
    st.tuples(st.just("complete"), st.just(math.nan)),
    st.tuples(st.just("fail"), st.just(None)),
)


class DedupeMachine(RuleBasedStateMachine):
    """Three callers against the model; subclasses say which store each caller uses."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.stores = self.make_stores(self.clock)
        self.store = self.stores[CALLERS[0]]  # for what is no caller's in particular
        self.jobs: dict[str, ModelJob] = {}
        self.owned: dict[tuple[str, str], str] = {}  # (caller, key) -> the last job it owned
        self.issued: set[str] = set()
        self.forged = itertools.count()

    def make_stores(self, clock: FakeClock) -> dict[str, AnyStore]:
        """Each caller's store (the same one, for a store shared within a process)."""
        raise NotImplementedError

    def teardown(self) -> None:
        for store in self.stores.values():
            store.close()

    # -- the model -----------------------------------------------------------------------------

    @property
    def now(self) -> int:
        return self.clock.now_ms

    def is_free(self, key: str) -> bool:
        job = self.jobs.get(key)
        return job is None or not job.live_pending(self.now)

    def take(self, caller: str, key: str, registration: Registration) -> None:
        """Check a registration against the model, and apply it."""
        job = self.jobs.get(key)
        if job is None or not job.live_pending(self.now):
            assert registration.is_owner, (caller, key)
            assert registration.job_id not in self.issued, "a job id was reused"
            self.issued.add(registration.job_id)
            self.jobs[key] = ModelJob(
                registration.job_id, PENDING, self.now + LEASE_MS, self.now + LEASE_MS
            )
            self.owned[caller, key] = registration.job_id
        else:
            assert registration == Registration(job_id=job.job_id, is_owner=False), (caller, key)

    def finish(self, key: str, job_id: str | None, status: str, result: str | None) -> bool:
        """Whether the model lets ``job_id`` finish ``key``'s job now; applies it if so."""
        job = self.jobs.get(key)
        if job is None or not job.finishable(self.now, job_id):
            return False
        job.status = status
        job.keep_until_ms = self.now + LEASE_MS
        job.result = result
        return True

    def attempt(self, caller: str, key: str, job_id: str | None, outcome: tuple[str, Any]) -> bool:
        """Have ``caller`` complete or fail ``key``'s job with ``job_id``; check the answer
        against the model (a value JSON cannot hold: ValueError, nothing changes)."""
        action, value = outcome
        store = self.stores[caller]
        if action == "fail":
            done = store.fail(key, RuntimeError(f"{caller} gave up"), job_id=job_id)
            assert done is self.finish(key, job_id, FAILED, None), (caller, key, job_id)
            return done
        if isinstance(value, float) and math.isnan(value):
            with pytest.raises(ValueError, match="finite"):
                store.complete(key, value, job_id=job_id)
            return False
        done = store.complete(key, value, job_id=job_id)
        assert done is self.finish(key, job_id, COMPLETED, exact(value)), (caller, key, job_id)
        return done

    def live_owners(self) -> list[tuple[str, str]]:
        """``(caller, key)`` pairs whose caller owns the key's live pending job."""
        return sorted(
            (caller, key)
            for (caller, key), job_id in self.owned.items()
            if (job := self.jobs.get(key)) is not None
            and job.job_id == job_id
            and job.live_pending(self.now)
        )

    def stale_owners(self) -> list[tuple[str, str]]:
        """``(caller, key)`` pairs whose caller owned a job that is no longer live: its lease
        passed, it finished, or another caller's job replaced it."""
        return sorted(set(self.owned) - set(self.live_owners()))

    def future_deadlines(self) -> list[int]:
        """Lease ends and expiries still ahead: the instants where an off-by-one would show."""
        return sorted(
            {
                deadline
                for job in self.jobs.values()
                for deadline in (job.lease_until_ms, job.keep_until_ms)
                if deadline > self.now
            }
        )

    # -- rules ---------------------------------------------------------------------------------

    @initialize(caller=st.sampled_from(CALLERS), key=st.sampled_from(KEYS))
    def starts_empty_then_takes_a_key(self, caller: str, key: str) -> None:
        """Every history starts with a live job, so the interesting rules have one to act on."""
        assert self.store.get_stats().total_jobs == 0
        self.take(caller, key, self.stores[caller].register_or_join(key))

    @rule(caller=st.sampled_from(CALLERS), key=st.sampled_from(KEYS))
    def register_or_join(self, caller: str, key: str) -> None:
        self.take(caller, key, self.stores[caller].register_or_join(key))

    @rule(caller=st.sampled_from(CALLERS), key=st.sampled_from(KEYS))
    def register(self, caller: str, key: str) -> None:
        """``register``: the same decision, reported as the live job's id alone."""
        owns = self.is_free(key)
        self.take(caller, key, Registration(self.stores[caller].register(key), is_owner=owns))

    @rule(
        caller=st.sampled_from(CALLERS),
        key=st.sampled_from(KEYS),
        mode=id_modes,
        outcome=outcomes,
    )
    def anyone_tries_to_finish(
        self, caller: str, key: str, mode: str, outcome: tuple[str, Any]
    ) -> None:
        """Any caller, with the last id it owned for the key, a forged id, or none."""
        job_id: str | None = None
        if mode == "own" and (caller, key) in self.owned:
            job_id = self.owned[caller, key]
        elif mode != "none":
            job_id = f"forged-{next(self.forged)}"
        self.attempt(caller, key, job_id, outcome)

    @precondition(lambda self: bool(self.live_owners()))
    @rule(data=st.data(), outcome=outcomes)
    def owner_finishes(self, data: st.DataObject, outcome: tuple[str, Any]) -> None:
        """The common path, drawn directly: the live job's owner completes or fails it."""
        caller, key = data.draw(st.sampled_from(self.live_owners()))
        refused = isinstance(outcome[1], float) and math.isnan(outcome[1])
        assert self.attempt(caller, key, self.owned[caller, key], outcome) is not refused

    @precondition(lambda self: bool(self.stale_owners()))
    @rule(data=st.data(), outcome=outcomes)
    def stale_owner_tries_to_finish(self, data: st.DataObject, outcome: tuple[str, Any]) -> None:
        """An owner that outlived its job must change nothing, whoever holds the key now."""
        caller, key = data.draw(st.sampled_from(self.stale_owners()))
        assert self.attempt(caller, key, self.owned[caller, key], outcome) is False

    @rule(
        caller=st.sampled_from(CALLERS),
        key=st.sampled_from(KEYS),
        value=values,
        raises=st.booleans(),
    )
    def run(self, caller: str, key: str, value: Any, raises: bool) -> None:
        owns = self.is_free(key)
        calls: list[int] = []

        def fn() -> Any:
            calls.append(1)
            if raises:
                raise LookupError("fn failed")
            return value

        store = self.stores[caller]
        if owns and raises:
            with pytest.raises(LookupError):
                store.run(key, fn)
        else:
            result = store.run(key, fn)
            # The owner gets its own value; a joiner (zero wait, job pending) gets None.
            assert exact(result) == (exact(value) if owns else exact(None))
        assert calls == ([1] if owns else [])
        if owns:
            # run does not return the job id, and no rule compares a finished job's id.
            self.jobs[key] = ModelJob(
                job_id="",
                status=FAILED if raises else COMPLETED,
                lease_until_ms=self.now + LEASE_MS,
                keep_until_ms=self.now + LEASE_MS,
                result=None if raises else exact(value),
            )

    @rule(ms=advances)
    def advance_clock(self, ms: int) -> None:
        self.clock.advance(ms)

    @precondition(lambda self: bool(self.future_deadlines()))
    @rule(data=st.data(), offset_ms=st.sampled_from([-1, 0]), then_cleanup=st.booleans())
    def advance_to_a_deadline(
        self, data: st.DataObject, offset_ms: int, then_cleanup: bool
    ) -> None:
        """Land on a lease end or an expiry, or 1 ms before it (and sweep there, sometimes)."""
        target = data.draw(st.sampled_from(self.future_deadlines())) + offset_ms
        self.clock.advance(max(0, target - self.now))  # time never runs backwards
        if then_cleanup:
            self.cleanup()

    @rule()
    def cleanup(self) -> None:
        expired = [key for key, job in self.jobs.items() if job.expired(self.now)]
        assert self.store.cleanup() == len(expired)
        for key in expired:
            del self.jobs[key]

    # -- after every step ----------------------------------------------------------------------

    @invariant()
    def waiters_see_what_the_model_says(self) -> None:
        for index, key in enumerate(KEYS):
            job = self.jobs.get(key)
            store = self.stores[CALLERS[index % len(CALLERS)]]
            expected = exact(None)
            if job is not None and job.seen_as(self.now) == COMPLETED:
                assert job.result is not None
                expected = job.result
            assert exact(store.wait_for(key)) == expected, key
            assert store.is_in_progress(key) is not self.is_free(key), key

    @invariant()
    def stale_owners_change_nothing(self) -> None:
        """At every instant (a lease end landed on exactly, too), an owner that outlived its
        job is refused; on a correct store this check changes nothing."""
        for caller, key in self.stale_owners():
            job_id = self.owned[caller, key]
            assert self.stores[caller].complete(key, "stale", job_id=job_id) is False, (caller, key)

    @invariant()
    def stats_match_the_model(self) -> None:
        seen = [job.seen_as(self.now) for job in self.jobs.values()]
        stats = self.store.get_stats()
        assert stats.pending_jobs == seen.count(PENDING)
        assert stats.completed_jobs == seen.count(COMPLETED)
        assert stats.failed_jobs == seen.count(FAILED)
        assert stats.expired_jobs == seen.count(GONE)
        assert stats.total_jobs == len(seen) - seen.count(GONE)


class InMemoryDedupeMachine(DedupeMachine):
    def make_stores(self, clock: FakeClock) -> dict[str, AnyStore]:
        shared: AnyStore = InMemoryDedupeStore(clock=clock, **STORE_OPTIONS)
        return dict.fromkeys(CALLERS, shared)


TestInMemoryDedupeAgainstModel = InMemoryDedupeMachine.TestCase
TestInMemoryDedupeAgainstModel.settings = settings(
    max_examples=50, stateful_step_count=30, deadline=None
)


def test_dynamodb_dedupe_agrees_with_the_model(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    # One table for every example (creating one per example would dominate the run time);
    # each example works under its own key_prefix. make_table_name deletes it afterwards.
    table_name = make_table_name()
    create_table(table_name, endpoint=endpoint, region=REGION)
    examples = itertools.count()

    class DynamoDBDedupeMachine(DedupeMachine):
        def make_stores(self, clock: FakeClock) -> dict[str, AnyStore]:
            # One store per caller: separate clients, as separate processes would have.
            prefix = f"example-{next(examples)}"
            return {
                caller: DynamoDBDedupeStore(
                    table_name=table_name,
                    endpoint=endpoint,
                    region=REGION,
                    key_prefix=prefix,
                    clock=clock,
                    **STORE_OPTIONS,
                )
                for caller in CALLERS
            }

    run_state_machine_as_test(
        DynamoDBDedupeMachine,
        settings=settings(max_examples=8, stateful_step_count=30, deadline=None),
    )
