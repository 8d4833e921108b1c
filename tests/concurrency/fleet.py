"""Worker processes for the concurrency tests: each one its own interpreter and store.

A :class:`Fleet` starts its workers once ("spawn", so every worker is a fresh interpreter with
its own botocore client and its own store), then drives them with commands through per-worker
queues; racers are released together by a shared barrier. What a worker is comes from the test
module: ``make_worker`` builds the store (and makes its first request), and the worker it returns
answers commands by its public methods. ``make_worker`` is a top-level function of that module,
so it pickles by its module-qualified name and every spawned worker imports that module to find
it.

Every wait is bounded (queue reads, barrier waits, joins); whatever happens, the workers are
stopped, then killed, when the fleet closes. A worker whose parent disappears exits on its own
after ``IDLE_EXIT_S`` without a command.

Every worker imports this module, so it does not import pytest: that is a tenth of a second less
per interpreter, 32 of them per test.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any, Protocol, TypeAlias

REGION = "us-east-1"

STARTUP_TIMEOUT_S = 120.0  # up to 32 interpreters importing botocore on 2 busy cores
REPLY_TIMEOUT_S = 60.0
BARRIER_TIMEOUT_S = 60.0
JOIN_TIMEOUT_S = 5.0
IDLE_EXIT_S = 300.0

Inbox: TypeAlias = "Queue[tuple[str, tuple[Any, ...]]]"
Outbox: TypeAlias = "Queue[tuple[str, Any]]"


class NoReply:
    """The type of :data:`NO_REPLY`."""


NO_REPLY = NoReply()
"""What a command returns when it has put its reply on the outbox itself (no second reply)."""


def now_ms() -> int:
    """Epoch milliseconds, exactly as the stores' default clock reads them."""
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- worker side


class _Closable(Protocol):
    def close(self) -> None: ...


class Worker(Protocol):
    """What ``make_worker`` returns: its public methods are the commands; its store is closed
    when the worker stops."""

    @property
    def store(self) -> _Closable: ...


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Where a worker's store points, and its options."""

    index: int
    endpoint: str
    table: str
    options: dict[str, Any]


MakeWorker: TypeAlias = Callable[[WorkerSpec, "Barrier | None", Outbox], Worker]


def serve(
    make_worker: MakeWorker,
    spec: WorkerSpec,
    inbox: Inbox,
    outbox: Outbox,
    barrier: Barrier | None,
) -> None:
    """A worker process: its own store, then commands from ``inbox`` until ``stop``.

    Replies go to ``outbox`` as ``("ok", result)`` or ``("error", traceback)``; the first
    reply (``"ok"``, the pid) says the store is built and has made one request.
    """
    # Spawned children inherit os.environ (conftest's dummy credentials included); set them
    # anyway so the worker never depends on who started it.
    os.environ["AWS_ACCESS_KEY_ID"] = "local"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "local"
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    try:
        worker = make_worker(spec, barrier, outbox)
    except Exception:
        outbox.put(("error", traceback.format_exc()))
        return
    outbox.put(("ok", os.getpid()))
    try:
        _command_loop(worker, inbox, outbox)
    finally:
        worker.store.close()
    # Leave without the interpreter's teardown: it costs ~0.1 s of CPU per worker, which
    # for 32 workers on 2 cores is seconds of every test. Nothing is lost: the store is
    # closed, and the replies are flushed first.
    outbox.close()
    outbox.join_thread()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _command_loop(worker: Worker, inbox: Inbox, outbox: Outbox) -> None:
    while True:
        try:
            command, args = inbox.get(timeout=IDLE_EXIT_S)
        except queue.Empty:
            return  # nobody is driving this worker any more
        if command == "stop":
            return
        try:
            result = getattr(worker, command)(*args)
        except Exception:
            outbox.put(("error", traceback.format_exc()))
        else:
            if result is not NO_REPLY:
                outbox.put(("ok", result))


# --------------------------------------------------------------------------- parent side


class Fleet:
    """Worker processes started once, each with its own store and command queues."""

    def __init__(
        self,
        make_worker: MakeWorker,
        endpoint: str,
        table: str,
        options: Sequence[dict[str, Any]],
        *,
        barrier_parties: int | None = None,
        name: str = "worker",
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.barrier = ctx.Barrier(barrier_parties) if barrier_parties else None
        self._inboxes: list[Inbox] = [ctx.Queue() for _ in options]
        self._outboxes: list[Outbox] = [ctx.Queue() for _ in options]
        self.processes: list[SpawnProcess] = [
            ctx.Process(
                target=serve,
                args=(
                    make_worker,
                    WorkerSpec(i, endpoint, table, dict(opts)),
                    self._inboxes[i],
                    self._outboxes[i],
                    self.barrier,
                ),
                name=f"{name}-{i}",
                daemon=True,
            )
            for i, opts in enumerate(options)
        ]
        self.pids: list[int] = []

    def __len__(self) -> int:
        return len(self.processes)

    def start(self) -> None:
        """Start every worker, then wait until each has its store ready."""
        for process in self.processes:
            process.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        self.pids = [
            self.result(i, timeout=max(1.0, deadline - time.monotonic())) for i in range(len(self))
        ]

    def send(self, worker: int, command: str, *args: Any) -> None:
        self._inboxes[worker].put((command, args))

    def result(self, worker: int, *, timeout: float = REPLY_TIMEOUT_S) -> Any:
        """The next reply of ``worker``; a worker's exception fails the test with its
        traceback."""
        try:
            status, payload = self._outboxes[worker].get(timeout=timeout)
        except queue.Empty:
            process = self.processes[worker]
            raise AssertionError(
                f"worker {worker} gave no answer within {timeout:.0f} s "
                f"(alive: {process.is_alive()}, exit code: {process.exitcode})"
            ) from None
        if status != "ok":
            raise AssertionError(f"worker {worker} failed:\n{payload}")
        return payload

    def call(self, worker: int, command: str, *args: Any) -> Any:
        self.send(worker, command, *args)
        return self.result(worker)

    def call_all(self, workers: Sequence[int], command: str, *args: Any) -> list[Any]:
        """Send the same command to ``workers`` at once, then collect their replies."""
        for worker in workers:
            self.send(worker, command, *args)
        return [self.result(worker) for worker in workers]

    def kill(self, worker: int) -> int | None:
        """SIGKILL ``worker`` and reap it; its exit code."""
        process = self.processes[worker]
        os.kill(self.pids[worker], signal.SIGKILL)
        process.join(JOIN_TIMEOUT_S)
        return process.exitcode

    def close(self) -> None:
        """Stop the workers (kill those that do not stop) and release the queues."""
        started = [p for p in self.processes if p.pid is not None]
        for i, process in enumerate(self.processes):
            if process.is_alive():
                with contextlib.suppress(Exception):
                    self.send(i, "stop")
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for process in started:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in started:
            if process.is_alive():
                process.kill()
                process.join(JOIN_TIMEOUT_S)
        for box in (*self._inboxes, *self._outboxes):
            box.close()
            box.join_thread()
        for process in started:
            if not process.is_alive():
                process.close()


@contextlib.contextmanager
def fleet_of(
    make_worker: MakeWorker,
    endpoint: str,
    table: str,
    options: Sequence[dict[str, Any]],
    *,
    barrier_parties: int | None = None,
    name: str = "worker",
) -> Iterator[Fleet]:
    """Started workers, stopped (or killed) on the way out whatever happened."""
    fleet = Fleet(make_worker, endpoint, table, options, barrier_parties=barrier_parties, name=name)
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.close()
