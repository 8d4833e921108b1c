"""Run a function over many items with a hard bound on how many calls run at once.

For bulk work against DynamoDB (warming a cache, replaying jobs): enough calls in flight to
hide latency, never so many that the table throttles or the connection pool runs dry. Results
come back in input order. One failing item does not lose the others' results: every item
runs, then :class:`ParallelExecutionError` carries both the results and the failures (or,
with ``return_exceptions=True``, the exceptions stand in the list at their positions).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar, overload

from comic_vine_dynamodb_store.errors import ConfigurationError, ParallelExecutionError

__all__ = ["ParallelExecutionError", "execute_in_parallel", "execute_in_parallel_async"]

T = TypeVar("T")
R = TypeVar("R")


def _check_concurrency(max_concurrency: object) -> int:
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
        raise ConfigurationError(
            f"max_concurrency must be an int, got {max_concurrency!r}", field="max_concurrency"
        )
    if max_concurrency < 1:
        raise ConfigurationError(
            f"max_concurrency must be >= 1, got {max_concurrency}", field="max_concurrency"
        )
    return max_concurrency


def _finish(results: list[Any], errors: list[tuple[int, Exception]], *, keep: bool) -> list[Any]:
    if not errors or keep:
        return results
    errors.sort(key=lambda failure: failure[0])
    index, first = errors[0]
    raise ParallelExecutionError(
        f"{len(errors)} of {len(results)} items failed; the first, item {index}, raised "
        f"{type(first).__name__}: {first}",
        results=results,
        errors=errors,
    ) from first


@overload
def execute_in_parallel(
    items: Iterable[T],
    fn: Callable[[T], R],
    max_concurrency: int = ...,
    *,
    return_exceptions: Literal[False] = ...,
) -> list[R]: ...
@overload
def execute_in_parallel(
    items: Iterable[T],
    fn: Callable[[T], R],
    max_concurrency: int = ...,
    *,
    return_exceptions: bool,
) -> list[R | Exception]: ...
def execute_in_parallel(
    items: Iterable[T],
    fn: Callable[[T], R],
    max_concurrency: int = 10,
    *,
    return_exceptions: bool = False,
) -> list[R] | list[R | Exception]:
    """``[fn(item) for item in items]`` on at most ``max_concurrency`` threads at once.

    Each call runs in a copy of the caller's context, so context variables (tracing spans,
    log fields) follow the work into the threads. ``Exception``s are collected per item;
    anything else (``KeyboardInterrupt``) cancels the calls not yet started and propagates.
    Raises :class:`ConfigurationError` for a ``max_concurrency`` that is not an int >= 1,
    before any call.
    """
    limit = _check_concurrency(max_concurrency)
    work = list(items)
    if not work:
        return []
    results: list[Any] = [None] * len(work)
    errors: list[tuple[int, Exception]] = []
    pool = ThreadPoolExecutor(
        max_workers=min(limit, len(work)), thread_name_prefix="execute-in-parallel"
    )
    try:
        futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in work]
        for index, future in enumerate(futures):
            try:
                results[index] = future.result()
            except Exception as exc:
                results[index] = exc
                errors.append((index, exc))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return _finish(results, errors, keep=return_exceptions)


@overload
async def execute_in_parallel_async(
    items: Iterable[T],
    fn: Callable[[T], Awaitable[R]],
    max_concurrency: int = ...,
    *,
    return_exceptions: Literal[False] = ...,
) -> list[R]: ...
@overload
async def execute_in_parallel_async(
    items: Iterable[T],
    fn: Callable[[T], Awaitable[R]],
    max_concurrency: int = ...,
    *,
    return_exceptions: bool,
) -> list[R | Exception]: ...
async def execute_in_parallel_async(
    items: Iterable[T],
    fn: Callable[[T], Awaitable[R]],
    max_concurrency: int = 10,
    *,
    return_exceptions: bool = False,
) -> list[R] | list[R | Exception]:
    """``[await fn(item) for item in items]`` with at most ``max_concurrency`` awaits at once.

    ``max_concurrency`` tasks take items in turn, so a long list costs no task per item.
    Cancelling the caller cancels the calls in flight and starts no more.
    """
    limit = _check_concurrency(max_concurrency)
    work = list(items)
    if not work:
        return []
    results: list[Any] = [None] * len(work)
    errors: list[tuple[int, Exception]] = []
    pending = iter(range(len(work)))  # shared: each index is taken by exactly one worker

    async def worker() -> None:
        for index in pending:
            try:
                results[index] = await fn(work[index])
            except Exception as exc:
                results[index] = exc
                errors.append((index, exc))

    async with asyncio.TaskGroup() as group:
        for _ in range(min(limit, len(work))):
            group.create_task(worker())
    return _finish(results, errors, keep=return_exceptions)
