"""The signal catalogue is complete: every signal the library can send is declared in
``observability.signals``, listed in its docstring and in the docs page, has a log level and
(where it stands for a metric) a metric mapping; a real workload sends nothing else."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from blinker import NamedSignal

from comic_vine_dynamodb_store import DynamoDBCacheStore
from comic_vine_dynamodb_store.client import GuardedSession
from comic_vine_dynamodb_store.demo.fake_api import FakeComicVine
from comic_vine_dynamodb_store.observability import metrics, signals
from comic_vine_dynamodb_store.observability.handlers import logging_handler
from comic_vine_dynamodb_store.stores.adaptive import DynamoDBAdaptiveRateLimitStore
from comic_vine_dynamodb_store.stores.dedupe import DynamoDBDedupeStore
from comic_vine_dynamodb_store.stores.rate_limit import DynamoDBRateLimitStore

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "comic_vine_dynamodb_store"
NAMES = {signal: name for name, signal in vars(signals).items() if isinstance(signal, NamedSignal)}


def _python_files() -> Iterator[Path]:
    yield from sorted(SRC.rglob("*.py"))


def test_every_signal_object_is_declared_once_in_the_catalogue_module() -> None:
    declared = set(signals.namespace.values())
    assert declared == set(signals.ALL_SIGNALS)
    assert len(signals.ALL_SIGNALS) == len(set(signals.ALL_SIGNALS))
    assert set(NAMES) == declared
    # No other module makes signals of its own (a signal outside the namespace would escape
    # the catalogue and its test).
    makers = re.compile(r"\b(Namespace\(|NamedSignal\(|blinker\.signal\()|(?<!\bsignal)\.signal\(")
    for path in _python_files():
        if path.name == "signals.py" and path.parent.name == "observability":
            continue
        assert not makers.search(path.read_text()), f"{path} creates a signal"


def test_every_signal_the_source_names_is_in_the_catalogue() -> None:
    exported = set(signals.__all__)
    referenced: set[str] = set()
    sending: set[str] = set()  # names used outside the modules that map or log signals
    mappers = {
        SRC / "observability" / "metrics.py",
        *(SRC / "observability" / "handlers").glob("*.py"),
    }
    for path in _python_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "signals"
            ):
                referenced.add(node.attr)
                if path not in mappers:
                    sending.add(node.attr)
    assert referenced <= exported, referenced - exported
    sent = {name for name in sending if isinstance(getattr(signals, name), NamedSignal)}
    # Every catalogued signal is sent somewhere: none is dead weight in the docs.
    assert sent == set(NAMES.values())


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(signals.__doc__ or "", id="module-docstring"),
        pytest.param((ROOT / "docs" / "observability.md").read_text(), id="docs-page"),
    ],
)
def test_every_signal_is_documented(text: str) -> None:
    for name in NAMES.values():
        assert f"``{name}``" in text or f"`{name}`" in text, name


def test_every_signal_has_a_log_level_and_every_metric_a_mapping() -> None:
    assert set(logging_handler._LEVELS) == set(signals.ALL_SIGNALS)
    mapped = set(metrics.mapped_signals())
    assert mapped == set(signals.ALL_SIGNALS)
    # The catalogue names each metric's signal by its blinker name.
    by_name = {signal.name for signal in signals.ALL_SIGNALS}
    assert {spec.signal for spec in metrics.METRICS} <= by_name
    assert len({spec.name for spec in metrics.METRICS}) == len(metrics.METRICS)


def test_a_real_workload_sends_only_catalogued_signals(
    monkeypatch: pytest.MonkeyPatch, make_dynamodb_store: Callable[..., Any]
) -> None:
    sent: list[NamedSignal] = []
    real_send = signals.send

    def recording(signal: NamedSignal, sender: Any, build: Callable[[], Any]) -> None:
        sent.append(signal)
        real_send(signal, sender, build)

    monkeypatch.setattr(signals, "send", recording)
    cache = make_dynamodb_store(DynamoDBCacheStore)
    dedupe = make_dynamodb_store(DynamoDBDedupeStore)
    limiter = make_dynamodb_store(
        DynamoDBRateLimitStore,
        default_config={"limit": 3, "window_ms": 60_000},
        resource_configs={"issue": {"limit": 100, "window_ms": 60_000}},
    )
    adaptive = make_dynamodb_store(
        DynamoDBAdaptiveRateLimitStore, default_config={"limit": 3, "window_ms": 60_000}
    )
    for store in (limiter, adaptive):
        for _ in range(5):
            store.acquire("volumes", "user") if store is adaptive else store.acquire("volumes")
        store.health_check()
    cache.set("k", {"v": 1}, 60)
    cache.get("k")
    cache.get("absent")
    job_id = dedupe.register("job")
    assert dedupe.complete("job", {"done": True}, job_id)
    with (
        FakeComicVine() as api,
        GuardedSession(cache=cache, dedupe=dedupe, rate_limit=limiter, max_wait_ms=0) as session,
    ):
        for n in range(3):
            session.get(f"{api.base_url}/issue/4000-{n}/?api_key=k")
            session.get(f"{api.base_url}/issue/4000-{n}/?api_key=k")
    assert sent, "the workload sent nothing"
    assert set(sent) <= set(signals.ALL_SIGNALS)
    # The workload reached the signals of every part it used.
    for expected in (
        signals.operation_completed,
        signals.cache_hit,
        signals.cache_miss,
        signals.rate_limited,
        signals.health_checked,
        signals.client_cache_hit,
        signals.client_upstream_call,
    ):
        assert expected in sent, NAMES[expected]
