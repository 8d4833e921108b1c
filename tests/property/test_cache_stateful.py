"""Stateful property test: random cache histories against a dict model with exact expiry.

Hypothesis drives a store through random ``set``/``get``/``delete``/``cleanup``/``clear`` calls
and clock moves, and after every step compares what the store says (values, stats, sizes) with
a plain dict of ``key -> (value, expiry)``. The same machine runs on ``InMemoryCacheStore`` and,
with fewer examples, on ``DynamoDBCacheStore`` against DynamoDB Local: the strongest check that
the twin and the real store agree on every history, not just on hand-picked ones.

TTLs are a minute or more, and the fake clock starts at the real time and only moves forward,
so the ``TTL`` attribute DynamoDB's reaper reads is always in the real future: the reaper can
never remove an item the model still counts as expired-but-present.
"""

from __future__ import annotations

import json
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

from comic_vine_dynamodb_store.serialization import encode_value
from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore
from comic_vine_dynamodb_store.stores.memory_cache import InMemoryCacheStore
from comic_vine_dynamodb_store.table import create_table
from tests.support import FakeClock

REGION = "us-east-1"

AnyStore: TypeAlias = InMemoryCacheStore[Any] | DynamoDBCacheStore[Any]


@dataclass(frozen=True, slots=True)
class Expected:
    """What the model holds for a key: the value's exact JSON, its expiry and stored size."""

    json_text: str
    expires_at_ms: int | None
    stored_bytes: int

    def expired(self, now_ms: int) -> bool:
        return self.expires_at_ms is not None and now_ms >= self.expires_at_ms


def exact(value: object) -> str:
    """A form that tells ``1`` from ``1.0`` from ``True``, which ``==`` does not."""
    return json.dumps(value, allow_nan=False)


KEYS = [
    "a",
    "b",
    "ключ 🔑",
    "CACHE##=a",
    "#",
    "k" * 3000,
    "k" * 2999 + "l",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)

# A minute or more (see the module docstring), with fractions to exercise ms rounding.
ttls = st.sampled_from([0, 60, 60.001, 61.5, 90, 120, 3600])
# Mostly small steps, sometimes past every TTL in one go.
advances = st.one_of(
    st.integers(min_value=0, max_value=2_000),
    st.integers(min_value=0, max_value=130_000),
    st.just(3_600_000),
)


class CacheMachine(RuleBasedStateMachine):
    """Random histories against one store; subclasses say which store."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.store = self.make_store(self.clock)
        self.store.clear()  # the DynamoDB table outlives one example
        self.model: dict[str, Expected] = {}

    def make_store(self, clock: FakeClock) -> AnyStore:
        raise NotImplementedError

    def teardown(self) -> None:
        self.store.close()

    # -- helpers -------------------------------------------------------------------------------

    def live(self, key: str) -> Expected | None:
        expected = self.model.get(key)
        if expected is None or expected.expired(self.clock.now_ms):
            return None
        return expected

    def expiring_keys(self) -> list[str]:
        return sorted(key for key, item in self.model.items() if item.expires_at_ms is not None)

    # -- rules ---------------------------------------------------------------------------------

    @initialize()
    def starts_empty(self) -> None:
        assert self.store.get_stats().total_items == 0

    @rule(key=st.sampled_from(KEYS), value=json_values, ttl_seconds=ttls)
    def set_value(self, key: str, value: Any, ttl_seconds: float) -> None:
        self.store.set(key, value, ttl_seconds)
        expires = None if ttl_seconds == 0 else self.clock.now_ms + round(ttl_seconds * 1000)
        self.model[key] = Expected(exact(value), expires, encode_value(value).size)

    @rule(key=st.sampled_from(KEYS), ttl_seconds=st.sampled_from([-1, -0.001]))
    def set_with_negative_ttl_changes_nothing(self, key: str, ttl_seconds: float) -> None:
        with pytest.raises(ValueError, match="ttl_seconds"):
            self.store.set(key, "refused", ttl_seconds)

    @rule(key=st.sampled_from(KEYS))
    def get(self, key: str) -> None:
        expected = self.live(key)
        result = self.store.get(key)
        if expected is None:
            assert result is None, key
        else:
            assert exact(result) == expected.json_text, key

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: str) -> None:
        self.store.delete(key)
        self.model.pop(key, None)

    @rule(ms=advances)
    def advance_clock(self, ms: int) -> None:
        self.clock.advance(ms)

    @precondition(lambda self: bool(self.expiring_keys()))
    @rule(data=st.data(), offset_ms=st.sampled_from([-1, 0]))
    def advance_to_an_expiry(self, data: st.DataObject, offset_ms: int) -> None:
        """Land on an expiry or 1 ms before it: where an off-by-one would show."""
        key = data.draw(st.sampled_from(self.expiring_keys()))
        expires = self.model[key].expires_at_ms
        assert expires is not None
        target = expires + offset_ms
        if target > self.clock.now_ms:  # time never runs backwards
            self.clock.advance(target - self.clock.now_ms)
        expected = self.live(key)
        result = self.store.get(key)
        assert (result is None) if expected is None else exact(result) == expected.json_text

    @rule()
    def cleanup(self) -> None:
        now = self.clock.now_ms
        expired = [key for key, item in self.model.items() if item.expired(now)]
        assert self.store.cleanup() == len(expired)
        for key in expired:
            del self.model[key]

    @rule()
    def clear(self) -> None:
        self.store.clear()
        self.model.clear()

    # -- after every step ----------------------------------------------------------------------

    @invariant()
    def stats_match_the_model(self) -> None:
        now = self.clock.now_ms
        live = [item for item in self.model.values() if not item.expired(now)]
        stats = self.store.get_stats()
        assert stats.total_items == len(live)
        assert stats.expired_items == len(self.model) - len(live)
        assert stats.estimated_size_bytes == sum(item.stored_bytes for item in live)


class InMemoryCacheMachine(CacheMachine):
    def make_store(self, clock: FakeClock) -> AnyStore:
        return InMemoryCacheStore(clock=clock)


TestInMemoryCacheAgainstModel = InMemoryCacheMachine.TestCase
TestInMemoryCacheAgainstModel.settings = settings(
    max_examples=50, stateful_step_count=30, deadline=None
)


def test_dynamodb_cache_agrees_with_the_model(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    # One table for every example (creating one per example would dominate the run time);
    # each machine clears it first. make_table_name deletes it afterwards.
    table_name = make_table_name()
    create_table(table_name, endpoint=endpoint, region=REGION)

    class DynamoDBCacheMachine(CacheMachine):
        def make_store(self, clock: FakeClock) -> AnyStore:
            return DynamoDBCacheStore(
                table_name=table_name,
                endpoint=endpoint,
                region=REGION,
                cleanup_interval_ms=0,
                clock=clock,
            )

    run_state_machine_as_test(
        DynamoDBCacheMachine,
        settings=settings(max_examples=10, stateful_step_count=30, deadline=None),
    )
