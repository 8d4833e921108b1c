"""``on_unavailable``: what each store does when DynamoDB is unavailable, and that it says so.

DynamoDB Local answers every request here with an injected 500 (``before-send``, so botocore's
real retries run and give up), or the circuit breaker is open; either way the store meets a
``StoreUnavailableError``. ``raise`` (the default) lets it through; ``open`` and ``closed``
fall back, each fallback sending ``store_fallback``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from comic_vine_dynamodb_store import (
    DynamoDBAdaptiveRateLimitStore,
    DynamoDBCacheStore,
    DynamoDBDedupeStore,
    DynamoDBRateLimitStore,
)
from comic_vine_dynamodb_store.errors import (
    CircuitBreakerOpenError,
    ConfigurationError,
    StoreUnavailableError,
    TableNotFoundError,
)
from comic_vine_dynamodb_store.observability import signals
from tests.faults.conftest import Injector, server_error
from tests.support import FakeClock

Make = Callable[..., Any]
FAST: dict[str, Any] = {"max_retries": 0, "retry_delay_ms": 1}


@contextmanager
def fallbacks(store: Any) -> Iterator[list[signals.FallbackEvent]]:
    """The ``store_fallback`` events ``store`` sends in the block."""
    seen: list[signals.FallbackEvent] = []

    def receiver(_sender: Any, event: signals.FallbackEvent) -> None:
        seen.append(event)

    with signals.store_fallback.connected_to(receiver, sender=store):
        yield seen


def down(store: Any, inject: Callable[[Any], Injector]) -> Injector:
    """Every request of ``store`` answered with a 500 from now on."""
    injector = inject(store)
    injector.default = server_error
    return injector


def test_the_option_is_validated() -> None:
    with pytest.raises(ConfigurationError) as caught:
        DynamoDBCacheStore(on_unavailable="ignore")
    assert caught.value.field == "on_unavailable"


@pytest.mark.parametrize(
    ("store_class", "call"),
    [
        (DynamoDBCacheStore, lambda s: s.get("k")),
        (DynamoDBDedupeStore, lambda s: s.register_or_join("k")),
        (DynamoDBRateLimitStore, lambda s: s.acquire("issues")),
        (DynamoDBAdaptiveRateLimitStore, lambda s: s.acquire("issues", "user")),
    ],
)
def test_raise_is_the_default_and_sends_no_fallback(
    make_dynamodb_store: Make,
    inject: Callable[[Any], Injector],
    store_class: type[Any],
    call: Callable[[Any], Any],
) -> None:
    store = make_dynamodb_store(store_class, **FAST)
    assert store.options.on_unavailable == "raise"
    injector = down(store, inject)
    with fallbacks(store) as seen, pytest.raises(StoreUnavailableError):
        call(store)
    assert seen == []
    assert len(injector.sent) == 1


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_a_cache_reads_as_a_miss_and_skips_writes(
    make_dynamodb_store: Make, inject: Callable[[Any], Injector], mode: str
) -> None:
    store = make_dynamodb_store(DynamoDBCacheStore, on_unavailable=mode, **FAST)
    healthy = make_dynamodb_store(DynamoDBCacheStore)
    healthy.set("kept", "old", 60)
    injector = down(store, inject)
    with fallbacks(store) as seen:
        assert store.get("kept") is None
        assert store.set("new", "value", 60) is None
        assert store.delete("kept") is None
    assert [(e.operation, e.key, e.fallback, e.mode) for e in seen] == [
        ("get", "kept", "miss", mode),
        ("set", "new", "skipped", mode),
        ("delete", "kept", "skipped", mode),
    ]
    assert all(isinstance(e.error, StoreUnavailableError) for e in seen)
    assert injector.sent == ["GetItem", "PutItem", "DeleteItem"]
    # Nothing was written or removed: the healthy store sees the table as it was.
    assert healthy.get("kept") == "old"
    assert healthy.get("new") is None


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_an_open_circuit_falls_back_without_a_request(
    make_dynamodb_store: Make, inject: Callable[[Any], Injector], mode: str
) -> None:
    store = make_dynamodb_store(
        DynamoDBCacheStore, on_unavailable=mode, circuit_breaker={"failure_threshold": 2}, **FAST
    )
    injector = down(store, inject)
    with fallbacks(store) as seen:
        for _ in range(5):
            assert store.get("k") is None
    assert len(injector.sent) == 2  # then the breaker opened: no request at all
    assert [type(e.error) for e in seen[2:]] == [CircuitBreakerOpenError] * 3


@pytest.mark.parametrize("store_class", [DynamoDBRateLimitStore, DynamoDBAdaptiveRateLimitStore])
@pytest.mark.parametrize("mode", ["open", "closed"])
def test_a_limiter_admits_when_open_and_refuses_when_closed(
    make_dynamodb_store: Make,
    inject: Callable[[Any], Injector],
    clock: FakeClock,
    store_class: type[Any],
    mode: str,
) -> None:
    store = make_dynamodb_store(
        store_class,
        on_unavailable=mode,
        default_config={"limit": 10, "window_ms": 60_000},
        circuit_breaker={"failure_threshold": 3, "recovery_timeout_ms": 5_000},
        **FAST,
    )
    args: tuple[str, ...] = (
        ("issues", "user") if store_class is DynamoDBAdaptiveRateLimitStore else ("issues",)
    )
    down(store, inject)
    admitted = mode == "open"
    with fallbacks(store) as seen:
        assert store.acquire(*args) is admitted
        assert store.can_proceed(*args) is admitted
        wait = store.get_wait_time(*args)
        status = store.get_status("issues")
        assert store.record(*args) is None
    assert [e.fallback for e in seen] == (
        ["admitted"] * 4 + ["skipped"] if admitted else ["refused"] * 4 + ["skipped"]
    )
    assert status.limit == 10
    if admitted:
        assert (wait, status.remaining) == (0, 10)
    else:
        # The breaker is open now (3 failures): the wait is until its probe.
        assert store.get_circuit_breaker_status().state.value == "open"
        assert 0 < wait <= 5_000
        assert status.remaining == 0
        assert status.reset_time.timestamp() * 1000 > clock.now_ms


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_a_dedupe_store_runs_the_work_locally(
    make_dynamodb_store: Make, inject: Callable[[Any], Injector], mode: str
) -> None:
    store = make_dynamodb_store(DynamoDBDedupeStore, on_unavailable=mode, **FAST)
    peer = make_dynamodb_store(DynamoDBDedupeStore)
    held = peer.register_or_join("held-elsewhere")  # a live job another process owns
    assert held.is_owner
    down(store, inject)
    calls: list[str] = []

    def work(name: str) -> Callable[[], str]:
        def run() -> str:
            calls.append(name)
            return f"result of {name}"

        return run

    with fallbacks(store) as seen:
        registration = store.register_or_join("k")
        assert registration.is_owner
        assert store.complete("k", "v", registration.job_id) is False
        assert store.fail("k", "boom", registration.job_id) is False
        assert store.is_in_progress("k") is False
        assert store.wait_for("k") is None
        # The whole flow: this caller cannot register, nor learn the owner's result: it runs
        # the work itself, once.
        assert store.run("fresh", work("fresh")) == "result of fresh"
        assert store.run("held-elsewhere", work("joiner")) == "result of joiner"
    assert calls == ["fresh", "joiner"]
    assert [(e.operation, e.fallback) for e in seen] == [
        ("register_or_join", "local"),
        ("complete", "skipped"),
        ("fail", "skipped"),
        ("is_in_progress", "miss"),
        ("wait_for", "miss"),
        ("run", "local"),
        ("run", "local"),
    ]
    # The peer's job was never touched.
    assert peer.is_in_progress("held-elsewhere")


def test_work_that_raises_unavailable_itself_is_not_run_twice(
    make_dynamodb_store: Make,
) -> None:
    store = make_dynamodb_store(DynamoDBDedupeStore, on_unavailable="open", **FAST)
    calls: list[int] = []

    def work() -> str:
        calls.append(1)
        raise StoreUnavailableError("another service the work calls is down")

    with fallbacks(store) as seen, pytest.raises(StoreUnavailableError, match="another service"):
        store.run("k", work)
    assert calls == [1]
    assert seen == []


def test_configuration_errors_raise_whatever_the_option(
    endpoint: str, make_table_name: Callable[[], str]
) -> None:
    missing = f"{make_table_name()}-absent"
    store: DynamoDBCacheStore[Any] = DynamoDBCacheStore(
        table_name=missing, endpoint=endpoint, region="us-east-1", on_unavailable="open", **FAST
    )
    try:
        with fallbacks(store) as seen, pytest.raises(TableNotFoundError):
            store.get("k")
        assert seen == []
    finally:
        store.close()


def test_each_fallback_is_logged_as_a_warning(
    make_dynamodb_store: Make, inject: Callable[[Any], Injector], caplog: pytest.LogCaptureFixture
) -> None:
    store = make_dynamodb_store(DynamoDBCacheStore, on_unavailable="open", **FAST)
    down(store, inject)
    with caplog.at_level("WARNING", logger="comic_vine_dynamodb_store.events"):
        store.get("k")
    [record] = [r for r in caplog.records if r.getMessage().startswith("store-fallback")]
    assert record.levelname == "WARNING"
    assert record.fallback == "miss"  # type: ignore[attr-defined]
