"""Small helpers the test suites share (fixtures live in conftest.py)."""

from __future__ import annotations

from comic_vine_dynamodb_store.clock import system_clock_ms

AHEAD_OF_REAL_TIME_MS = 3_600_000


class FakeClock:
    """Epoch milliseconds that move only when a test says so.

    It starts an hour ahead of the real time: items written to DynamoDB Local carry sane TTLs,
    and DynamoDB Local's TTL reaper, which runs on the real clock, never deletes an item that
    is still live on this one (a clock starting at the real time soon lags behind it).
    """

    def __init__(self, start_ms: int | None = None) -> None:
        start = system_clock_ms() + AHEAD_OF_REAL_TIME_MS
        self.now_ms = start if start_ms is None else start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms
