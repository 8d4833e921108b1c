"""Build-time pages generated from the code, so the docs cannot drift from it.

``{{ options_reference }}`` becomes one table per options model (every field, its type and its
default, read from the pydantic models the stores validate with); ``{{ error_tree }}`` becomes
the exception tree drawn in ``errors.py``; ``{{ metric_catalogue }}`` the metrics the
metrics handlers publish; ``{{ iam_policy }}`` and ``{{ iam_admin_policy }}``
become the policies ``comic-vine-store print iam-policy`` prints.
"""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import BaseModel

from comic_vine_dynamodb_store import cli_policy, config, errors
from comic_vine_dynamodb_store.observability import metrics

_MODELS: list[type[BaseModel]] = [
    config.StoreOptions,
    config.CircuitBreakerOptions,
    config.MonitoringOptions,
    config.CloudWatchOptions,
    config.LoggingOptions,
    config.PerformanceOptions,
    config.HealthCheckOptions,
    config.CacheStoreOptions,
    config.DedupeStoreOptions,
    config.RateLimitStoreOptions,
    config.RateLimitConfig,
    config.AdaptiveRateLimitStoreOptions,
    config.AdaptiveConfig,
    config.InMemoryCacheStoreOptions,
    config.InMemoryDedupeStoreOptions,
    config.InMemoryRateLimitStoreOptions,
    config.InMemoryAdaptiveRateLimitStoreOptions,
]


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or repr(annotation)
    return text.replace("typing.", "").replace("|", "&#124;")


def _default(field: Any) -> str:
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return f"`{type(value).__name__}()`"
    if callable(value) or (hasattr(value, "__module__") and "botocore" in str(value.__module__)):
        return "-"
    return f"`{value!r}`".replace("|", "&#124;")


def options_reference() -> str:
    """Markdown tables of every options model."""
    parts: list[str] = []
    for model in _MODELS:
        doc = inspect.getdoc(model) or ""
        parts.append(f"## `{model.__name__}`\n\n{doc.splitlines()[0] if doc else ''}\n")
        own = model.model_fields
        parents = [
            base
            for base in model.__mro__[1:]
            if isinstance(base, type) and issubclass(base, BaseModel)
        ]
        inherited = {name for base in parents for name in getattr(base, "model_fields", {})}
        rows = ["| option | type | default |", "| --- | --- | --- |"]
        for name, field in own.items():
            if name in inherited and model is not config.StoreOptions:
                continue
            rows.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} |")
        if len(rows) > 2:
            parts.append("\n".join(rows) + "\n")
        if inherited and model is not config.StoreOptions:
            names = ", ".join(f"`{base.__name__}`" for base in parents if base.model_fields)
            parts.append(f"Also every option of {names}.\n")
    return "\n".join(parts)


def error_tree() -> str:
    """The tree drawn in the errors module's docstring."""
    doc = inspect.getdoc(errors) or ""
    start = doc.index("DynamoDBStoreError\n")
    end = doc.index("\n\n", start)
    return "```\n" + doc[start:end] + "\n```"


def metric_catalogue() -> str:
    """The metrics every metrics handler publishes, from ``observability.metrics.METRICS``."""
    rows = [
        "| metric | unit | dimensions | from signal | dashboard statistic | what it is |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for spec in metrics.METRICS:
        signal = spec.signal.replace("-", "_")
        rows.append(
            f"| `{spec.name}` | {spec.unit} | {', '.join(spec.dimensions)} | `{signal}` "
            f"| {spec.statistic} | {spec.description} |"
        )
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Fill the generated sections in."""
    if "{{ options_reference }}" in markdown:
        markdown = markdown.replace("{{ options_reference }}", options_reference())
    if "{{ metric_catalogue }}" in markdown:
        markdown = markdown.replace("{{ metric_catalogue }}", metric_catalogue())
    if "{{ error_tree }}" in markdown:
        markdown = markdown.replace("{{ error_tree }}", error_tree())
    for marker, admin in (("{{ iam_policy }}", False), ("{{ iam_admin_policy }}", True)):
        if marker in markdown:
            policy = cli_policy.render_json(cli_policy.iam_policy("comic-vine-store", admin=admin))
            markdown = markdown.replace(marker, f"```json\n{policy}```")
    return markdown
