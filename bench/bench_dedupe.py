"""DynamoDB requests and capacity per ``DynamoDBDedupeStore`` call, and calls per second.

A measurement, not a test: it prints what it measured and whether the target (exactly one
DynamoDB request per ``register_or_join``, ``complete`` and ``wait_for`` on a finished job) is
met, and exits 0 either way. One DynamoDB Local (:func:`start_local_dynamodb`:
``DYNAMODB_ENDPOINT``, else Docker, else the jar) and one fresh table serve the whole run.

Two stores share the table, as two processes would: the *owner* store and the *other* store.
For each of ``--calls`` fresh keys, phase by phase (every key goes through a phase before the
next phase starts):

* ``register_or_join (owner)``: the owner store takes the free key (a conditional PutItem
  that succeeds);
* ``register_or_join (joiner)``: the other store asks for the same key while the job is
  pending (the PutItem fails its condition and returns the live job);
* ``complete``: the owner publishes a ~300-byte JSON result under its job id (a conditional
  UpdateItem);
* ``wait_for (completed)``: the other store waits for the finished job (one consistent
  GetItem, no polling).

Each call's answer is checked (owner, joined the owner's job, True, the value). Requests and
consumed capacity per call come from a counting pass: the ``requests`` and
``consumed_capacity`` of the ``operation_completed`` events of each phase, summed and divided
by its calls; HTTP requests counted on the client's ``before-send`` cross-check them. Calls per
second come from a second pass on other keys with nothing attached (as a store with no
receivers runs), after a warm-up.

    .venv/bin/python bench/bench_dedupe.py [--calls N] [--json] [--[no-]docker]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import REGION, counting_sends, progress

TARGET_REQUESTS_PER_CALL = 1
WARMUP_CALLS = 20
RESULT: dict[str, Any] = {
    "id": 123456,
    "name": "The Uncanny X-Men",
    "issue_number": "1",
    "cover_date": "1963-09-01",
    "volume": {"id": 2133, "name": "The X-Men"},
    "person_credits": [
        {"id": 40439, "name": "Stan Lee", "role": "writer, editor"},
        {"id": 5614, "name": "Jack Kirby", "role": "penciler, cover"},
    ],
    "deck": "Professor X gathers five gifted teenagers at his school for mutants.",
}

Store = DynamoDBDedupeStore[Any]


# --------------------------------------------------------------------------- the phases


@dataclass(frozen=True, slots=True)
class Phase:
    """One measured operation: which store calls it, and the call for key ``i``.

    ``call`` returns whether the answer was the expected one.
    """

    operation: str
    store: Store
    call: Callable[[int], bool]


def phases(owner: Store, other: Store, prefix: str) -> list[Phase]:
    """The four phases over keys ``<prefix>-<i>``, in the order they must run."""
    job_ids: dict[int, str] = {}

    def key(i: int) -> str:
        return f"{prefix}-{i}"

    def register_as_owner(i: int) -> bool:
        registration = owner.register_or_join(key(i))
        job_ids[i] = registration.job_id
        return registration.is_owner

    def register_as_joiner(i: int) -> bool:
        registration = other.register_or_join(key(i))
        return not registration.is_owner and registration.job_id == job_ids.get(i)

    def complete(i: int) -> bool:
        return owner.complete(key(i), RESULT, job_id=job_ids[i])

    def wait_for_completed(i: int) -> bool:
        return bool(other.wait_for(key(i)) == RESULT)

    return [
        Phase("register_or_join (owner)", owner, register_as_owner),
        Phase("register_or_join (joiner)", other, register_as_joiner),
        Phase("complete", owner, complete),
        Phase("wait_for (completed)", other, wait_for_completed),
    ]


# --------------------------------------------------------------------------- measuring


@dataclass(slots=True)
class Cost:
    """What one phase's calls cost, from its ``operation_completed`` events."""

    calls: int = 0
    wrong_answers: int = 0
    events: int = 0
    failures: int = 0
    requests: int = 0
    requests_sent: int = 0
    capacity: float = 0.0
    requests_per_event: list[int] = field(default_factory=list)

    @property
    def exactly_one_request_each(self) -> bool:
        """One event per call, each reporting one request, and one request sent per call."""
        return (
            self.calls > 0
            and self.events == self.calls
            and self.failures == 0
            and set(self.requests_per_event) == {TARGET_REQUESTS_PER_CALL}
            and self.requests_sent == self.calls * TARGET_REQUESTS_PER_CALL
        )


def store_client(store: Store) -> Any:
    """The botocore client the store's requests go out on."""
    return store._jobs._get_connection().connection.client


def count(phase: Phase, calls: int) -> Cost:
    """Run ``calls`` calls of ``phase`` with its store's events and client metered."""
    cost = Cost()

    def on_operation(sender: object, event: signals.OperationEvent) -> None:
        cost.events += 1
        cost.requests += event.requests
        cost.capacity += event.consumed_capacity
        cost.requests_per_event.append(event.requests)
        if event.outcome != "success":
            cost.failures += 1

    signals.operation_completed.connect(on_operation, sender=phase.store)
    try:
        with counting_sends(store_client(phase.store), cost):
            for i in range(calls):
                cost.calls += 1
                if not phase.call(i):
                    cost.wrong_answers += 1
    finally:
        signals.operation_completed.disconnect(on_operation, sender=phase.store)
    return cost


def time_calls(phase: Phase, calls: int) -> tuple[float, int]:
    """Calls per second of ``calls`` unobserved calls of ``phase``, and the wrong answers."""
    wrong = 0
    started = time.perf_counter()
    for i in range(calls):
        if not phase.call(i):
            wrong += 1
    return calls / (time.perf_counter() - started), wrong


# --------------------------------------------------------------------------- the run


@dataclass(slots=True)
class Result:
    """One row of the report."""

    operation: str
    calls: int
    requests_per_call: float
    requests_sent_per_call: float
    capacity_per_call: float
    target_requests_per_call: int
    wrong_answers: int
    failures: int
    ops_s: float
    met: bool


def summarize(operation: str, cost: Cost, ops_s: float, timed_wrong: int) -> Result:
    return Result(
        operation=operation,
        calls=cost.calls,
        requests_per_call=cost.requests / cost.calls,
        requests_sent_per_call=cost.requests_sent / cost.calls,
        capacity_per_call=cost.capacity / cost.calls,
        target_requests_per_call=TARGET_REQUESTS_PER_CALL,
        wrong_answers=cost.wrong_answers + timed_wrong,
        failures=cost.failures,
        ops_s=ops_s,
        met=cost.exactly_one_request_each and cost.wrong_answers + timed_wrong == 0,
    )


def measure(endpoint: str, *, calls: int) -> list[Result]:
    """Create a table, measure the four phases on it, delete it."""
    with common.fresh_table("bench-dedupe", endpoint) as table:
        return measure_on(endpoint, table, calls=calls)


def measure_on(endpoint: str, table: str, *, calls: int) -> list[Result]:
    """Measure the four phases on ``table``."""
    settings: dict[str, Any] = {"table_name": table, "region": REGION, "endpoint": endpoint}
    owner: Store = DynamoDBDedupeStore(**settings)
    other: Store = DynamoDBDedupeStore(**settings)
    try:
        progress(f"table {table}; {calls} keys per pass")
        for phase in phases(owner, other, "warm-up"):
            time_calls(phase, WARMUP_CALLS)
        counted = phases(owner, other, "count")
        costs = [count(phase, calls) for phase in counted]
        timings = [time_calls(phase, calls) for phase in phases(owner, other, "time")]
        return [
            summarize(phase.operation, cost, ops_s, wrong)
            for phase, cost, (ops_s, wrong) in zip(counted, costs, timings, strict=True)
        ]
    finally:
        owner.close()
        other.close()


# --------------------------------------------------------------------------- output


def render_table(results: list[Result]) -> str:
    """The plain-text report."""
    header = (
        "operation",
        "requests per call",
        "capacity per call",
        "target",
        "met?",
        "ops/s",
    )
    rows = [
        (
            r.operation,
            f"{r.requests_per_call:g}",
            f"{r.capacity_per_call:g}",
            f"{r.target_requests_per_call} request",
            "yes" if r.met else "NO",
            f"{r.ops_s:.0f}",
        )
        for r in results
    ]
    out = [*common.table_lines(header, rows), ""]
    for r in results:
        if r.requests_sent_per_call != r.requests_per_call or r.wrong_answers or r.failures:
            out.append(
                f"{r.operation}: {r.requests_sent_per_call:g} request(s) sent per call, "
                f"{r.wrong_answers} unexpected answer(s), {r.failures} failed call(s)"
            )
    met = all(r.met for r in results)
    out.append(
        f"target: exactly {TARGET_REQUESTS_PER_CALL} request per call (register_or_join, "
        f"complete, wait_for on a finished job) -> {'MET' if met else 'NOT MET'}"
    )
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = common.parser_for(__doc__)
    parser.add_argument(
        "--calls",
        type=int,
        default=200,
        help="keys per pass, so calls per operation in each pass (default 200)",
    )
    common.add_output_args(parser)
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error("--calls must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.use_dummy_credentials()
    calls: int = args.calls
    started = time.perf_counter()
    with common.local_dynamodb(args.docker) as db:
        results = measure(db.endpoint, calls=calls)
    elapsed = time.perf_counter() - started
    met = all(r.met for r in results)
    if args.json:
        report = {
            "dynamodb_local": db.kind,
            "python": sys.version.split()[0],
            "calls_per_operation": calls,
            "total_seconds": round(elapsed, 2),
            "target": {"requests_per_call": TARGET_REQUESTS_PER_CALL},
            "target_met": met,
            "results": [asdict(r) for r in results],
        }
        print(json.dumps(report, indent=2))
    else:
        print(render_table(results))
        print(
            f"({db.kind} DynamoDB Local, {calls} calls per operation counted and {calls} "
            f"timed, {elapsed:.1f} s in all)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
