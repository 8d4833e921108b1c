"""Small helpers the test suites share (fixtures live in conftest.py)."""

from __future__ import annotations

from comic_vine_dynamodb_store.clock import system_clock_ms


class FakeClock:
    """Epoch milliseconds that move only when a test says so.

    It starts at the real time, so items written to DynamoDB Local carry sane TTLs.
    """

    def __init__(self, start_ms: int | None = None) -> None:
        self.now_ms = system_clock_ms() if start_ms is None else start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms
