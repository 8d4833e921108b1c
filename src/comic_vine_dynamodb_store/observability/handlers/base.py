"""What every handler on the signal bus shares: connecting to the catalogue's signals.

A handler is connected once (``handler.connect()`` for every store, or
``handler.connect(sender=store)`` for one) and disconnected by ``disconnect`` or ``close``.
Receivers are held strongly, so a handler stays connected until it is disconnected, and the
bus's own rule applies: a handler that raises is logged once and never breaks a store call.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterable
from typing import Any, Self

from blinker import ANY, NamedSignal

from comic_vine_dynamodb_store.observability import signals
from comic_vine_dynamodb_store.observability.metrics import Metric, mapped_signals, metrics_of

__all__ = ["MetricsHandler", "SignalHandler"]


class SignalHandler:
    """Base of the bus's handlers: :meth:`handle` runs for each event of :attr:`signals`."""

    def __init__(self, signals_: Iterable[NamedSignal] | None = None) -> None:
        self.signals: tuple[NamedSignal, ...] = (
            signals.ALL_SIGNALS if signals_ is None else tuple(signals_)
        )
        self._connections: list[tuple[NamedSignal, Any, Any]] = []
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def connect(self, sender: Any = ANY) -> Self:
        """Receive the events ``sender`` sends (every sender by default); returns ``self``."""
        with self._lock:
            for signal in self.signals:
                receiver = functools.partial(self._receive, signal)
                signal.connect(receiver, sender=sender, weak=False)
                self._connections.append((signal, receiver, sender))
        return self

    def disconnect(self) -> None:
        """Stop receiving events."""
        with self._lock:
            connections, self._connections = self._connections, []
        for signal, receiver, sender in connections:
            signal.disconnect(receiver, sender=sender)

    @property
    def connected(self) -> bool:
        """True while connected to at least one signal."""
        return bool(self._connections)

    def close(self) -> None:
        """Disconnect (subclasses also flush what they hold)."""
        self.disconnect()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        """Log ``message`` as a warning the first time ``key`` comes up, on the logger of the
        handler's module: a problem that repeats with every event is said once."""
        with self._lock:
            first = key not in self._warned
            self._warned.add(key)
        if first:
            logging.getLogger(type(self).__module__).warning(message + " (reported once)", *args)

    def _receive(self, signal: NamedSignal, sender: Any, *, event: Any) -> None:
        self.handle(signal, sender, event)

    def handle(self, signal: NamedSignal, sender: Any, event: Any) -> None:
        """React to ``event``, sent by ``sender`` on ``signal``."""
        raise NotImplementedError


class MetricsHandler(SignalHandler):
    """A handler that publishes the catalogue's metrics (see :mod:`..metrics`)."""

    def __init__(self, signals_: Iterable[NamedSignal] | None = None) -> None:
        super().__init__(mapped_signals() if signals_ is None else signals_)

    def handle(self, signal: NamedSignal, sender: Any, event: Any) -> None:
        metrics = metrics_of(signal, event)
        if metrics:
            self.emit(metrics)

    def emit(self, metrics: list[Metric]) -> None:
        """Publish ``metrics`` (the data points of one event)."""
        raise NotImplementedError
