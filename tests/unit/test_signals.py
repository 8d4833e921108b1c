"""The signal bus: catalogue, lazy payloads, receivers that raise."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from comic_vine_dynamodb_store.observability import signals


def test_every_signal_is_in_the_catalogue_and_its_docstring() -> None:
    declared = {
        value for value in vars(signals).values() if isinstance(value, type(signals.cache_hit))
    }
    assert declared == set(signals.ALL_SIGNALS)
    doc = signals.__doc__ or ""
    for name in ("operation_completed", "cache_hit", "cache_miss", "cache_decode_error"):
        assert f"``{name}``" in doc
    for name in ("circuit_state_changed", "request_retried", "rate_limited"):
        assert f"``{name}``" in doc


def test_no_payload_is_built_without_receivers() -> None:
    built: list[int] = []

    def build() -> int:
        built.append(1)
        return 1

    signals.send(signals.cache_hit, object(), build)
    assert built == []

    def receiver(sender: Any, event: int) -> None:
        built.append(event + 1)

    with signals.cache_hit.connected_to(receiver):
        signals.send(signals.cache_hit, object(), build)
    assert built == [1, 2]


def test_a_receiver_of_another_sender_does_not_make_this_one_build() -> None:
    built: list[str] = []
    watched, unwatched = object(), object()

    def receiver(sender: Any, event: str) -> None:
        built.append(f"received {event}")

    def build(name: str) -> Callable[[], str]:
        def make() -> str:
            built.append(f"built {name}")
            return name

        return make

    with signals.cache_hit.connected_to(receiver, sender=watched):
        signals.send(signals.cache_hit, unwatched, build("unwatched"))
        signals.send(signals.cache_hit, watched, build("watched"))
    assert built == ["built watched", "received watched"]


def test_a_raising_receiver_is_logged_once_and_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    got: list[str] = []

    def broken(sender: Any, event: str) -> None:
        raise RuntimeError("receiver bug")

    def healthy(sender: Any, event: str) -> None:
        got.append(event)

    with (
        caplog.at_level(logging.ERROR, logger=signals.__name__),
        signals.cache_miss.connected_to(broken),
        signals.cache_miss.connected_to(healthy),
    ):
        for _ in range(3):
            signals.send(signals.cache_miss, object(), lambda: "evt")
    assert got == ["evt"] * 3
    reports = [r for r in caplog.records if "receiver bug" in str(r.exc_info)]
    assert len(reports) == 1
