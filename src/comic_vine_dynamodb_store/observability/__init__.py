"""Blinker signals of the stores, and the handlers that turn them into logs and metrics."""
