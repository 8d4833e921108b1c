"""The lease rules of the dedupe stores, under a frozen clock."""

from __future__ import annotations

import pytest

from comic_vine_dynamodb_store.models.dedupe import JobStatus
from comic_vine_dynamodb_store.stores.dedupe_core import (
    JobView,
    WaitState,
    can_finish,
    can_take,
    next_poll_delay_ms,
    wait_state,
)

T0 = 1_000_000
LEASE = 300_000


def job(status: JobStatus = JobStatus.PENDING, *, kept_until: int | None = None) -> JobView:
    expires = T0 + LEASE if status is JobStatus.PENDING else kept_until
    return JobView("j1", status, T0 + LEASE, expires)


def test_a_pending_job_is_taken_over_at_its_lease_deadline_and_never_before() -> None:
    pending = job()
    assert not can_take(pending, T0)
    assert not can_take(pending, T0 + LEASE - 1)
    assert can_take(pending, T0 + LEASE)
    assert can_take(None, T0)


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED])
def test_finished_jobs_are_free_at_once(status: JobStatus) -> None:
    assert can_take(job(status, kept_until=T0 + 2 * LEASE), T0 + 1)


def test_only_the_pending_job_within_its_lease_can_be_finished_and_only_by_its_id() -> None:
    pending = job()
    assert can_finish(pending, T0, None)
    assert can_finish(pending, T0, "j1")
    assert not can_finish(pending, T0, "someone-else")
    assert not can_finish(pending, T0 + LEASE, "j1")  # the owner outlived its lease
    assert not can_finish(job(JobStatus.COMPLETED, kept_until=T0 + LEASE), T0, "j1")
    assert not can_finish(None, T0, None)


@pytest.mark.parametrize(
    ("view", "now", "state"),
    [
        (None, T0, WaitState.GONE),
        (job(), T0, WaitState.PENDING),
        (job(), T0 + LEASE - 1, WaitState.PENDING),
        (job(), T0 + LEASE, WaitState.GONE),
        (job(JobStatus.COMPLETED, kept_until=T0 + 10), T0 + 9, WaitState.COMPLETED),
        (job(JobStatus.COMPLETED, kept_until=T0 + 10), T0 + 10, WaitState.GONE),
        (job(JobStatus.FAILED, kept_until=T0 + 10), T0, WaitState.FAILED),
        (job(JobStatus.FAILED, kept_until=None), T0 + 10**9, WaitState.FAILED),
    ],
)
def test_what_a_waiter_sees(view: JobView | None, now: int, state: WaitState) -> None:
    assert wait_state(view, now) is state


def test_polls_back_off_by_half_up_to_the_cap() -> None:
    delays = [100]
    for _ in range(8):
        delays.append(next_poll_delay_ms(delays[-1]))
    assert delays == [100, 150, 225, 338, 507, 760, 1000, 1000, 1000]
    assert next_poll_delay_ms(5000) == 5000  # never shorter than the last pause
    assert next_poll_delay_ms(1) == 2  # always grows towards the cap
