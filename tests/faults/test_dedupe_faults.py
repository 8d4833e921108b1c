"""The dedupe store when the network misbehaves between it and DynamoDB."""

from __future__ import annotations

import functools
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from comic_vine_dynamodb_store.errors import ThrottlingError
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore
from tests.faults.conftest import Injector, error_response, throttle

REGION = "us-east-1"


@pytest.fixture
def make_store(make_dynamodb_store: Callable[..., Any]) -> Callable[..., Any]:
    """Dedupe stores with a 1 ms retry backoff, so retried faults cost no time."""
    return functools.partial(make_dynamodb_store, DynamoDBDedupeStore, retry_delay_ms=1)


def commit_then_lose_the_answer(request: Any) -> Any:
    """Deliver the request to DynamoDB (so it commits), then answer the caller with a 500."""
    delivered = urllib.request.Request(
        request.url, data=request.body, headers=dict(request.headers.items()), method="POST"
    )
    with urllib.request.urlopen(delivered, timeout=10) as response:
        assert response.status == 200
    return error_response(request.url, 500, "InternalServerError", "answer lost")


def test_an_owner_whose_answer_was_lost_still_owns_after_the_retry(
    make_store: Callable[..., DynamoDBDedupeStore[Any]], inject: Callable[[Any], Injector]
) -> None:
    owner = make_store(max_retries=2)
    other = make_store()
    injector = inject(owner)
    injector.faults = [commit_then_lose_the_answer]
    registration = owner.register_or_join("k")
    # Two sends: the first committed (answer lost), the retry failed its condition and got
    # back the job with this call's own id: ownership is not lost, nor doubled.
    assert injector.sent == ["PutItem", "PutItem"]
    assert registration.is_owner
    joined = other.register_or_join("k")
    assert (joined.is_owner, joined.job_id) == (False, registration.job_id)
    assert owner.complete("k", "done", job_id=registration.job_id)
    assert other.wait_for("k") == "done"


def test_a_lost_answer_does_not_hand_someone_elses_job_to_the_retrier(
    make_store: Callable[..., DynamoDBDedupeStore[Any]], inject: Callable[[Any], Injector]
) -> None:
    first = make_store()
    late = make_store(max_retries=2)
    owned = first.register_or_join("k")
    injector = inject(late)
    injector.faults = [lambda request: error_response(request.url, 500, "InternalServerError")]
    joined = late.register_or_join("k")
    assert injector.sent == ["PutItem", "PutItem"]
    assert (joined.is_owner, joined.job_id) == (False, owned.job_id)


def test_throttling_on_register_is_a_typed_error_and_takes_nothing(
    make_store: Callable[..., DynamoDBDedupeStore[Any]], inject: Callable[[Any], Injector]
) -> None:
    store = make_store(max_retries=1)
    injector = inject(store)
    injector.default = throttle
    with pytest.raises(ThrottlingError) as caught:
        store.register_or_join("k")
    assert caught.value.operation == "register_or_join"
    assert len(injector.sent) == 2
    injector.default = None
    assert store.register_or_join("k").is_owner  # nothing was written


@pytest.mark.parametrize("finish", ["complete", "fail"])
def test_complete_and_fail_report_their_own_write_when_its_answer_was_lost(
    make_store: Callable[..., DynamoDBDedupeStore[Any]],
    inject: Callable[[Any], Injector],
    finish: str,
) -> None:
    owner = make_store(max_retries=2)
    waiter = make_store(max_wait_time_ms=0)
    job = owner.register_or_join("k")
    injector = inject(owner)
    injector.faults = [commit_then_lose_the_answer]
    if finish == "complete":
        assert owner.complete("k", {"v": 1}, job_id=job.job_id) is True
        assert waiter.wait_for("k") == {"v": 1}
    else:
        assert owner.fail("k", RuntimeError("boom"), job_id=job.job_id) is True
        assert waiter.wait_for("k") is None
    assert injector.sent == ["UpdateItem", "UpdateItem"]
    # A second finish is still refused: the job is no longer pending.
    assert owner.complete("k", 2, job_id=job.job_id) is False
