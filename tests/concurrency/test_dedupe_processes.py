"""``DynamoDBDedupeStore`` across real processes, all on one DynamoDB Local table.

Each test starts its worker processes once ("spawn", so every worker is a fresh interpreter
with its own botocore client and its own ``DynamoDBDedupeStore``), then drives them with
commands through per-worker queues; racers are released together by a shared barrier. Workers
report wall-clock epoch milliseconds (the store's own clock) taken just before and just after
each call, so lease deadlines are argued about with intervals: a call that returned before a
deadline ran entirely before it, a call that started after it ran entirely after it.

The harness (worker processes, queues, timeouts, cleanup) is ``fleet``'s. Every wait is bounded
(queue reads, barrier waits, joins); whatever happens, the workers are stopped, then killed,
when the test ends. A worker whose parent disappears exits on its own after ``IDLE_EXIT_S``
without a command.

Every worker imports this module to find its code, so it does not import pytest (no fixtures
or marks of its own): that is a tenth of a second less per interpreter, 32 of them per test.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import botocore.session

from comic_vine_dynamodb_store.models import DedupeJob
from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.serialization import encode_value
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore
from tests.concurrency import fleet as harness
from tests.concurrency.fleet import (
    BARRIER_TIMEOUT_S,
    NO_REPLY,
    REGION,
    Fleet,
    NoReply,
    Outbox,
    WorkerSpec,
    now_ms,
)

HANG_S = 120.0


# --------------------------------------------------------------------------- worker side


@dataclass(frozen=True, slots=True)
class Attempt:
    """One ``register_or_join`` call of one worker."""

    worker: int
    job_id: str
    is_owner: bool
    started_ms: int
    returned_ms: int


@dataclass(frozen=True, slots=True)
class Timed:
    """One store call's answer, when it ran, and the DynamoDB requests it sent."""

    worker: int
    value: Any
    started_ms: int
    returned_ms: int
    requests: int


def append_line_and_read(path: str, sleep_s: float) -> dict[str, Any]:
    """The deduplicated job of the tests: one line into ``path``, a pause, the file read back.

    The result is the file's content, the same whichever process reads it; had a second
    process run the job meanwhile, its line would show in the result too.
    """
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"pid={os.getpid()} started_ms={now_ms()}\n")
    time.sleep(sleep_s)
    return {"lines": Path(path).read_text(encoding="utf-8").splitlines()}


class _Worker:
    """What a worker process does on command; every public method is a command."""

    def __init__(
        self,
        index: int,
        store: DynamoDBDedupeStore[Any],
        barrier: Barrier | None,
        outbox: Outbox,
    ) -> None:
        self.index = index
        self.store = store
        self.barrier = barrier
        self.outbox = outbox
        self.requests = 0
        self.announce_polling = False
        signals.operation_completed.connect(self._count, sender=store, weak=False)

    def _count(self, sender: object, event: signals.OperationEvent) -> None:
        self.requests += event.requests
        if self.announce_polling and event.operation == "wait_for":
            # The first read is done and the job was pending (nobody has finished it: the
            # parent waits for this message first), so this waiter is now polling.
            self.announce_polling = False
            self.outbox.put(("ok", "polling"))

    def _wait_barrier(self) -> None:
        if self.barrier is None:
            raise RuntimeError("this worker was started without a barrier")
        self.barrier.wait(BARRIER_TIMEOUT_S)

    def _timed(self, call: functools.partial[Any]) -> Timed:
        self.requests = 0
        started = now_ms()
        value = call()
        return Timed(self.index, value, started, now_ms(), self.requests)

    def register(self, key: str) -> Attempt:
        started = now_ms()
        registration = self.store.register_or_join(key)
        return Attempt(self.index, registration.job_id, registration.is_owner, started, now_ms())

    def race(self, prefix: str, rounds: int) -> list[Attempt]:
        """``rounds`` barrier-released ``register_or_join`` calls, on a fresh key each."""
        attempts = []
        for round_ in range(rounds):
            self._wait_barrier()
            attempts.append(self.register(f"{prefix}-{round_}"))
        return attempts

    def contend_until(self, key: str, stop_at_ms: int, pause_s: float) -> list[Attempt]:
        """``register_or_join`` again and again; no new attempt starts at or after
        ``stop_at_ms``."""
        attempts = []
        while now_ms() < stop_at_ms:
            attempts.append(self.register(key))
            time.sleep(pause_s)
        return attempts

    def register_and_hang(self, key: str) -> NoReply:
        """``register_or_join``, reply, then hang "mid-job": the test SIGKILLs us here."""
        self.outbox.put(("ok", self.register(key)))
        time.sleep(HANG_S)
        return NO_REPLY

    def register_together_after(self, key: str, not_before_ms: int) -> Attempt:
        """Wait until ``not_before_ms``, then for the others, then ``register_or_join``."""
        time.sleep(max(0.0, (not_before_ms - now_ms()) / 1000))
        self._wait_barrier()
        return self.register(key)

    def run_append(self, key: str, path: str, sleep_s: float) -> Timed:
        job = functools.partial(append_line_and_read, path, sleep_s)
        return self._timed(functools.partial(self.store.run, key, job))

    def run_together(self, key: str, path: str, sleep_s: float) -> Timed:
        self._wait_barrier()
        return self.run_append(key, path, sleep_s)

    def wait_for(self, key: str) -> Timed:
        return self._timed(functools.partial(self.store.wait_for, key))

    def wait_for_announced(self, key: str) -> Timed:
        """``wait_for``, first replying ``"polling"`` once its first read is done."""
        self.announce_polling = True
        try:
            return self.wait_for(key)
        finally:
            self.announce_polling = False

    def complete(self, key: str, value: Any, job_id: str | None) -> Timed:
        return self._timed(functools.partial(self.store.complete, key, value, job_id))

    def fail(self, key: str, error: str, job_id: str | None) -> Timed:
        return self._timed(functools.partial(self.store.fail, key, error, job_id))

    def is_in_progress(self, key: str) -> Timed:
        return self._timed(functools.partial(self.store.is_in_progress, key))


def make_worker(spec: WorkerSpec, barrier: Barrier | None, outbox: Outbox) -> _Worker:
    """A worker's store, its first request made (the client built before any race)."""
    store: DynamoDBDedupeStore[Any] = DynamoDBDedupeStore(
        table_name=spec.table, endpoint=spec.endpoint, region=REGION, **spec.options
    )
    store.is_in_progress(f"warm-up-{spec.index}")  # build the client before any race
    return _Worker(spec.index, store, barrier, outbox)


# --------------------------------------------------------------------------- parent side


def fleet_of(
    endpoint: str,
    table: str,
    options: Sequence[dict[str, Any]],
    *,
    barrier_parties: int | None = None,
) -> contextlib.AbstractContextManager[Fleet]:
    """Started dedupe workers, stopped (or killed) on the way out whatever happened."""
    return harness.fleet_of(
        make_worker,
        endpoint,
        table,
        options,
        barrier_parties=barrier_parties,
        name="dedupe-worker",
    )


@contextlib.contextmanager
def raw_dynamodb(endpoint: str) -> Iterator[Any]:
    """A plain botocore DynamoDB client on the session's DynamoDB Local."""
    client: Any = botocore.session.get_session().create_client(
        "dynamodb", region_name=REGION, endpoint_url=endpoint
    )
    try:
        yield client
    finally:
        client.close()


def raw_job(client: Any, table: str, key: str) -> dict[str, Any] | None:
    """The job item of ``key`` as DynamoDB holds it (consistent read), or None."""
    pk, sk = DedupeJob.key_of("", key)
    response = client.get_item(
        TableName=table, Key={"PK": {"S": pk}, "SK": {"S": sk}}, ConsistentRead=True
    )
    item: dict[str, Any] | None = response.get("Item")
    return item


def describe(attempts: Sequence[Attempt], origin_ms: int) -> str:
    return "\n".join(
        f"  worker {a.worker}: owner={a.is_owner} job={a.job_id[:8]} "
        f"[{a.started_ms - origin_ms:+d}, {a.returned_ms - origin_ms:+d}] ms"
        for a in sorted(attempts, key=lambda a: a.started_ms)
    )


# --------------------------------------------------------------------------- tests


def test_32_processes_racing_on_one_key_make_exactly_one_owner(
    endpoint: str, table_name: str
) -> None:
    workers, rounds = 32, 20
    with fleet_of(endpoint, table_name, [{}] * workers, barrier_parties=workers) as fleet:
        per_worker: list[list[Attempt]] = fleet.call_all(range(workers), "race", "race", rounds)

    owner_jobs = set()
    for round_ in range(rounds):
        attempts = [attempts[round_] for attempts in per_worker]
        owners = [a for a in attempts if a.is_owner]
        assert len(owners) == 1, (
            f"round {round_}: {len(owners)} owners\n"
            f"{describe(attempts, min(a.started_ms for a in attempts))}"
        )
        joined = {a.job_id for a in attempts if not a.is_owner}
        assert joined == {owners[0].job_id}, f"round {round_}: joiners saw {joined}"
        owner_jobs.add(owners[0].job_id)
    assert len(owner_jobs) == rounds


def test_16_processes_running_one_key_run_the_job_once_and_all_get_its_result(
    endpoint: str, table_name: str, tmp_path: Path
) -> None:
    workers = 16
    output = tmp_path / "job.log"
    with fleet_of(endpoint, table_name, [{}] * workers, barrier_parties=workers) as fleet:
        results: list[Timed] = fleet.call_all(
            range(workers), "run_together", "run-once", str(output), 0.5
        )

    lines = output.read_text(encoding="utf-8").splitlines()
    timings = "\n".join(
        f"  worker {r.worker}: run [{r.started_ms}, {r.returned_ms}] ms, {r.requests} requests"
        for r in sorted(results, key=lambda r: r.started_ms)
    )
    # The barrier starts all 16 calls within ~0.1 s of each other, well inside the job's
    # 0.5 s. (A call starting after the job had completed would rightly run it again: the
    # timings in the message tell that apart from two owners.)
    assert len(lines) == 1, f"the job ran {len(lines)} times: {lines}\n{timings}"
    assert all(r.value == {"lines": lines} for r in results), [r.value for r in results]


def test_an_owner_killed_mid_job_blocks_the_key_until_its_lease_ends_then_one_process_takes_it(
    endpoint: str, table_name: str
) -> None:
    lease_s, contenders = 2, range(1, 9)
    key = "killed-owner"
    options = [{"default_ttl_seconds": lease_s}] * (1 + len(contenders))
    with (
        raw_dynamodb(endpoint) as raw,
        fleet_of(endpoint, table_name, options, barrier_parties=len(contenders)) as fleet,
    ):
        fleet.send(0, "register_and_hang", key)
        dead: Attempt = fleet.result(0)
        assert dead.is_owner
        assert fleet.kill(0) == -signal.SIGKILL

        item = raw_job(raw, table_name, key)
        assert item is not None
        assert item["JobId"]["S"] == dead.job_id
        assert item["Status"]["S"] == "pending"
        deadline = int(item["LeaseExpiresAt"]["N"])
        assert dead.started_ms + lease_s * 1000 <= deadline <= dead.returned_ms + lease_s * 1000
        assert now_ms() < deadline - 1000, "too little of the lease left to test it"

        # While the lease runs: every contender retries, nobody may take the key. New
        # attempts stop 150 ms before the deadline, so (almost) none straddles it.
        during: list[Attempt] = [
            a
            for attempts in fleet.call_all(contenders, "contend_until", key, deadline - 150, 0.01)
            for a in attempts
        ]
        # After it: one barrier-released round of the same contenders.
        after: list[Attempt] = fleet.call_all(
            contenders, "register_together_after", key, deadline + 1
        )

    report = describe([dead, *during, *after], deadline)
    within = [a for a in during if a.returned_ms < deadline]
    assert len(within) >= len(contenders), f"too few attempts within the lease\n{report}"
    assert not any(a.is_owner for a in within), f"the key was taken within the lease\n{report}"
    assert {a.job_id for a in within} == {dead.job_id}, report
    assert all(a.started_ms >= deadline for a in after), report

    # Attempts straddling the deadline may own; so may the round after it. Exactly one
    # attempt from the deadline on owns, and the rest of the round joins its job.
    new_owners = [a for a in [*during, *after] if a.is_owner]
    assert len(new_owners) == 1, f"{len(new_owners)} owners after the lease ended\n{report}"
    new_owner = new_owners[0]
    assert new_owner.job_id != dead.job_id
    assert new_owner.returned_ms >= deadline
    assert {a.job_id for a in after if not a.is_owner} == {new_owner.job_id}, report
    assert max(a.returned_ms for a in after) < new_owner.started_ms + lease_s * 1000, (
        f"the round outlasted the new owner's lease; the machine is too slow\n{report}"
    )


def test_a_waiter_timing_out_never_changes_the_owners_job(endpoint: str, table_name: str) -> None:
    key = "slow-job"
    value = {"issue": 4000, "name": "The Uncanny X-Men"}
    options: list[dict[str, Any]] = [{}, {"max_wait_time_ms": 300}, {}]
    with raw_dynamodb(endpoint) as raw, fleet_of(endpoint, table_name, options) as fleet:
        owner: Attempt = fleet.call(0, "register", key)
        assert owner.is_owner
        before = raw_job(raw, table_name, key)

        gave_up: Timed = fleet.call(1, "wait_for", key)
        assert gave_up.value is None
        assert gave_up.returned_ms - gave_up.started_ms >= 300
        assert raw_job(raw, table_name, key) == before
        assert fleet.call(1, "is_in_progress", key).value is True

        completed: Timed = fleet.call(0, "complete", key, value, owner.job_id)
        assert completed.value is True
        fresh: Timed = fleet.call(2, "wait_for", key)
        assert fresh.value == value
        assert fresh.requests == 1
        assert fleet.call(1, "wait_for", key).value == value


def test_a_failed_job_releases_its_waiters_with_none_and_can_be_run_again(
    endpoint: str, table_name: str, tmp_path: Path
) -> None:
    key = "flaky-job"
    output = tmp_path / "rerun.log"
    with raw_dynamodb(endpoint) as raw, fleet_of(endpoint, table_name, [{}] * 4) as fleet:
        owner: Attempt = fleet.call(0, "register", key)
        assert owner.is_owner

        waiters = [1, 2]
        for worker in waiters:
            fleet.send(worker, "wait_for_announced", key)
        for worker in waiters:
            assert fleet.result(worker) == "polling"  # read the pending job, polling now
        failed: Timed = fleet.call(0, "fail", key, "upstream said 502", owner.job_id)
        assert failed.value is True
        released: list[Timed] = [fleet.result(worker) for worker in waiters]
        for waiter in released:
            assert waiter.value is None
            assert waiter.started_ms < failed.started_ms
            assert waiter.returned_ms >= failed.started_ms
            # Released by the failure, well before its 30 s max wait.
            assert waiter.returned_ms - failed.returned_ms < 5000
        item = raw_job(raw, table_name, key)
        assert item is not None
        assert item["Status"]["S"] == "failed"
        assert fleet.call(3, "is_in_progress", key).value is False

        # A new run (two processes asking at once) runs the job again, once.
        reruns: list[Timed] = fleet.call_all([3, 1], "run_append", key, str(output), 0.5)
        lines = output.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 1, lines
        assert [r.value for r in reruns] == [{"lines": lines}] * 2
        # Everyone after gets the new result; the failed owner cannot overwrite it.
        for worker in (0, 2):
            assert fleet.call(worker, "wait_for", key).value == {"lines": lines}
        assert fleet.call(0, "complete", key, {"late": True}, owner.job_id).value is False
        assert fleet.call(2, "wait_for", key).value == {"lines": lines}


def test_expired_items_are_treated_as_absent(endpoint: str, table_name: str) -> None:
    """Pending past its lease and retention, or completed past its retention: either way
    the item is still in the table (its TTL is ahead) but must count as no job at all."""
    now = now_ms()
    stale_value = encode_value({"stale": True})
    statuses = ("pending", "completed")
    operations = ("register", "wait_for", "is_in_progress")

    def expired_item(key: str, status: str) -> dict[str, Any]:
        pk, sk = DedupeJob.key_of("", key)
        item: dict[str, Any] = {
            "PK": {"S": pk},
            "SK": {"S": sk},
            "JobId": {"S": "stale"},
            "Owner": {"S": "a-dead-process"},
            "Status": {"S": status},
            "CreatedAt": {"N": str(now - 120_000)},
            "UpdatedAt": {"N": str(now - 120_000)},
            "LeaseExpiresAt": {"N": str(now - 60_000)},
            "ExpiresAt": {"N": str(now - 60_000)},
            "TTL": {"N": str(now // 1000 + 3600)},  # not reaped yet
        }
        if status == "completed":
            item["Data"] = {"B": stale_value.payload}
            item["Enc"] = {"S": stale_value.encoding.value}
        return item

    with (
        raw_dynamodb(endpoint) as raw,
        fleet_of(endpoint, table_name, [{"max_wait_time_ms": 10_000}]) as fleet,
    ):
        for status in statuses:
            for operation in operations:
                key = f"expired-{status}-{operation}"
                raw.put_item(TableName=table_name, Item=expired_item(key, status))
        for status in statuses:
            taken: Attempt = fleet.call(0, "register", f"expired-{status}-register")
            assert taken.is_owner, status
            assert taken.job_id != "stale"
            item = raw_job(raw, table_name, f"expired-{status}-register")
            assert item is not None
            assert item["JobId"]["S"] == taken.job_id
            assert item["Status"]["S"] == "pending"
            assert int(item["LeaseExpiresAt"]["N"]) > taken.returned_ms

            waited: Timed = fleet.call(0, "wait_for", f"expired-{status}-wait_for")
            assert waited.value is None, status
            assert waited.requests == 1, status  # one read, no polling
            assert waited.returned_ms - waited.started_ms < 5000

            in_progress: Timed = fleet.call(0, "is_in_progress", f"expired-{status}-is_in_progress")
            assert in_progress.value is False, status
            assert in_progress.requests == 1
