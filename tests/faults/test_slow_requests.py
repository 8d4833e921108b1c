"""Both rate limiters when every DynamoDB request is slow: the window still fills exactly.

Each request is held back on the client (botocore's ``before-send``) for most of a slice, and
four stores race on one resource from four threads for less than a window, so nothing leaves
the window meanwhile. Over-admission is more than ``limit`` admissions. A wrong refusal is one
that returned before ``limit`` admissions had even started: the window had room throughout it,
and racing writers failed each other's conditional writes (slice moves that depended on counts
other writers were still adding to) until the store gave up.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from comic_vine_dynamodb_store.stores.adaptive import DynamoDBAdaptiveRateLimitStore
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore
from comic_vine_dynamodb_store.stores.rate_limit_core import SliceLayout
from tests.faults.conftest import Injector

LIMIT = 100
WINDOW_MS = 6_000  # slices of 100 ms
DELAY_S = 0.025  # a quarter of a slice, on every request
RUN_S = 2.5  # well inside one window: nothing leaves it


@pytest.mark.parametrize(
    ("store_class", "priority"),
    [
        (DynamoDBRateLimitStore, None),
        (DynamoDBAdaptiveRateLimitStore, "user"),
    ],
)
def test_four_racing_stores_fill_the_window_exactly_when_requests_are_slow(
    make_dynamodb_store: Callable[..., Any],
    inject: Callable[[Any], Injector],
    store_class: type[Any],
    priority: str | None,
) -> None:
    assert SliceLayout.for_window(WINDOW_MS).slice_ms == 100
    make = functools.partial(
        make_dynamodb_store,
        store_class,
        clock=lambda: time.time_ns() // 1_000_000,
        default_config={"limit": LIMIT, "window_ms": WINDOW_MS},
    )
    stores = [make() for _ in range(4)]
    # The stores share one client: one injector slows every request of all of them.
    injector = inject(stores[0])
    injector.default = lambda request: time.sleep(DELAY_S)
    args = ("issues",) if priority is None else ("issues", priority)
    calls: list[tuple[float, float, bool]] = []  # started, returned, admitted
    lock = threading.Lock()
    barrier = threading.Barrier(len(stores))

    def hammer(store: Any) -> None:
        barrier.wait(timeout=30)
        deadline = time.monotonic() + RUN_S
        while time.monotonic() < deadline:
            began = time.monotonic()
            result = store.acquire(*args)
            with lock:
                calls.append((began, time.monotonic(), result))

    threads = [threading.Thread(target=hammer, args=(store,)) for store in stores]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed < WINDOW_MS / 1000, "the run must stay inside one window to be decisive"
    admissions = sorted(began for began, _, ok in calls if ok)
    assert len(admissions) <= LIMIT
    wrong = [
        (returned - started, sum(a < returned for a in admissions))
        for began, returned, ok in calls
        if not ok and sum(a < returned for a in admissions) < LIMIT
    ]
    assert wrong == [], f"refused with room: (seconds into the run, admissions begun) {wrong}"
    assert any(not ok for _, _, ok in calls), "the window never filled: the run proves nothing"
