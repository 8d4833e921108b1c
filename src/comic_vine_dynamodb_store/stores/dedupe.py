"""``DynamoDBDedupeStore``: one in-flight job per key across every process using the table.

The rules (who may take a key, what waiters see, the lease timeline) are in
:mod:`.dedupe_core`; this module states them as DynamoDB condition expressions. Costs, in
DynamoDB requests: ``register_or_join`` 1 (a conditional PutItem; a lost race returns the live
job with the failure, so it needs no second read), ``complete`` / ``fail`` 1 (a conditional
UpdateItem), ``is_in_progress`` 1, ``wait_for`` 1 per poll (a consistent GetItem; 1 in all on a
finished job), ``run`` 2 for the owner and 1 + polls for the others.

Ownership is decided by the job id each ``register_or_join`` call draws: when botocore retries
a PutItem whose first attempt committed but whose answer was lost, the retry fails its
condition and gets back a job carrying its own id, so the caller still knows it owns the job.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar, cast

from pydantic import TypeAdapter
from pynamodb.expressions.condition import Condition

from comic_vine_dynamodb_store.clock import Clock, system_clock_ms
from comic_vine_dynamodb_store.config import DedupeStoreOptions
from comic_vine_dynamodb_store.errors import DynamoDBStoreError, StoreUnavailableError
from comic_vine_dynamodb_store.keys import validate_key
from comic_vine_dynamodb_store.models import DedupeJob, JobStatus
from comic_vine_dynamodb_store.models.base import expiry_actions
from comic_vine_dynamodb_store.observability.signals import Fallback
from comic_vine_dynamodb_store.serialization import (
    MAX_ITEM_BYTES,
    CorruptValueError,
    check_item_size,
    decode_value,
    encode_value,
    type_adapter_for,
)
from comic_vine_dynamodb_store.stores.base import (
    DynamoDBStore,
    announce_fallback,
    announce_join,
    falls_back,
    miss,
    missing,
    not_done,
    raising_unavailable,
)
from comic_vine_dynamodb_store.stores.contracts import DedupeStats, DedupeStore, Registration
from comic_vine_dynamodb_store.stores.dedupe_core import (
    JobView,
    WaitState,
    check_job_id,
    next_poll_delay_ms,
    wait_state,
)

__all__ = ["DynamoDBDedupeStore", "describe_error", "run_deduplicated"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_ERROR_CHARS = 2000


def describe_error(error: BaseException | str) -> str:
    """The text a failed job keeps of its error (bounded, so the item stays small)."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return text[:_MAX_ERROR_CHARS]


def run_deduplicated(store: DedupeStore[T], key: str, fn: Callable[[], T]) -> T | None:
    """The ``run`` of every dedupe store, written once over the contract.

    The owner runs ``fn`` and publishes its result (or its failure, then re-raises);
    everyone else waits and gets the result, or None if the owner failed or the wait timed
    out. A result that cannot be published (not JSON, too large, DynamoDB down) is still
    returned to the owner; the job is marked failed so waiters stop waiting.
    """
    registration = store.register_or_join(key)
    if not registration.is_owner:
        return store.wait_for(key)

    def fail_quietly(error: BaseException | str) -> None:
        try:
            store.fail(key, error, job_id=registration.job_id)
        except DynamoDBStoreError as exc:  # the lease frees the key anyway
            _log.warning("could not mark the dedupe job for %r failed: %s", key, exc)

    try:
        value = fn()
    except BaseException as exc:
        fail_quietly(exc)
        raise
    try:
        store.complete(key, value, job_id=registration.job_id)
    except (DynamoDBStoreError, TypeError, ValueError) as exc:
        _log.warning("could not publish the dedupe result for %r: %s", key, exc)
        fail_quietly(f"result not published: {exc}")
    return value


def owned_locally(
    store: Any, mode: str, key: str, *args: Any, **kwargs: Any
) -> tuple[Registration, Fallback]:
    """Fallback of ``register_or_join``: this caller owns a job nobody else knows of, and so
    runs the work itself."""
    return Registration(job_id=uuid.uuid4().hex, is_owner=True), "local"


def _view(job: DedupeJob | None) -> JobView | None:
    if job is None:
        return None
    return JobView(
        job_id=job.job_id,
        status=JobStatus(job.status),
        lease_expires_at_ms=int(job.lease_expires_at_ms),
        expires_at_ms=job.expires_at_ms_int,
    )


class DynamoDBDedupeStore(DynamoDBStore[DedupeStoreOptions], Generic[T]):
    """De-duplicates work by key: the first caller owns the job, the others get its result.

    ``default_ttl_seconds`` is both the owner's lease and how long a finished job's outcome is
    kept; ``wait_for`` polls from ``poll_interval_ms``, 1.5x slower each time (at most 1 s),
    for at most ``max_wait_time_ms``. ``value_type`` validates results on read.
    """

    options_model: ClassVar[type[DedupeStoreOptions]] = DedupeStoreOptions
    store_name: ClassVar[str] = "dedupe"
    item_model: ClassVar[type[DedupeJob]] = DedupeJob

    def __init__(
        self,
        *,
        value_type: Any = None,
        options: DedupeStoreOptions | None = None,
        clock: Clock = system_clock_ms,
        sleep: Callable[[float], None] = time.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(options=options, clock=clock, **kwargs)
        self._adapter: TypeAdapter[Any] | None = type_adapter_for(value_type)
        self._jobs = self._model(DedupeJob)
        self._sleep = sleep
        self._lease_ms = self.options.default_ttl_seconds * 1000
        self.owner_token = uuid.uuid4().hex
        """Written into every job this store starts: which store (process) owns it."""
        self._start_background("cleanup", self.options.cleanup_interval_ms, self.cleanup)

    # -- taking a key ----------------------------------------------------------------------

    @falls_back(owned_locally)
    def register_or_join(self, key: str) -> Registration:
        """Own a new job for ``key`` (one conditional write), or learn the live job's id."""
        job_id = uuid.uuid4().hex
        now = self._now_ms()
        job = self._jobs.build_pending(
            self._namespace,
            key,
            job_id=job_id,
            owner_token=self.owner_token,
            now_ms=now,
            lease_ms=self._lease_ms,
        )
        attributes = job.serialize()
        outcome = self._run(
            "register_or_join",
            lambda: self._jobs.put_unless_blocked(attributes, condition=self._free(now)),
            key=key,
        )
        blocking = outcome.item
        if not outcome.blocked:
            return Registration(job_id=job_id, is_owner=True)
        if blocking is None:  # the condition admits a missing item: DynamoDB broke its word
            raise DynamoDBStoreError(
                "register_or_join: condition failed without a blocking item",
                operation="register_or_join",
                table=self.table_name,
            )
        # Our own id: our write committed, its answer was lost, botocore retried.
        if blocking.job_id == job_id:
            return Registration(job_id=job_id, is_owner=True)
        announce_join(self, self.table_name, key, blocking.job_id)
        return Registration(job_id=blocking.job_id, is_owner=False)

    def register(self, key: str) -> str:
        """The id of the live job for ``key``, starting one if there is none."""
        return self.register_or_join(key).job_id

    # -- finishing a job -------------------------------------------------------------------

    @falls_back(not_done)
    def complete(self, key: str, value: T, job_id: str | None = None) -> bool:
        """Publish ``value`` as the pending job's result; False if no such job (or not ours).

        The value is checked (JSON, size) before anything is written.
        """
        encoded = encode_value(value)
        now = self._now_ms()
        pk, sk = DedupeJob.key_of(self._namespace, key)
        probe = self._jobs(pk, sk, data=encoded.payload, encoding=encoded.encoding.value)
        probe.set_expiry(now + self._lease_ms)
        check_item_size(
            probe.serialize(null_check=False),
            limit_bytes=MAX_ITEM_BYTES - 1024,  # room for the job's other attributes
            operation="complete",
            table=self.table_name,
        )
        jobs = self._jobs
        return self._finish(
            "complete",
            key,
            job_id,
            now,
            [
                jobs.status.set(JobStatus.COMPLETED.value),
                jobs.data.set(encoded.payload),
                jobs.encoding.set(encoded.encoding.value),
            ],
        )

    @falls_back(not_done)
    def fail(self, key: str, error: BaseException | str, job_id: str | None = None) -> bool:
        """Mark the pending job failed; False if no such job (or not ours)."""
        jobs = self._jobs
        return self._finish(
            "fail",
            key,
            job_id,
            self._now_ms(),
            [jobs.status.set(JobStatus.FAILED.value), jobs.error.set(describe_error(error))],
        )

    def _finish(
        self, operation: str, key: str, job_id: str | None, now: int, actions: list[Any]
    ) -> bool:
        check_job_id(job_id)
        jobs = self._jobs
        pk, sk = DedupeJob.key_of(self._namespace, key)
        keep_until = now + self._lease_ms
        call_token = uuid.uuid4().hex
        actions = [
            *actions,
            jobs.finished_by.set(call_token),
            jobs.updated_at_ms.set(now),
            *expiry_actions(jobs, keep_until, moved_from_ms=None),
        ]
        condition = (
            (jobs.status == JobStatus.PENDING.value)
            & (jobs.lease_expires_at_ms > now)
            & (jobs.expires_at_ms > now)
        )
        if job_id is not None:
            condition &= jobs.job_id == job_id

        def update() -> bool:
            outcome = jobs.update_unless_blocked(pk, sk, actions=actions, condition=condition)
            # A failed condition can be our own write, applied by an attempt whose answer was
            # lost before botocore retried: the job then carries this call's token.
            return not outcome.blocked or (
                outcome.item is not None and outcome.item.finished_by == call_token
            )

        return self._run(operation, update, key=key)

    # -- reading ---------------------------------------------------------------------------

    def _read(self, operation: str, key: str) -> DedupeJob | None:
        pk, sk = DedupeJob.key_of(self._namespace, key)

        def get() -> DedupeJob | None:
            try:
                return self._jobs.get(pk, sk, consistent_read=True)
            except self._jobs.DoesNotExist:
                return None

        return self._run(operation, get, key=key)

    @falls_back(missing)
    def is_in_progress(self, key: str) -> bool:
        """True while a live job for ``key`` is pending within its lease."""
        job = self._read("is_in_progress", key)
        return wait_state(_view(job), self._now_ms()) is WaitState.PENDING

    @falls_back(miss)
    def wait_for(self, key: str) -> T | None:
        """The result of ``key``'s job once it completes; None if it failed, expired, is
        absent, or ``max_wait_time_ms`` passed first. Only reads: giving up changes nothing."""
        validate_key(key)
        deadline = time.monotonic() + self.options.max_wait_time_ms / 1000
        delay_ms = self.options.poll_interval_ms
        while True:
            job = self._read("wait_for", key)
            state = wait_state(_view(job), self._now_ms())
            if state is WaitState.COMPLETED and job is not None:
                return self._decode(key, job)
            if state is not WaitState.PENDING:
                return None
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return None
            self._sleep(min(delay_ms / 1000, remaining_s))
            delay_ms = next_poll_delay_ms(delay_ms)

    def _decode(self, key: str, job: DedupeJob) -> T | None:
        if job.data is None or job.encoding is None:
            return None
        try:
            value: T = decode_value(job.data, job.encoding, self._adapter)
        except CorruptValueError:
            _log.warning("dedupe result for %r does not decode; treated as absent", key)
            return None
        return value

    # -- the whole flow --------------------------------------------------------------------

    def run(self, key: str, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` once for everyone asking for ``key`` now; the others get its result.

        See :func:`run_deduplicated`. With ``on_unavailable`` other than ``raise``, a caller
        that cannot register or wait because DynamoDB is unavailable runs ``fn`` itself (a
        joiner too: it cannot learn the owner's result), and ``store_fallback`` says so.
        """
        ran = False

        def work() -> T:
            nonlocal ran
            ran = True
            return fn()

        try:
            with raising_unavailable():
                return run_deduplicated(self, key, work)
        except StoreUnavailableError as error:
            # Only registering and waiting can raise it here: a failed publish is swallowed
            # by run_deduplicated, so fn has not run for this caller.
            if ran or self.options.on_unavailable == "raise":
                raise
            announce_fallback(self, "run", key, "local", error)
            return fn()

    # -- store-wide ------------------------------------------------------------------------

    def get_stats(self) -> DedupeStats:
        """Jobs by status; expired ones (past lease or retention) counted apart."""
        now = self._now_ms()

        def count() -> DedupeStats:
            by_state = dict.fromkeys(WaitState, 0)
            for job in self._jobs.iter_index(self._namespace):
                by_state[wait_state(_view(job), now)] += 1
            return DedupeStats(
                total_jobs=sum(by_state.values()) - by_state[WaitState.GONE],
                pending_jobs=by_state[WaitState.PENDING],
                completed_jobs=by_state[WaitState.COMPLETED],
                failed_jobs=by_state[WaitState.FAILED],
                expired_jobs=by_state[WaitState.GONE],
            )

        return self._run("get_stats", count, bounded=False)

    def cleanup(self) -> int:
        """Remove expired jobs now; returns how many were removed."""
        return self._remove_expired(self._jobs)

    # -- conditions ------------------------------------------------------------------------

    def _free(self, now: int) -> Condition:
        """The key may be taken at ``now``: the condition form of ``dedupe_core.can_take``."""
        jobs = self._jobs
        finished = jobs.status.is_in(JobStatus.COMPLETED.value, JobStatus.FAILED.value)
        free = (
            jobs.pk.does_not_exist()
            | (jobs.expires_at_ms <= now)
            | finished
            | (jobs.lease_expires_at_ms <= now)
        )
        return cast(Condition, free)
