"""The fault matrix of the docs, generated from ``docs/fault-matrix.json``.

``{{ fault_matrix }}`` becomes the settings the matrix ran with, the faults it injects, and
one table per store (fault, operation, outcome, requests sent, time to surface, what holds).
``tests/faults/test_matrix.py`` writes the file (``make fault-matrix``) and checks it on every
test run, so the page shows what the stores did, not what someone typed. A page that uses the
marker fails the build when the file is missing or malformed.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, TypedDict

from mkdocs.exceptions import PluginError

MATRIX_PATH = Path("docs") / "fault-matrix.json"
MARKER = "{{ fault_matrix }}"
REGENERATE = "run `make fault-matrix` (tests/faults/test_matrix.py) to write it"
SETTINGS = ("timeout_ms", "max_retries", "retry_delay_ms", "failure_threshold", "slack_ms")


class Store(TypedDict):
    store: str
    cls: str


class Fault(TypedDict):
    fault: str
    label: str
    how: str


class Row(TypedDict):
    store: str
    fault: str
    operation: str
    outcome: str
    sends: int | None
    surfaced_ms: float | None
    invariant: str


class FaultMatrix(TypedDict):
    settings: dict[str, int]
    stores: list[Store]
    faults: list[Fault]
    rows: list[Row]


class MalformedMatrixError(ValueError):
    """Where the matrix file differs from what ``tests/faults/test_matrix.py`` writes."""


# --------------------------------------------------------------------------- reading


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedMatrixError(f"{where}{key} must be a non-empty string, not {value!r}")
    return value


def _count(data: dict[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedMatrixError(f"{where}{key} must be a whole number >= 0, not {value!r}")
    return value


def _sends(data: dict[str, Any], key: str, where: str) -> int | None:
    """A count, or null for a cell where nothing was injected."""
    return None if data.get(key) is None else _count(data, key, where)


def _millis(data: dict[str, Any], key: str, where: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise MalformedMatrixError(f"{where}{key} must be a number >= 0 or null, not {value!r}")
    return float(value)


def _objects(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = data.get(key)
    if not isinstance(items, list) or not items:
        raise MalformedMatrixError(f"{key} must be a non-empty list")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise MalformedMatrixError(f"{key}[{i}] must be an object")
    return items


def parse_matrix(data: object) -> FaultMatrix:
    """The matrix ``tests/faults/test_matrix.py`` wrote, checked field by field."""
    if not isinstance(data, dict):
        raise MalformedMatrixError("the top level must be a JSON object")
    settings = data.get("settings")
    if not isinstance(settings, dict):
        raise MalformedMatrixError("settings must be an object")
    checked_settings = {name: _count(settings, name, "settings.") for name in SETTINGS}
    stores = [
        Store(store=_text(s, "store", f"stores[{i}]."), cls=_text(s, "class", f"stores[{i}]."))
        for i, s in enumerate(_objects(data, "stores"))
    ]
    faults = [
        Fault(
            fault=_text(f, "fault", f"faults[{i}]."),
            label=_text(f, "label", f"faults[{i}]."),
            how=_text(f, "how", f"faults[{i}]."),
        )
        for i, f in enumerate(_objects(data, "faults"))
    ]
    store_names = {s["store"] for s in stores}
    fault_names = {f["fault"] for f in faults}
    rows: list[Row] = []
    cells: set[tuple[str, str]] = set()
    for i, r in enumerate(_objects(data, "rows")):
        where = f"rows[{i}]."
        row = Row(
            store=_text(r, "store", where),
            fault=_text(r, "fault", where),
            operation=_text(r, "operation", where),
            outcome=_text(r, "outcome", where),
            sends=_sends(r, "sends", where),
            surfaced_ms=_millis(r, "surfaced_ms", where),
            invariant=_text(r, "invariant", where),
        )
        if row["store"] not in store_names:
            raise MalformedMatrixError(f"{where}store {row['store']!r} is not in stores")
        if row["fault"] not in fault_names:
            raise MalformedMatrixError(f"{where}fault {row['fault']!r} is not in faults")
        cell = (row["store"], row["fault"])
        if cell in cells:
            raise MalformedMatrixError(f"{where[:-1]} repeats the cell {cell}")
        cells.add(cell)
        rows.append(row)
    return FaultMatrix(settings=checked_settings, stores=stores, faults=faults, rows=rows)


def load_matrix(path: Path) -> FaultMatrix:
    """``path`` read and checked; a missing or malformed file fails the build."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PluginError(
            f"the fault matrix needs {path}, which is missing: {REGENERATE}"
        ) from None
    except OSError as exc:
        raise PluginError(f"the fault matrix cannot read {path}: {exc}") from None
    try:
        return parse_matrix(json.loads(text))
    except ValueError as exc:  # JSONDecodeError and MalformedMatrixError
        raise PluginError(f"{path} is malformed ({exc}): {REGENERATE}") from None


def matrix_path(config: Any) -> Path:
    """``docs/fault-matrix.json`` beside the build's ``mkdocs.yml``."""
    config_file = getattr(config, "config_file_path", None)
    if not config_file and config is not None and hasattr(config, "get"):
        config_file = config.get("config_file_path")
    if not isinstance(config_file, str) or not config_file:
        raise PluginError("the fault matrix needs the path of mkdocs.yml (config_file_path)")
    return Path(config_file).resolve().parent / MATRIX_PATH


# --------------------------------------------------------------------------- writing

_ERROR = re.compile(r"[A-Z][A-Za-z]*Error")


def _cell(text: str) -> str:
    return text.replace("|", "&#124;")


def _outcome(text: str) -> str:
    if _ERROR.fullmatch(text):
        return f"raises `{text}`"
    if text.startswith("returned "):
        return f"returns `{_cell(text.removeprefix('returned '))}`"
    if "=" in text:
        return f"returns `{_cell(text)}`"
    return _cell(text)


def render(matrix: FaultMatrix) -> str:
    """The settings, the faults, then one table per store."""
    s = matrix["settings"]
    parts = [
        f"Every store runs with `max_retries={s['max_retries']}`, "
        f"`retry_delay_ms={s['retry_delay_ms']}` and `circuit_breaker` "
        f"`timeout_ms={s['timeout_ms']}`, `failure_threshold={s['failure_threshold']}`. "
        "Every call must surface within `timeout_ms` plus "
        f"{s['slack_ms']:,} ms. *Sends* counts the requests the store's client sent, retries "
        "included; *time to surface* is the wall time of the call (rounded to 10 ms).\n",
        "| fault | what is injected |\n| --- | --- |\n"
        + "".join(f"| {_cell(f['label'])} | {_cell(f['how'])} |\n" for f in matrix["faults"]),
    ]
    labels = {f["fault"]: f["label"] for f in matrix["faults"]}
    for store in matrix["stores"]:
        rows = [r for r in matrix["rows"] if r["store"] == store["store"]]
        if not rows:
            continue
        lines = [
            f"### `{store['cls']}`\n",
            "| fault | operation | outcome | sends | time to surface | what holds |",
            "| --- | --- | --- | ---: | ---: | --- |",
        ]
        for r in rows:
            sends = "-" if r["sends"] is None else str(r["sends"])
            took = "-" if r["surfaced_ms"] is None else f"{r['surfaced_ms']:,.0f} ms"
            operation = r["operation"]
            shown = operation if " " in operation else f"`{operation}`"
            lines.append(
                f"| {_cell(labels[r['fault']])} | {_cell(shown)} | {_outcome(r['outcome'])} "
                f"| {sends} | {took} | {_cell(r['invariant'])} |"
            )
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Fill the marker in, on any page that uses it, from ``docs/fault-matrix.json``."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render(load_matrix(matrix_path(kwargs.get("config")))))
