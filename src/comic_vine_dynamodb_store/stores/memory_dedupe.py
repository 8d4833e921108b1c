"""``InMemoryDedupeStore``: the dedupe contract in one process, for tests and single-process use.

The in-memory twin of :class:`~comic_vine_dynamodb_store.stores.dedupe.DynamoDBDedupeStore`.
It keeps the DynamoDB store's observable behaviour rather than a dict's, so code tested against
it behaves the same in production:

* every decision (may a caller take the key, may ``complete``/``fail`` change the job, what a
  waiter sees) is made by the pure rules of :mod:`.dedupe_core`, the same rules the DynamoDB
  store states as condition expressions, on the injected clock;
* results are stored *encoded* with the shared codec, so the same values are refused with the
  same errors (and too large ones with the same ``ItemTooLargeError``), a caller mutating its
  object after ``complete`` does not change the result, and every waiter gets a fresh object;
* failed jobs keep the same bounded error text (:func:`.dedupe.describe_error`);
* arguments are checked in the DynamoDB store's order, so the same bad call raises the same
  error.

What differs is only what one process makes possible: a waiter sleeps on a condition variable
and wakes as soon as the job finishes, instead of polling. Nothing is shared between
processes: a second process has its own, empty store.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import TypeAdapter

from comic_vine_dynamodb_store.clock import Clock, system_clock_ms
from comic_vine_dynamodb_store.config import InMemoryDedupeStoreOptions
from comic_vine_dynamodb_store.keys import validate_key
from comic_vine_dynamodb_store.models import DedupeJob, JobStatus
from comic_vine_dynamodb_store.serialization import (
    MAX_ITEM_BYTES,
    CorruptValueError,
    EncodedValue,
    check_item_size,
    decode_value,
    encode_value,
    type_adapter_for,
)
from comic_vine_dynamodb_store.stores.base import InMemoryStore, announce_join
from comic_vine_dynamodb_store.stores.contracts import (
    DedupeStats,
    Registration,
)
from comic_vine_dynamodb_store.stores.dedupe import describe_error, run_deduplicated
from comic_vine_dynamodb_store.stores.dedupe_core import (
    JobView,
    WaitState,
    can_finish,
    can_take,
    check_job_id,
    next_poll_delay_ms,
    wait_state,
)

__all__ = ["InMemoryDedupeStore"]

_log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Job:
    """One key's job as the DynamoDB item holds it (immutable: a change replaces the record,
    so a reader may decode a result outside the lock)."""

    job_id: str
    owner_token: str
    status: JobStatus
    lease_expires_at_ms: int
    expires_at_ms: int
    created_at_ms: int
    updated_at_ms: int
    payload: bytes | None = None
    encoding: str | None = None
    error: str | None = None

    def view(self) -> JobView:
        return JobView(
            job_id=self.job_id,
            status=self.status,
            lease_expires_at_ms=self.lease_expires_at_ms,
            expires_at_ms=self.expires_at_ms,
        )


def _view(job: _Job | None) -> JobView | None:
    return None if job is None else job.view()


class InMemoryDedupeStore(InMemoryStore, Generic[T]):
    """De-duplicates work by key in this process: the first caller owns the job, the others
    get its result.

    ``default_ttl_seconds`` is both the owner's lease and how long a finished job's outcome is
    kept, as in the DynamoDB store. ``wait_for`` waits at most ``max_wait_time_ms``; it wakes
    as soon as the job finishes, and rechecks at least every ``poll_interval_ms`` because a
    lease ends by the clock alone (nobody notifies it). A ``sleep`` function, when given,
    replaces that wait with the DynamoDB store's polling (``poll_interval_ms``, 1.5x slower each
    time), so a test can drive both stores through the same fake sleep. ``value_type`` validates
    results on read. Every method is thread-safe: one lock guards the jobs.
    """

    store_name: ClassVar[str] = "memory-dedupe"
    """What errors report as the table: there is none, but the field is expected."""

    def __init__(
        self,
        *,
        value_type: Any = None,
        default_ttl_seconds: int = 300,
        max_wait_time_ms: int = 30_000,
        poll_interval_ms: int = 100,
        clock: Clock = system_clock_ms,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.options = InMemoryDedupeStoreOptions(
            default_ttl_seconds=default_ttl_seconds,
            max_wait_time_ms=max_wait_time_ms,
            poll_interval_ms=poll_interval_ms,
        )
        self._adapter: TypeAdapter[Any] | None = type_adapter_for(value_type)
        self._clock = clock
        self._sleep = sleep
        self._lease_ms = self.options.default_ttl_seconds * 1000
        super().__init__()
        self._changed = threading.Condition(self._lock)
        """Notified whenever a job finishes or the store closes: what waiters sleep on."""
        self._jobs: dict[str, _Job] = {}
        self.owner_token = uuid.uuid4().hex
        """Recorded in every job this store starts, as the DynamoDB store does."""

    # -- taking a key ------------------------------------------------------------------------

    def register_or_join(self, key: str) -> Registration:
        """Own a new job for ``key``, or learn the live job's id (``can_take`` decides)."""
        validate_key(key)
        job_id = uuid.uuid4().hex
        with self._lock:
            self._check_open("register_or_join")
            # The clock is read under the lock, so leases follow the order of the decisions.
            now = self._clock()
            current = self._jobs.get(key)
            joined = None
            if current is not None and not can_take(current.view(), now):
                joined = current.job_id
            else:
                self._jobs[key] = _Job(
                    job_id=job_id,
                    owner_token=self.owner_token,
                    status=JobStatus.PENDING,
                    lease_expires_at_ms=now + self._lease_ms,
                    expires_at_ms=now + self._lease_ms,
                    created_at_ms=now,
                    updated_at_ms=now,
                )
        if joined is not None:
            announce_join(self, self.table_name, key, joined)
            return Registration(job_id=joined, is_owner=False)
        return Registration(job_id=job_id, is_owner=True)

    def register(self, key: str) -> str:
        """The id of the live job for ``key``, starting one if there is none."""
        return self.register_or_join(key).job_id

    # -- finishing a job ---------------------------------------------------------------------

    def complete(self, key: str, value: T, job_id: str | None = None) -> bool:
        """Publish ``value`` as the pending job's result; False if no such job (or not ours).

        The value is checked before anything changes, in the DynamoDB store's order: a value
        JSON cannot hold raises ``TypeError``/``ValueError``, a bad key ``InvalidKeyError``,
        a result that would not fit the item ``ItemTooLargeError``; the job stays pending.
        """
        encoded = encode_value(value)
        validate_key(key)
        self._check_item_size(key, encoded)
        return self._finish(
            "complete",
            key,
            job_id,
            status=JobStatus.COMPLETED,
            payload=encoded.payload,
            encoding=encoded.encoding.value,
        )

    def fail(self, key: str, error: BaseException | str, job_id: str | None = None) -> bool:
        """Mark the pending job failed; False if no such job (or not ours)."""
        validate_key(key)
        return self._finish(
            "fail", key, job_id, status=JobStatus.FAILED, error=describe_error(error)
        )

    def _finish(self, operation: str, key: str, job_id: str | None, **changes: Any) -> bool:
        check_job_id(job_id)
        with self._lock:
            self._check_open(operation)
            now = self._clock()
            job = self._jobs.get(key)
            if job is None or not can_finish(job.view(), now, job_id):
                return False
            # The outcome is kept for one more lease from now, as the DynamoDB store keeps it.
            self._jobs[key] = replace(
                job, updated_at_ms=now, expires_at_ms=now + self._lease_ms, **changes
            )
            self._changed.notify_all()
        return True

    def _check_item_size(self, key: str, encoded: EncodedValue) -> None:
        # The DynamoDB store refuses a result its item cannot hold; measuring the same probe
        # item keeps a twin from accepting results production would refuse.
        pk, sk = DedupeJob.key_of("", key)
        probe = DedupeJob(pk, sk, data=encoded.payload, encoding=encoded.encoding.value)
        probe.set_expiry(self._clock() + self._lease_ms)
        check_item_size(
            probe.serialize(null_check=False),
            limit_bytes=MAX_ITEM_BYTES - 1024,  # room for the job's other attributes
            operation="complete",
            table=self.table_name,
        )

    # -- reading -----------------------------------------------------------------------------

    def is_in_progress(self, key: str) -> bool:
        """True while a live job for ``key`` is pending within its lease."""
        validate_key(key)
        with self._lock:
            self._check_open("is_in_progress")
            return self._state(key)[0] is WaitState.PENDING

    def wait_for(self, key: str) -> T | None:
        """The result of ``key``'s job once it completes; None if it failed, expired, is
        absent, or ``max_wait_time_ms`` passed first. Only reads: giving up changes nothing."""
        validate_key(key)
        deadline = time.monotonic() + self.options.max_wait_time_ms / 1000
        if self._sleep is not None:
            return self._poll(key, deadline, self._sleep)
        poll_s = self.options.poll_interval_ms / 1000
        with self._lock:
            while True:
                self._check_open("wait_for")
                state, job = self._state(key)
                if state is not WaitState.PENDING:
                    break
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    return None
                # Woken at once by complete/fail/close; the timeout catches a lease that ends.
                self._changed.wait(min(poll_s, remaining_s))
        return self._result(key, state, job)

    def _poll(self, key: str, deadline: float, sleep: Callable[[float], None]) -> T | None:
        """``wait_for`` through the injected ``sleep``: the DynamoDB store's schedule."""
        delay_ms = self.options.poll_interval_ms
        while True:
            with self._lock:
                self._check_open("wait_for")
                state, job = self._state(key)
            if state is not WaitState.PENDING:
                return self._result(key, state, job)
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return None
            sleep(min(delay_ms / 1000, remaining_s))
            delay_ms = next_poll_delay_ms(delay_ms)

    def _state(self, key: str) -> tuple[WaitState, _Job | None]:
        """How a waiter reads ``key``'s job now (call with the lock held)."""
        job = self._jobs.get(key)
        return wait_state(_view(job), self._clock()), job

    def _result(self, key: str, state: WaitState, job: _Job | None) -> T | None:
        if state is not WaitState.COMPLETED or job is None:
            return None
        if job.payload is None or job.encoding is None:
            return None
        try:
            value: T = decode_value(job.payload, job.encoding, self._adapter)
        except CorruptValueError:
            _log.warning("dedupe result for %r does not decode; treated as absent", key)
            return None
        return value

    # -- the whole flow ----------------------------------------------------------------------

    def run(self, key: str, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` once for everyone asking for ``key`` now; the others get its result.

        See :func:`~comic_vine_dynamodb_store.stores.dedupe.run_deduplicated`.
        """
        return run_deduplicated(self, key, fn)

    # -- store-wide --------------------------------------------------------------------------

    def get_stats(self) -> DedupeStats:
        """Jobs by status; expired ones (past lease or retention) counted apart."""
        by_state = dict.fromkeys(WaitState, 0)
        with self._lock:
            self._check_open("get_stats")
            now = self._clock()
            for job in self._jobs.values():
                by_state[wait_state(job.view(), now)] += 1
        return DedupeStats(
            total_jobs=sum(by_state.values()) - by_state[WaitState.GONE],
            pending_jobs=by_state[WaitState.PENDING],
            completed_jobs=by_state[WaitState.COMPLETED],
            failed_jobs=by_state[WaitState.FAILED],
            expired_jobs=by_state[WaitState.GONE],
        )

    def cleanup(self) -> int:
        """Remove expired jobs now; returns how many were removed.

        Exactly the jobs ``get_stats`` counts as expired: a pending job expires with its lease
        (both are set to the same instant), so "gone" to a waiter is "past ``ExpiresAt``",
        what the DynamoDB store's cleanup removes.
        """
        with self._lock:
            self._check_open("cleanup")
            now = self._clock()
            gone = [
                key
                for key, job in self._jobs.items()
                if wait_state(job.view(), now) is WaitState.GONE
            ]
            for key in gone:
                del self._jobs[key]
        return len(gone)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the jobs; later calls raise ``StoreClosedError``. Idempotent.

        Waiters are woken and raise ``StoreClosedError``, as a DynamoDB waiter does on its
        next poll.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.clear()
            self._changed.notify_all()

    # -- internals ---------------------------------------------------------------------------
