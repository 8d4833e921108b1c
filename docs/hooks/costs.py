"""The measured tables of the docs, generated from ``bench/results.json`` (``make bench``).

``{{ cost_table }}`` becomes the DynamoDB requests and consumed capacity per call of every
measured store call, ``{{ throughput_table }}`` the store calls' throughput against raw botocore,
``{{ observability_table }}`` what each kind of signal receiver costs a store call, and
``{{ cost_measured }}`` the sentence saying when and how they were measured. Any page may use
them. The file's path is relative to the folder of ``mkdocs.yml``. A page that uses a marker
fails the build when the file is missing or malformed, or lacks the figures the marker shows:
the numbers on the page are never typed by hand.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from mkdocs.exceptions import PluginError

RESULTS_PATH = Path("bench") / "results.json"
REGENERATE = "run `make bench` (bench/run_all.py) to write it"
OBSERVABILITY_BASE = "0 receivers"


class CostRow(TypedDict):
    store: str
    operation: str
    case: str
    requests_per_call: float
    capacity_per_call: float


class ThroughputRow(TypedDict):
    store: str
    operation: str
    store_ops_s: float
    raw_ops_s: float
    ratio: float


class ObservabilityRow(TypedDict):
    name: str
    ops_s: float
    cpu_us_per_call: float
    ratio_ops: float
    extra_cpu_us_per_call: float
    dispatch_us_per_call: float


class Observability(TypedDict):
    variants: list[ObservabilityRow]
    send_ns_no_receiver: float
    send_ns_noop_receiver: float
    published_calls: int
    cloudwatch_requests: int
    cloudwatch_data: int
    rounds: int
    seconds: float


class Results(TypedDict):
    generated_at: datetime.datetime
    dynamodb_local: str
    python: str
    platform: str | None
    quick: bool
    total_seconds: float | None
    failures: list[str]
    costs: list[CostRow]
    throughput: list[ThroughputRow]
    observability: Observability | None


class MalformedResultsError(ValueError):
    """Where the results file differs from what ``bench/run_all.py`` writes."""


# --------------------------------------------------------------------------- reading


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedResultsError(f"{where}{key} must be a non-empty string, not {value!r}")
    return value


def _number(data: dict[str, Any], key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedResultsError(f"{where}{key} must be a finite number, not {value!r}")
    return float(value)


def _count(data: dict[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedResultsError(f"{where}{key} must be a whole number >= 0, not {value!r}")
    return value


def _rows(data: dict[str, Any], key: str, where: str = "") -> list[dict[str, Any]]:
    rows = data.get(key)
    if not isinstance(rows, list) or not rows:
        raise MalformedResultsError(f"{where}{key} must be a non-empty list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise MalformedResultsError(f"{where}{key}[{i}] must be an object")
    return rows


def _observability(data: object) -> Observability:
    """The ``observability`` object, checked field by field."""
    if not isinstance(data, dict):
        raise MalformedResultsError("observability must be an object")
    where = "observability."
    variants = [
        ObservabilityRow(
            name=_text(row, "name", f"{where}variants[{i}]."),
            ops_s=_number(row, "ops_s", f"{where}variants[{i}]."),
            cpu_us_per_call=_number(row, "cpu_us_per_call", f"{where}variants[{i}]."),
            ratio_ops=_number(row, "ratio_ops", f"{where}variants[{i}]."),
            extra_cpu_us_per_call=_number(row, "extra_cpu_us_per_call", f"{where}variants[{i}]."),
            dispatch_us_per_call=_number(row, "dispatch_us_per_call", f"{where}variants[{i}]."),
        )
        for i, row in enumerate(_rows(data, "variants", where))
    ]
    if not any(v["name"] == OBSERVABILITY_BASE for v in variants):
        raise MalformedResultsError(f"{where}variants has no {OBSERVABILITY_BASE!r} row")
    return Observability(
        variants=variants,
        send_ns_no_receiver=_number(data, "send_ns_no_receiver", where),
        send_ns_noop_receiver=_number(data, "send_ns_noop_receiver", where),
        published_calls=_count(data, "published_calls", where),
        cloudwatch_requests=_count(data, "cloudwatch_requests", where),
        cloudwatch_data=_count(data, "cloudwatch_data", where),
        rounds=_count(data, "rounds", where),
        seconds=_number(data, "seconds", where),
    )


def parse_results(data: object) -> Results:
    """The results ``bench/run_all.py`` wrote, checked field by field."""
    if not isinstance(data, dict):
        raise MalformedResultsError("the top level must be a JSON object")
    stamp = _text(data, "generated_at", "")
    try:
        generated_at = datetime.datetime.fromisoformat(stamp)
    except ValueError:
        raise MalformedResultsError(f"generated_at is not an ISO 8601 time: {stamp!r}") from None
    if generated_at.tzinfo is None:
        raise MalformedResultsError(f"generated_at has no time zone: {stamp!r}")
    costs = [
        CostRow(
            store=_text(row, "store", f"costs[{i}]."),
            operation=_text(row, "operation", f"costs[{i}]."),
            case=_text(row, "case", f"costs[{i}]."),
            requests_per_call=_number(row, "requests_per_call", f"costs[{i}]."),
            capacity_per_call=_number(row, "capacity_per_call", f"costs[{i}]."),
        )
        for i, row in enumerate(_rows(data, "costs"))
    ]
    throughput = [
        ThroughputRow(
            store=_text(row, "store", f"throughput[{i}]."),
            operation=_text(row, "operation", f"throughput[{i}]."),
            store_ops_s=_number(row, "store_ops_s", f"throughput[{i}]."),
            raw_ops_s=_number(row, "raw_ops_s", f"throughput[{i}]."),
            ratio=_number(row, "ratio", f"throughput[{i}]."),
        )
        for i, row in enumerate(_rows(data, "throughput"))
    ]
    failures = data.get("failures", [])
    if not isinstance(failures, list) or not all(isinstance(f, str) for f in failures):
        raise MalformedResultsError("failures must be a list of strings")
    quick = data.get("quick", False)
    if not isinstance(quick, bool):
        raise MalformedResultsError(f"quick must be true or false, not {quick!r}")
    return Results(
        generated_at=generated_at,
        dynamodb_local=_text(data, "dynamodb_local", ""),
        python=_text(data, "python", ""),
        platform=_text(data, "platform", "") if "platform" in data else None,
        quick=quick,
        total_seconds=_number(data, "total_seconds", "") if "total_seconds" in data else None,
        failures=list(failures),
        costs=costs,
        throughput=throughput,
        observability=_observability(data["observability"]) if "observability" in data else None,
    )


def load_results(path: Path) -> Results:
    """``path`` read and checked; a missing or malformed file fails the build."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PluginError(
            f"a page with measured figures needs {path}, which is missing: {REGENERATE}"
        ) from None
    except OSError as exc:
        raise PluginError(f"a page with measured figures cannot read {path}: {exc}") from None
    try:
        return parse_results(json.loads(text))
    except ValueError as exc:  # JSONDecodeError and MalformedResultsError
        raise PluginError(f"{path} is malformed ({exc}): {REGENERATE}") from None


def results_path(config: Any) -> Path:
    """``bench/results.json`` beside the build's ``mkdocs.yml``."""
    config_file = getattr(config, "config_file_path", None)
    if not config_file and config is not None and hasattr(config, "get"):
        config_file = config.get("config_file_path")
    if not isinstance(config_file, str) or not config_file:
        raise PluginError(
            "a page with measured figures needs the path of mkdocs.yml (config_file_path)"
        )
    return Path(config_file).resolve().parent / RESULTS_PATH


# --------------------------------------------------------------------------- writing


def _cell(text: str) -> str:
    return text.replace("|", "&#124;")


def _figure(value: float) -> str:
    return f"{round(value, 3):g}"


def cost_table(results: Results) -> str:
    """Requests and capacity per call, one row per measured kind of call."""
    rows = [
        "| store | call | case | DynamoDB requests per call | capacity per call |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    rows += [
        f"| {_cell(r['store'])} | `{_cell(r['operation'])}` | {_cell(r['case'])} "
        f"| {_figure(r['requests_per_call'])} | {_figure(r['capacity_per_call'])} |"
        for r in results["costs"]
    ]
    return "\n".join(rows) + "\n"


def throughput_table(results: Results) -> str:
    """Store calls per second against raw botocore's, and their ratio."""
    rows = [
        "| store | call | store calls/s | raw calls/s | ratio (store/raw) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    rows += [
        f"| {_cell(r['store'])} | {_cell(r['operation'])} | {r['store_ops_s']:,.0f} "
        f"| {r['raw_ops_s']:,.0f} | {r['ratio']:.2f} |"
        for r in results["throughput"]
    ]
    return "\n".join(rows) + "\n"


def _plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def observability_table(results: Results) -> str:
    """Calls per second and CPU time per call of each observability variant, against the
    store with no receiver, then what ``signals.send`` and the CloudWatch flush cost."""
    o = results["observability"]
    if o is None:
        raise PluginError(
            f"{{{{ observability_table }}}} needs the observability figures, which "
            f"{RESULTS_PATH} lacks: run `make bench` (bench/run_all.py) to measure them"
        )
    rows = [
        f"| variant | calls/s | vs {OBSERVABILITY_BASE} | CPU µs per call "
        "| extra CPU µs per call | its events alone, CPU µs |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows += [
        f"| {_cell(v['name'])} | {v['ops_s']:,.0f} | {v['ratio_ops']:.2f} "
        f"| {v['cpu_us_per_call']:,.1f} | {v['extra_cpu_us_per_call']:+,.1f} "
        f"| {v['dispatch_us_per_call']:,.2f} |"
        for v in o["variants"]
    ]
    send = (
        f"`signals.send` alone, without DynamoDB, takes {o['send_ns_no_receiver']:,.0f} ns "
        f"with no receiver and {o['send_ns_noop_receiver']:,.0f} ns with one no-op receiver."
    )
    calls = _plural(o["published_calls"], "call", "calls")
    points = _plural(o["cloudwatch_data"], "aggregated data point", "aggregated data points")
    request = "`PutMetricData` request"
    requests = _plural(o["cloudwatch_requests"], request, f"{request}s")
    flush = (
        f"The CloudWatch publisher buffered {calls}; its flush sent them as {points} in {requests}."
    )
    return "\n".join(rows) + f"\n\n{send} {flush}\n"


def cost_measured(results: Results) -> str:
    """When and how the figures were measured, from the results file itself."""
    when = results["generated_at"].astimezone(datetime.UTC)
    run = "a quick run (`--quick`)" if results["quick"] else "a full run"
    if results["total_seconds"] is not None:
        run += f" of {results['total_seconds']:.0f} s"
    machine = f", on {results['platform']}" if results["platform"] else ""
    sentence = (
        f"Measured on {when:%Y-%m-%d} at {when:%H:%M} UTC by `bench/run_all.py` "
        f"(`make bench`): {run} against one DynamoDB Local "
        f"({_cell(results['dynamodb_local'])}), with Python {results['python']}{machine}."
    )
    if results["failures"]:
        listed = "\n".join(f"    - {_cell(f)}" for f in results["failures"])
        sentence += f'\n\n!!! warning "Part of that run failed"\n\n{listed}\n'
    return sentence


FILLERS: dict[str, Callable[[Results], str]] = {
    "{{ cost_table }}": cost_table,
    "{{ throughput_table }}": throughput_table,
    "{{ observability_table }}": observability_table,
    "{{ cost_measured }}": cost_measured,
}
MARKERS = tuple(FILLERS)


def fill(markdown: str, results: Results) -> str:
    """Every marker ``markdown`` uses filled in; only those it uses are rendered."""
    for marker, render in FILLERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render(results))
    return markdown


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Fill the markers in, on any page that uses them, from ``bench/results.json``."""
    if not any(marker in markdown for marker in MARKERS):
        return markdown
    return fill(markdown, load_results(results_path(kwargs.get("config"))))
