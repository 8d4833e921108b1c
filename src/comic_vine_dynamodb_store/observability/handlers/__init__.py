"""Handlers on the signal bus: logging, and metrics for CloudWatch, EMF, OpenTelemetry and
Prometheus. The OpenTelemetry and Prometheus handlers import their optional extras only when
first used, so importing this package never needs them."""

from __future__ import annotations

import importlib
from typing import Any

from comic_vine_dynamodb_store.observability.handlers.base import MetricsHandler, SignalHandler

__all__ = [
    "CloudWatchMetricsPublisher",
    "EmfHandler",
    "LoggingHandler",
    "MetricsHandler",
    "OpenTelemetryHandler",
    "PrometheusHandler",
    "SignalHandler",
]

_LAZY = {
    "CloudWatchMetricsPublisher": "cloudwatch",
    "EmfHandler": "emf",
    "LoggingHandler": "logging_handler",
    "OpenTelemetryHandler": "otel",
    "PrometheusHandler": "prometheus",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
