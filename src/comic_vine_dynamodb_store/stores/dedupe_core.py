"""The dedupe rules, with no I/O: who may take a key, what a waiter sees, how waiters poll.

One job per key. Its life, for a lease of ``default_ttl_seconds`` (L)::

    t0                     t0 + L                                    t1 + L
    |--- pending (owner) ---|                                           |
    |   others: join, wait  |  lease over: the owner is taken for dead  |
    |   owner: complete(t1) --> completed, result kept until t1 + L ----|
    |   owner: fail(t1) -----> failed, kept until t1 + L ---------------|
    |                       |                                           |
    take-over: never        take-over: the next register_or_join wins   gone (absent)
                            (one conditional write decides it)

* ``register_or_join`` writes a new pending job only when the key is free: no item, an expired
  one, a finished (completed or failed) job, or a pending job past its lease. Otherwise the
  caller joins the live job.
* ``complete`` / ``fail`` change only a pending job within its lease (and, given a job id,
  only that job): an owner that outlived its lease must not overwrite a new owner's job.
* Waiters only read: a waiter that gives up never touches the job.

Every rule here takes ``now`` (epoch ms) and the job as the table holds it, so it is tested
under a frozen clock; the DynamoDB store states the same rules as condition expressions, the
in-memory store applies these functions directly. Clocks: machines' clocks are assumed in
sync; a clock that runs ahead by d takes a job over up to d early (keep d well below L).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from comic_vine_dynamodb_store.errors import InvalidKeyError
from comic_vine_dynamodb_store.models.dedupe import JobStatus

__all__ = [
    "JobView",
    "WaitState",
    "can_finish",
    "can_take",
    "check_job_id",
    "next_poll_delay_ms",
    "wait_state",
]


@dataclass(frozen=True, slots=True)
class JobView:
    """What a rule needs of a job."""

    job_id: str
    status: JobStatus
    lease_expires_at_ms: int
    expires_at_ms: int | None


class WaitState(enum.StrEnum):
    """What a waiter makes of the job it reads."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    GONE = "gone"  # absent, expired, or pending past its lease (owner presumed dead)


def _expired(job: JobView, now_ms: int) -> bool:
    return job.expires_at_ms is not None and now_ms >= job.expires_at_ms


def can_take(job: JobView | None, now_ms: int) -> bool:
    """True when a new owner may start a job over ``job`` at ``now_ms``."""
    if job is None or _expired(job, now_ms):
        return True
    if job.status is not JobStatus.PENDING:
        return True
    return now_ms >= job.lease_expires_at_ms


def can_finish(job: JobView | None, now_ms: int, job_id: str | None) -> bool:
    """True when ``complete``/``fail`` may change ``job`` (pending, within lease, ours)."""
    if job is None or _expired(job, now_ms) or job.status is not JobStatus.PENDING:
        return False
    if now_ms >= job.lease_expires_at_ms:
        return False
    return job_id is None or job.job_id == job_id


def wait_state(job: JobView | None, now_ms: int) -> WaitState:
    """How a waiter reads ``job`` at ``now_ms``."""
    if job is None or _expired(job, now_ms):
        return WaitState.GONE
    if job.status is JobStatus.COMPLETED:
        return WaitState.COMPLETED
    if job.status is JobStatus.FAILED:
        return WaitState.FAILED
    return WaitState.PENDING if now_ms < job.lease_expires_at_ms else WaitState.GONE


POLL_BACKOFF = 1.5
POLL_CAP_MS = 1000


def next_poll_delay_ms(previous_ms: int, *, cap_ms: int = POLL_CAP_MS) -> int:
    """The next pause of a waiter: 1.5x the last one, capped (at least the last one)."""
    return max(previous_ms, min(cap_ms, round(previous_ms * POLL_BACKOFF)))


def check_job_id(job_id: object) -> None:
    """Refuse a ``job_id`` that is neither ``None`` nor a str, before any request (any str is
    a fine question: one that names no job is answered ``False``)."""
    if job_id is not None and not isinstance(job_id, str):
        raise InvalidKeyError(f"job_id must be a str or None, got {type(job_id).__name__}")
