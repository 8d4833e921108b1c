"""``comic-vine-store``: the table and the stores from a shell.

Create and check the table, see what the stores hold, remove expired or all items, run
DynamoDB Local, the demo and the benchmarks, and print the table's CloudFormation template,
the IAM policy the stores need, and a CloudWatch dashboard and alarms for their metrics.

The connection follows boto: ``--region`` else ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / the
profile's region (else us-east-1); ``--endpoint`` else ``AWS_ENDPOINT_URL_DYNAMODB`` /
``AWS_ENDPOINT_URL``; credentials from botocore's usual chain (``--profile`` sets
``AWS_PROFILE``).

A failure the operator can act on (no table, no credentials, an endpoint that does not
answer, access denied, a bad option) is one line on stderr, never a traceback. Exit codes:
0 done; 1 failed, mismatches found or clearing declined; 2 bad usage or nothing to run;
130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from types import FrameType
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from pynamodb.exceptions import PynamoDBException, TableDoesNotExist
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.prompt import Confirm
from rich.table import Table

from comic_vine_dynamodb_store import __version__
from comic_vine_dynamodb_store.cli_policy import (
    ACCOUNT_PLACEHOLDER,
    REGION_PLACEHOLDER,
    cloudformation_template,
    iam_policy,
    render_json,
    render_yaml,
)
from comic_vine_dynamodb_store.config import DEFAULT_TABLE_NAME, StoreOptions
from comic_vine_dynamodb_store.errors import (
    ConfigurationError,
    DynamoDBStoreError,
    LocalDynamoDBError,
    StoreUnavailableError,
    TableNotFoundError,
)
from comic_vine_dynamodb_store.observability.metrics import DEFAULT_NAMESPACE

__all__ = ["main"]

STORE_KINDS = ("cache", "dedupe", "rate-limit", "adaptive")
_BENCH_ORDER = ("cache", "dedupe", "rate-limit", "adaptive", "client", "observability")
_RUN_ALL = "run_all.py"
DEFAULT_DASHBOARD_NAME = "comic-vine-store"
_CONNECTION_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ConnectionClosedError,
    ReadTimeoutError,
)
_ACCOUNT_RE = re.compile(r"\d{12}")
_REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")

# soft_wrap: an error stays on one line however narrow the terminal (or 80 columns off one).
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


class CliError(Exception):
    """A failure explained in one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- connection


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Where the command works: table, region, endpoint (None: AWS) and key prefix."""

    table: str
    region: str
    endpoint: str | None
    key_prefix: str = ""

    @property
    def where(self) -> str:
        """The endpoint for messages: the URL, or AWS and the region."""
        return self.endpoint or f"AWS {self.region}"

    def store_options(self) -> dict[str, Any]:
        """Store keywords: the stores' defaults, without their background cleanup thread."""
        return {
            "table_name": self.table,
            "region": self.region,
            "endpoint": self.endpoint,
            "key_prefix": self.key_prefix,
            "cleanup_interval_ms": 0,
        }


def _resolve_region(explicit: str | None) -> str:
    if explicit:
        return explicit
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    import botocore.session  # noqa: PLC0415 - only when neither flag nor variable says

    configured = botocore.session.Session().get_config_variable("region")
    return str(configured) if configured else "us-east-1"


def _resolve_endpoint(explicit: str | None) -> str | None:
    for value in (
        explicit,
        os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"),
        os.environ.get("AWS_ENDPOINT_URL"),
    ):
        if value and value.strip():
            return value.strip()
    return None


def _target(args: argparse.Namespace) -> Target:
    if getattr(args, "profile", None):
        os.environ["AWS_PROFILE"] = args.profile
    target = Target(
        table=args.table,
        region=_resolve_region(args.region),
        endpoint=_resolve_endpoint(args.endpoint),
        key_prefix=getattr(args, "key_prefix", ""),
    )
    # Checked before any request: a bad name or URL is a usage error, not a DynamoDB one.
    StoreOptions(
        table_name=target.table,
        region=target.region,
        endpoint=target.endpoint,
        key_prefix=target.key_prefix,
    )
    return target


# --------------------------------------------------------------------------- errors


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, PynamoDBException) and current.cause is not None:
            current = current.cause
        else:
            current = current.__cause__ or current.__context__


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _explain(exc: BaseException, target: Target | None) -> tuple[str, int] | None:
    """The line and exit code for a failure the operator can act on; None for a bug.

    The whole cause chain is searched: the library keeps botocore's error as ``__cause__``
    and PynamoDB as ``cause``, and the root says best what to do.
    """
    chain = list(_chain(exc))
    for check in (_credentials_problem, _connection_problem, _table_or_access_problem):
        found = check(chain, target)
        if found is not None:
            return found, 1
    return _typed_problem(exc, target)


def _credentials_problem(chain: list[BaseException], target: Target | None) -> str | None:
    for link in chain:
        if isinstance(link, NoCredentialsError | PartialCredentialsError):
            return (
                f"no usable AWS credentials ({link}): set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or use a role "
                "(DynamoDB Local accepts any values)"
            )
        if isinstance(link, ProfileNotFound):
            return f"{link}: check --profile / AWS_PROFILE"
    return None


def _connection_problem(chain: list[BaseException], target: Target | None) -> str | None:
    where = target.where if target else "DynamoDB"
    for link in chain:
        if isinstance(link, _CONNECTION_ERRORS):
            return f"could not reach DynamoDB at {where}: {link}"
    return None


def _table_or_access_problem(chain: list[BaseException], target: Target | None) -> str | None:
    table = target.table if target else "?"
    where = target.where if target else "DynamoDB"
    for link in chain:
        error = link.response.get("Error", {}) if isinstance(link, ClientError) else {}
        code = error.get("Code")
        if (
            isinstance(link, TableNotFoundError | TableDoesNotExist)
            or code == "ResourceNotFoundException"
        ):
            hint = f"comic-vine-store create-table --table {table}"
            if target is not None:
                hint += f" --region {target.region}"
                hint += f" --endpoint {target.endpoint}" if target.endpoint else ""
            return f"table {table!r} does not exist at {where}; create it with: {hint}"
        if code in ("AccessDeniedException", "UnrecognizedClientException"):
            return (
                f"DynamoDB refused the request ({code}): {error.get('Message', '')} "
                "(`comic-vine-store print iam-policy --admin` lists what the commands need)"
            )
    return None


def _typed_problem(exc: BaseException, target: Target | None) -> tuple[str, int] | None:
    where = target.where if target else "DynamoDB"
    if isinstance(exc, ConfigurationError):
        return f"invalid option: {exc.message}", 2
    if isinstance(exc, StoreUnavailableError):
        return f"DynamoDB at {where} could not serve the request: {exc}", 1
    if isinstance(exc, LocalDynamoDBError):
        return f"DynamoDB Local could not start: {exc}", 1
    if isinstance(exc, DynamoDBStoreError):
        return str(exc), 1
    if isinstance(exc, PynamoDBException | BotoCoreError | ClientError):
        from comic_vine_dynamodb_store.resilience.errors import map_error  # noqa: PLC0415

        table = target.table if target else "?"
        return str(map_error(exc, operation="request", table=table)), 1
    return None


def _fail(message: str, code: int) -> int:
    err.print(f"[bold red]error:[/] {escape(_one_line(message))}")
    return code


# --------------------------------------------------------------------------- progress


def _progress() -> Progress:
    """A progress bar on stderr, drawn only on a terminal (logs and pipes get the counts)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


def _kinds(chosen: Sequence[str] | None, default: Sequence[str]) -> list[str]:
    picked = list(chosen or default)
    if "all" in picked:
        return list(STORE_KINDS)
    return [kind for kind in STORE_KINDS if kind in picked]


def _open_store(kind: str, target: Target) -> Any:
    from comic_vine_dynamodb_store import (  # noqa: PLC0415 - loaded by the commands using them
        DynamoDBAdaptiveRateLimitStore,
        DynamoDBCacheStore,
        DynamoDBDedupeStore,
        DynamoDBRateLimitStore,
    )

    classes: dict[str, Callable[..., Any]] = {
        "cache": DynamoDBCacheStore,
        "dedupe": DynamoDBDedupeStore,
        "rate-limit": DynamoDBRateLimitStore,
        "adaptive": DynamoDBAdaptiveRateLimitStore,
    }
    return classes[kind](**target.store_options())


def _json_key(kind: str) -> str:
    return kind.replace("-", "_")


# --------------------------------------------------------------------------- table commands


def _cmd_create_table(args: argparse.Namespace, target: Target) -> int:
    from comic_vine_dynamodb_store.table import create_table, verify_table  # noqa: PLC0415

    with err.status(f"creating table {target.table}…") if err.is_terminal else nullcontext():
        created = create_table(
            target.table, region=target.region, endpoint=target.endpoint, exist_ok=True
        )
    if created:
        out.print(
            f"created table {target.table} at {target.where}: PK/SK strings, GSI1 on "
            "GSI1PK/GSI1SK (projection ALL), TTL on TTL, on-demand billing"
        )
        return 0
    mismatches = verify_table(target.table, region=target.region, endpoint=target.endpoint)
    if not mismatches:
        out.print(f"table {target.table} already exists at {target.where} and matches the schema")
        return 0
    return _report_mismatches(target, mismatches, "already exists but does not match the schema")


def _cmd_verify_table(args: argparse.Namespace, target: Target) -> int:
    from comic_vine_dynamodb_store.table import verify_table  # noqa: PLC0415

    mismatches = verify_table(target.table, region=target.region, endpoint=target.endpoint)
    if not mismatches:
        out.print(f"table {target.table} at {target.where} matches the schema the stores need")
        return 0
    return _report_mismatches(target, mismatches, "does not match the schema the stores need")


def _report_mismatches(target: Target, mismatches: Sequence[object], what: str) -> int:
    count = len(mismatches)
    out.print(f"table {target.table} at {target.where} {what} ({count} mismatches):")
    for mismatch in mismatches:
        out.print(f"  {escape(str(mismatch))}")
    return 1


# --------------------------------------------------------------------------- store commands

_STAT_LABELS = {
    "total_items": "live items",
    "expired_items": "expired items",
    "estimated_size_bytes": "stored bytes (live)",
    "total_jobs": "live jobs",
    "pending_jobs": "pending",
    "completed_jobs": "completed",
    "failed_jobs": "failed",
    "expired_jobs": "expired",
    "total_resources": "resources",
    "active_resources": "resources with requests in window",
    "total_requests": "requests in window",
}


def _cmd_stats(args: argparse.Namespace, target: Target) -> int:
    kinds = _kinds(args.store, STORE_KINDS)
    stats: dict[str, dict[str, int]] = {}
    with _progress() as progress:
        task = progress.add_task("reading GSI1", total=len(kinds))
        for kind in kinds:
            progress.update(task, description=f"reading {kind}")
            with _open_store(kind, target) as store:
                stats[kind] = dataclasses.asdict(store.get_stats())
            progress.advance(task)
    if args.json:
        document = {"table": target.table, "key_prefix": target.key_prefix}
        out.print_json(data=document | {_json_key(k): v for k, v in stats.items()})
        return 0
    table = Table(title=f"{target.table} at {target.where}", title_justify="left")
    table.add_column("store")
    table.add_column("")
    table.add_column("count", justify="right")
    for kind, values in stats.items():
        for index, (name, value) in enumerate(values.items()):
            table.add_row(kind if index == 0 else "", _STAT_LABELS.get(name, name), str(value))
        table.add_section()
    out.print(table)
    return 0


def _cmd_cleanup(args: argparse.Namespace, target: Target) -> int:
    kinds = _kinds(args.store, STORE_KINDS)
    removed: dict[str, int] = {}
    with _progress() as progress:
        task = progress.add_task("removing expired items", total=len(kinds))
        for kind in kinds:
            progress.update(task, description=f"removing expired {kind} items")
            with _open_store(kind, target) as store:
                removed[kind] = int(store.cleanup())
            progress.advance(task)
    return _print_counts(args, removed, "expired item(s) removed")


def _cmd_clear(args: argparse.Namespace, target: Target) -> int:
    kinds = _kinds(args.store, ("cache",))
    scope = ", ".join(kinds)
    prefix = f" with key prefix {target.key_prefix!r}" if target.key_prefix else ""
    if not args.yes:
        question = (
            f"Remove every {escape(scope)} item{escape(prefix)} from table "
            f"{escape(target.table)} at {escape(target.where)}?"
        )
        try:
            agreed = bool(Confirm.ask(question, console=err, default=False))
        except EOFError:
            agreed = False
            err.print()
        if not agreed:
            err.print("nothing removed")
            return 1
    removed = _clear(kinds, target)
    return _print_counts(args, removed, "item(s) removed")


def _clear(kinds: Sequence[str], target: Target) -> dict[str, int]:
    """Delete every item of ``kinds`` in the namespace; returns the entries removed per kind
    (a cached value, chunked or not, a job, a resource).

    The cache goes through its store's ``clear``, which also removes a chunked value's chunks
    (they are not in GSI1). The other stores have no ``clear``: their items, one per entry, are
    deleted shard by shard through GSI1 with the cache's requests (a Query per shard, a
    BatchWriteItem per ``batch_size`` items).
    """
    from comic_vine_dynamodb_store.keys import gsi1_partition_keys  # noqa: PLC0415
    from comic_vine_dynamodb_store.models import (  # noqa: PLC0415
        AdaptiveStats,
        DedupeJob,
        RateLimitEvent,
        StoreItem,
        TableBinding,
    )
    from comic_vine_dynamodb_store.resilience.batching import BatchWriter  # noqa: PLC0415
    from comic_vine_dynamodb_store.resilience.pipeline import OperationPipeline  # noqa: PLC0415

    entities: dict[str, type[StoreItem]] = {
        "dedupe": DedupeJob,
        "rate-limit": RateLimitEvent,
        "adaptive": AdaptiveStats,
    }
    options = StoreOptions(**target.store_options())
    binding = TableBinding.from_options(options)
    pipeline = OperationPipeline(store="cli", options=options)
    removed = dict.fromkeys(kinds, 0)
    shards = {
        kind: gsi1_partition_keys(entities[kind].entity, target.key_prefix)
        for kind in kinds
        if kind in entities
    }
    steps = ("cache" in kinds) + sum(len(partitions) for partitions in shards.values())
    with _progress() as progress:
        task = progress.add_task("clearing", total=steps)
        if "cache" in kinds:
            progress.update(task, description="clearing cache")
            with _open_store("cache", target) as cache:
                before = cache.get_stats()
                cache.clear()
            removed["cache"] = before.total_items + before.expired_items
            progress.update(task, advance=1, description=f"clearing cache ({removed['cache']})")
        for kind, partitions in shards.items():
            model = binding.model(entities[kind])
            progress.update(task, description=f"clearing {kind}")
            for partition in partitions:

                def clear_shard(model: type[StoreItem] = model, partition: str = partition) -> int:
                    with BatchWriter(
                        model,
                        batch_size=options.batch_size,
                        max_retries=options.max_retries,
                        retry_delay_ms=options.retry_delay_ms,
                    ) as batch:
                        for item in model.gsi1.query(partition):
                            batch.delete(item)
                    return batch.written

                removed[kind] += pipeline.run("clear", clear_shard, bounded=False)
                progress.update(task, advance=1, description=f"clearing {kind} ({removed[kind]})")
    return removed


def _print_counts(args: argparse.Namespace, counts: dict[str, int], what: str) -> int:
    if args.json:
        out.print_json(data={_json_key(kind): count for kind, count in counts.items()})
        return 0
    for kind, count in counts.items():
        out.print(f"{kind}: {count} {what}")
    return 0


# --------------------------------------------------------------------------- local


def _cmd_local(args: argparse.Namespace, target: Target) -> int:
    """Run DynamoDB Local until SIGINT or SIGTERM; the handlers go in before it starts, so a
    signal during start-up still stops what was started."""
    from comic_vine_dynamodb_store.local import ENDPOINT_ENV, start_local_dynamodb  # noqa: PLC0415

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    # This command starts one: an endpoint from the environment would make it start nothing.
    os.environ.pop(ENDPOINT_ENV, None)
    try:
        with start_local_dynamodb(
            use_docker=args.docker, startup_timeout_s=args.startup_timeout
        ) as db:
            if args.create_table:
                from comic_vine_dynamodb_store.table import create_table  # noqa: PLC0415

                create_table(target.table, region=target.region, endpoint=db.endpoint)
            print(db.endpoint, flush=True)
            created = f", table {target.table} created" if args.create_table else ""
            err.print(
                f"DynamoDB Local ({db.kind}) at {db.endpoint}{created}; use it with "
                f"--endpoint {db.endpoint} and any AWS credentials. Ctrl-C stops it."
            )
            while not stop.wait(0.2):
                pass
        err.print("DynamoDB Local stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    return 0


# --------------------------------------------------------------------------- demo and bench


def _cmd_demo(args: argparse.Namespace, extra: list[str]) -> int:
    """Hand the remaining arguments to the demo runner, loaded only when asked for."""
    name = "comic_vine_dynamodb_store.demo.runner"
    try:
        runner = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            message = f"the demo is not part of this installation ({name} is missing)"
            raise CliError(message, 2) from None
        raise CliError(f"the demo needs the {exc.name!r} package: install it", 2) from exc
    parser = argparse.ArgumentParser(
        prog="comic-vine-store demo", description="The library doing its job, end to end."
    )
    runner.add_arguments(parser)
    return int(runner.run(parser.parse_args(extra)))


def _bench_folder(explicit: str | None) -> Path:
    """The folder of ``bench_*.py``: ``--dir``, else ``bench/`` in the working directory or
    one of its parents, else the checkout the package is installed from (editable)."""

    def usable(folder: Path) -> bool:
        return folder.is_dir() and any(folder.glob("bench_*.py"))

    if explicit is not None:
        folder = Path(explicit)
        if usable(folder):
            return folder.resolve()
        raise CliError(f"no bench_*.py scripts in {folder}", 2)
    cwd = Path.cwd().resolve()
    package_checkout = Path(__file__).resolve().parents[2]
    for base in (cwd, *cwd.parents, package_checkout):
        if usable(base / "bench"):
            return (base / "bench").resolve()
    raise CliError(
        f"no bench/ folder with bench_*.py scripts in {cwd}, its parents or {package_checkout}: "
        "the benchmarks live in the repository, not in the installed package "
        "(run from a checkout, or pass --dir)",
        2,
    )


def _bench_scripts(folder: Path) -> dict[str, Path]:
    """The benchmarks by name: ``all`` (``run_all.py``, every bench on one DynamoDB Local, as
    ``make bench`` runs them) when present, then each ``bench_<name>.py``."""
    found = {
        path.stem.removeprefix("bench_").replace("_", "-"): path
        for path in folder.glob("bench_*.py")
    }
    order = {name: index for index, name in enumerate(_BENCH_ORDER)}
    scripts = {"all": folder / _RUN_ALL} if (folder / _RUN_ALL).is_file() else {}
    scripts |= sorted(found.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
    return scripts


def _cmd_bench(args: argparse.Namespace, extra: list[str]) -> int:
    """Run the chosen benchmarks with this Python, by default ``all`` if there is one, else
    each script in turn; stop at the first that fails and exit with its status. Arguments this
    command does not know go to each script."""
    folder = _bench_folder(args.dir)
    scripts = _bench_scripts(folder)
    if args.list:
        for name, path in scripts.items():
            print(f"{name}\t{path}")
        return 0
    if args.only:
        chosen = [name.replace("_", "-") for name in args.only]
    else:
        chosen = ["all"] if "all" in scripts else list(scripts)
    unknown = [name for name in chosen if name not in scripts]
    if unknown:
        raise CliError(f"no such benchmark: {', '.join(unknown)} (have: {', '.join(scripts)})", 2)
    passthrough = extra[1:] if extra[:1] == ["--"] else extra
    env = dict(os.environ)
    endpoint = _resolve_endpoint(args.endpoint)
    if endpoint is not None:
        from comic_vine_dynamodb_store.local import ENDPOINT_ENV  # noqa: PLC0415

        env[ENDPOINT_ENV] = endpoint
    for name in chosen:
        script = scripts[name]
        err.print(f"[bold]== {escape(script.name)}[/]")
        result = subprocess.run(
            [sys.executable, str(script), *passthrough], cwd=folder.parent, env=env, check=False
        )
        if result.returncode != 0:
            raise CliError(
                f"{script.name} exited with status {result.returncode}", result.returncode
            )
    return 0


# --------------------------------------------------------------------------- print


def _cmd_print_cloudformation(args: argparse.Namespace, extra: list[str]) -> int:
    StoreOptions(table_name=args.table)  # the name is checked as the stores check it
    template = cloudformation_template(args.table)
    text = render_json(template) if args.format == "json" else render_yaml(template)
    sys.stdout.write(text)
    return 0


def _cmd_print_iam_policy(args: argparse.Namespace, extra: list[str]) -> int:
    StoreOptions(table_name=args.table)
    if args.account != ACCOUNT_PLACEHOLDER and not _ACCOUNT_RE.fullmatch(args.account):
        raise CliError(f"--account must be a 12-digit AWS account id, got {args.account!r}", 2)
    if args.region != REGION_PLACEHOLDER and not _REGION_RE.fullmatch(args.region):
        raise CliError(f"--region must be a region name such as us-east-1, got {args.region!r}", 2)
    policy = iam_policy(
        args.table,
        region=args.region,
        account=args.account,
        partition=args.partition,
        admin=args.admin,
    )
    sys.stdout.write(render_json(policy))
    return 0


def _cmd_print_dashboard(args: argparse.Namespace, extra: list[str]) -> int:
    from comic_vine_dynamodb_store.observability.dashboard import (  # noqa: PLC0415
        CloudWatchDashboardConfig,
    )

    body = CloudWatchDashboardConfig.create_dynamodb_store_dashboard(
        args.name, namespace=args.namespace, region=args.region or "us-east-1"
    )
    sys.stdout.write(body + "\n")
    return 0


def _cmd_print_alarms(args: argparse.Namespace, extra: list[str]) -> int:
    from comic_vine_dynamodb_store.observability.dashboard import (  # noqa: PLC0415
        CloudWatchDashboardConfig,
    )

    StoreOptions(table_name=args.table)
    alarms = CloudWatchDashboardConfig.create_alarms(
        table_name=args.table,
        store=args.store,
        namespace=args.namespace,
        error_rate_percent=args.error_rate,
        period_s=args.period,
        alarm_actions=args.alarm_action or (),
    )
    sys.stdout.write(json.dumps(alarms, indent=2) + "\n")
    return 0


# --------------------------------------------------------------------------- parser

Handler = Callable[[argparse.Namespace, Target], int]
RawHandler = Callable[[argparse.Namespace, list[str]], int]


def _connection_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("connection")
    group.add_argument(
        "--table", default=DEFAULT_TABLE_NAME, help=f"table name (default {DEFAULT_TABLE_NAME})"
    )
    group.add_argument(
        "--region", help="AWS region (default AWS_REGION, AWS_DEFAULT_REGION, profile, us-east-1)"
    )
    group.add_argument(
        "--endpoint",
        help="DynamoDB endpoint URL, e.g. DynamoDB Local's "
        "(default AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL, else AWS)",
    )
    group.add_argument("--profile", help="AWS profile for credentials and region (AWS_PROFILE)")
    return flags


def _store_flags(default: str) -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "--store",
        action="append",
        choices=[*STORE_KINDS, "all"],
        help=f"which store's items (repeatable; default {default})",
    )
    flags.add_argument("--key-prefix", default="", help="the stores' key_prefix (default none)")
    flags.add_argument("--json", action="store_true", help="print one JSON object")
    return flags


def _add_observability_printers(what: Any) -> None:
    """``print dashboard`` and ``print alarms``: CloudWatch set-up for the store metrics."""
    dashboard = what.add_parser(
        "dashboard", help="a CloudWatch dashboard of the store metrics (DashboardBody JSON)"
    )
    dashboard.set_defaults(raw_handler=_cmd_print_dashboard)
    dashboard.add_argument("--name", default=DEFAULT_DASHBOARD_NAME, help="the dashboard's name")
    dashboard.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="the metrics' namespace")
    dashboard.add_argument("--region", help="the region the charts show (default us-east-1)")
    alarms = what.add_parser(
        "alarms", help="CloudWatch alarms of one store (put_metric_alarm keywords, as JSON)"
    )
    alarms.set_defaults(raw_handler=_cmd_print_alarms)
    alarms.add_argument("--store", required=True, help="the Store dimension, e.g. cache")
    alarms.add_argument("--table", default=DEFAULT_TABLE_NAME)
    alarms.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="the metrics' namespace")
    alarms.add_argument(
        "--error-rate", type=float, default=5.0, metavar="PERCENT", help="default 5"
    )
    alarms.add_argument("--period", type=int, default=300, metavar="SECONDS", help="default 300")
    alarms.add_argument(
        "--alarm-action", action="append", metavar="ARN", help="notify this ARN (repeatable)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line; each command's handler is in ``handler`` (or ``raw_handler`` for
    those that pass unknown arguments on)."""
    parser = argparse.ArgumentParser(
        prog="comic-vine-store",
        description="Manage the comic-vine-dynamodb-store table and its stores.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    connection = _connection_flags()

    def command(name: str, help_text: str, handler: Handler, *parents: Any) -> Any:
        sub = commands.add_parser(
            name, help=help_text, description=help_text, parents=[connection, *parents]
        )
        sub.set_defaults(handler=handler)
        return sub

    command("create-table", "create the table (exit 0 if it exists and matches)", _cmd_create_table)
    command("verify-table", "compare the table with the stores' schema", _cmd_verify_table)
    command("stats", "items per store (GSI1 queries, no scan)", _cmd_stats, _store_flags("all"))
    command("cleanup", "remove expired items now", _cmd_cleanup, _store_flags("all"))
    clear = command(
        "clear", "remove every item of the chosen stores", _cmd_clear, _store_flags("cache")
    )
    clear.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    local = command("local", "run DynamoDB Local in the foreground; print its endpoint", _cmd_local)
    local.add_argument(
        "--docker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="require (--docker) or avoid (--no-docker) Docker; default: Docker if it answers",
    )
    local.add_argument("--startup-timeout", type=float, default=60.0, metavar="SECONDS")
    local.add_argument("--create-table", action="store_true", help="create --table once it runs")

    demo = commands.add_parser(
        "demo", help="run the demo (arguments go to it; demo --help lists them)", add_help=False
    )
    demo.set_defaults(raw_handler=_cmd_demo)
    bench = commands.add_parser(
        "bench",
        help="run the benchmarks in bench/ (unknown arguments go to each script)",
        description="Run the benchmark scripts of the repository's bench/ folder: run_all.py "
        "(as make bench does) if there is one, else each bench_*.py. Arguments this command "
        "does not know (--quick, --json, --seconds 5, ...) are passed to every script.",
        allow_abbrev=False,
    )
    bench.set_defaults(raw_handler=_cmd_bench)
    bench.add_argument(
        "--only", action="append", metavar="NAME", help="run only this one (repeatable)"
    )
    bench.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    bench.add_argument("--dir", help="the bench/ folder (default: found from here or the package)")
    bench.add_argument("--endpoint", help="a running DynamoDB (else each starts DynamoDB Local)")

    printer = commands.add_parser(
        "print", help="print the CloudFormation template, IAM policy, dashboard or alarms"
    )
    what = printer.add_subparsers(dest="what", required=True, metavar="WHAT")
    template = what.add_parser("cloudformation", help="the table as a CloudFormation template")
    template.set_defaults(raw_handler=_cmd_print_cloudformation)
    template.add_argument("--table", default=DEFAULT_TABLE_NAME)
    template.add_argument("--format", choices=("yaml", "json"), default="yaml")
    policy = what.add_parser("iam-policy", help="the least-privilege IAM policy, as JSON")
    policy.set_defaults(raw_handler=_cmd_print_iam_policy)
    policy.add_argument("--table", default=DEFAULT_TABLE_NAME)
    policy.add_argument("--region", default=REGION_PLACEHOLDER, help="default: a placeholder")
    policy.add_argument("--account", default=ACCOUNT_PLACEHOLDER, help="default: a placeholder")
    policy.add_argument("--partition", choices=("aws", "aws-cn", "aws-us-gov"), default="aws")
    policy.add_argument(
        "--admin",
        action="store_true",
        help="also allow create-table and verify-table (CreateTable, DescribeTable, ...)",
    )
    _add_observability_printers(what)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (the console script exits with it)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    raw: RawHandler | None = getattr(args, "raw_handler", None)
    if extra and args.command not in ("demo", "bench"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    target: Target | None = None
    try:
        if raw is not None:
            return raw(args, extra)
        target = _target(args)
        handler: Handler = args.handler
        return handler(args, target)
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:
        explained = _explain(exc, target)
        if explained is None:
            raise  # a bug: its traceback is what helps
        return _fail(*explained)


if __name__ == "__main__":
    raise SystemExit(main())
