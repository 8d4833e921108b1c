"""The cache store when an answer is lost: a retried write never undoes itself."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from comic_vine_dynamodb_store.stores.cache import DynamoDBCacheStore
from tests.faults.conftest import Injector
from tests.faults.test_dedupe_faults import commit_then_lose_the_answer

MakeStore = Callable[..., DynamoDBCacheStore[Any]]


@pytest.fixture
def make_store(make_dynamodb_store: Callable[..., Any]) -> MakeStore:
    """Cache stores with a 1 ms retry backoff, so retried faults cost no time."""
    return functools.partial(make_dynamodb_store, DynamoDBCacheStore, retry_delay_ms=1)


def big_text(chars: int) -> str:
    """Hex of a hash chain: zlib cannot shrink it below half, so 1.6 M chars stay chunked."""
    out: list[str] = []
    block = b"seed"
    while sum(map(len, out)) < chars:
        block = hashlib.sha256(block).digest()
        out.append(block.hex())
    return "".join(out)[:chars]


def test_a_chunked_head_whose_answer_was_lost_keeps_its_chunks(
    make_store: MakeStore, inject: Callable[[Any], Injector]
) -> None:
    store = make_store(max_retries=2)
    value = big_text(1_600_000)
    injector = inject(store)
    # The chunks go in (on the chunk model's client); the head's PutItem lands but its answer
    # is lost, so botocore resends it: the resend finds the head it wrote itself.
    injector.faults = [commit_then_lose_the_answer]
    store.set("page", value, 60)
    assert injector.sent == ["PutItem", "PutItem"]
    injector.faults = []
    assert store.get("page") == value
